// Runs a program as a child process and collects what it writes (what the Qt suites used QProcess
// for): posix_spawn with pipes for stdout and stderr, stdin from /dev/null, the parent's
// environment, and a time limit after which the child is killed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace vit_test {

struct ProcessResult {
  bool started = false;    // false: the program could not be run (missing, not executable)
  bool timed_out = false;  // killed after the time limit
  int code = -1;           // exit status; -1 unless the program exited by itself (crash, kill)
  std::string out, err;    // everything it wrote to stdout and stderr
  std::string error;       // why it did not start or finish, for messages

  bool finished() const { return started && !timed_out; }
};

// `program` is looked up in PATH unless it contains a '/'; `args` excludes the program name.
ProcessResult run_process(const std::string& program, const std::vector<std::string>& args,
                          std::chrono::milliseconds timeout);

// A started child whose stdout and stderr go to files (`log_prefix`.out/.err), for long runs a
// test watches, signals or kills while they go on. `env` entries (NAME=VALUE) are added to this
// process's environment.
struct Child {
  pid_t pid = -1;  // -1: could not be started
  std::string out, err;
  int code = -1;  // after wait(): the exit code, or 128 + the signal that ended it

  Child(const std::vector<std::string>& argv, const std::string& log_prefix,
        const std::vector<std::string>& env = {});
  // Waits at most `seconds`; false (and the child killed) when it did not end.
  bool wait(double seconds);
  std::string stderr_text() const;
};

// The command line as one string, for messages.
std::string join(const std::vector<std::string>& args, const std::string& separator = " ");

}  // namespace vit_test
