// Crash-safe file writes: write a temporary file in the same directory, fsync it, rename it over
// the target, fsync the directory. A crash or a full disk leaves either the old file or the new
// one, never a half-written one.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <string_view>

namespace vit {

// Calls `write` with a stream to the temporary file, then publishes it as `path`. Throws
// std::runtime_error naming the path and the cause (e.g. "No space left on device: free some
// space and retry") and removes the temporary file; the previous `path`, if any, is untouched.
void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write);
void write_file_atomically(const std::string& path, std::string_view contents);

// Fault injection for tests, inert in normal use: with VIT_TEST_KILL_AT=N in the environment, the
// Nth crash point this process passes kills it with SIGKILL, as `kill -9` or a power cut would.
// The points sit between the steps of every write of a run directory (inside each atomic publish,
// inside a checkpoint commit, in the middle of a steps.csv row), so a test can stop a run at each
// of them in turn (tests/app/test_faults.cpp). With VIT_TEST_KILL_AT=list the points are counted
// and named on stderr instead.
void crash_point(const char* where);

}  // namespace vit
