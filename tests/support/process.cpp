#include "process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

extern char** environ;

namespace vit_test {

namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? int(left.count()) : 0;
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

std::string join(const std::vector<std::string>& args, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < args.size(); ++i) out += (i ? separator : "") + args[i];
  return out;
}

ProcessResult run_process(const std::string& program, const std::vector<std::string>& args,
                          std::chrono::milliseconds timeout) {
  ProcessResult r;
  const auto deadline = Clock::now() + timeout;
  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    r.error = std::string("pipe: ") + std::strerror(errno);
    for (int* fd : {&out_pipe[0], &out_pipe[1], &err_pipe[0], &err_pipe[1]}) close_fd(*fd);
    return r;
  }

  // argv for the child, built before spawning.
  std::vector<std::string> owned;
  owned.reserve(args.size() + 1);
  owned.push_back(program);
  owned.insert(owned.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : owned) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
  pid_t pid = -1;
  // posix_spawnp searches PATH only for names without a '/', as execvp does; glibc reports a
  // failed exec (missing file, no permission) as the return value.
  const int spawn_error =
      ::posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close_fd(out_pipe[1]);
  close_fd(err_pipe[1]);
  if (spawn_error != 0) {
    r.error = "cannot run " + program + ": " + std::strerror(spawn_error);
    close_fd(out_pipe[0]);
    close_fd(err_pipe[0]);
    return r;
  }
  r.started = true;

  // Read both pipes (a full pipe would block the child) until the child exits and they are
  // drained, or time runs out. The exit, not the pipes' end, finishes the run, as with QProcess:
  // a grandchild that keeps them open does not hold the test up.
  int fds[2] = {out_pipe[0], err_pipe[0]};
  std::string* sinks[2] = {&r.out, &r.err};
  char buffer[65536];
  int status = 0;
  bool exited = false;
  auto read_ready = [&](int wait_ms) {  // one poll; false when nothing was ready
    pollfd p[2];
    for (int i = 0; i < 2; ++i) p[i] = {fds[i], POLLIN, 0};  // poll ignores negative fds
    const int ready = ::poll(p, 2, wait_ms);
    if (ready <= 0) return ready < 0 && errno == EINTR;
    for (int i = 0; i < 2; ++i) {
      if (fds[i] < 0 || p[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i], buffer, sizeof buffer);
      if (n > 0) sinks[i]->append(buffer, size_t(n));
      else if (n == 0 || errno != EINTR) close_fd(fds[i]);
    }
    return true;
  };
  while (!exited) {
    if (remaining_ms(deadline) == 0) {
      r.timed_out = true;
      break;
    }
    if (fds[0] >= 0 || fds[1] >= 0) read_ready(std::min(remaining_ms(deadline), 20));
    else std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) exited = true;
    else if (done < 0 && errno != EINTR) {
      r.error = std::string("waitpid: ") + std::strerror(errno);
      break;
    }
  }
  if (exited)  // what the child wrote before exiting
    while ((fds[0] >= 0 || fds[1] >= 0) && remaining_ms(deadline) > 0 && read_ready(0)) {
    }
  close_fd(fds[0]);
  close_fd(fds[1]);
  if (!exited) {  // timed out, or waitpid failed: kill it and reap it
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!r.timed_out) return r;
  }
  if (r.timed_out) {
    r.error = program + " did not finish within " + std::to_string(timeout.count()) + " ms";
    return r;
  }
  if (WIFEXITED(status)) r.code = WEXITSTATUS(status);
  else r.error = program + " was killed by signal " + std::to_string(WTERMSIG(status));
  return r;
}

Child::Child(const std::vector<std::string>& argv, const std::string& log_prefix,
             const std::vector<std::string>& env) {
  out = log_prefix + ".out";
  err = log_prefix + ".err";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> environment;
  for (char** e = environ; *e; ++e) environment.emplace_back(*e);
  for (const auto& e : env) environment.push_back(e);
  std::vector<char*> envp;
  for (auto& e : environment) envp.push_back(e.data());
  envp.push_back(nullptr);
  if (posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), envp.data()) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
}

bool Child::wait(double seconds) {
  if (pid <= 0) return false;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return false;
}

std::string Child::stderr_text() const {
  std::ifstream in(err);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace vit_test
