// qFatal for the core's tests: prints the message and aborts the test program. For what every
// later test depends on and no assertion can report from where it happens (a child process that
// hangs, a shared run that could not be made, a helper that returns a value).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace vit_test {

[[noreturn]] inline void fatal(const std::string& message) {
  std::fprintf(stderr, "FATAL: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace vit_test
