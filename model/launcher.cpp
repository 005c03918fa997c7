#include "launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace vit {

namespace {

std::atomic<int> g_forward_signal{0};
extern "C" void remember_signal(int sig) { g_forward_signal.store(sig); }

int status_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("cannot open a socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error(std::string("cannot find a free port: ") + std::strerror(err));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

int launch_local_ranks(const std::string& program, const std::vector<std::string>& args,
                       const LaunchOptions& o) {
  if (o.nproc < 1 || o.nproc > 1024)
    throw std::invalid_argument("--nproc-per-node must be in 1..1024 (got " + std::to_string(o.nproc) + ")");
  const int port = o.master_port > 0 ? o.master_port : free_port();
  struct sigaction forward{}, old_int{}, old_term{};
  forward.sa_handler = remember_signal;
  sigemptyset(&forward.sa_mask);
  ::sigaction(SIGINT, &forward, &old_int);
  ::sigaction(SIGTERM, &forward, &old_term);

  std::vector<pid_t> pids;
  for (int rank = 0; rank < o.nproc; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (pid_t p : pids) ::kill(p, SIGTERM);
      throw std::runtime_error(std::string("cannot start rank ") + std::to_string(rank) + ": " + std::strerror(errno));
    }
    if (pid == 0) {
      ::sigaction(SIGINT, &old_int, nullptr);
      ::sigaction(SIGTERM, &old_term, nullptr);
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(program.c_str()));
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(program.c_str(), argv.data());
      ::_exit(127);
    }
    pids.push_back(pid);
  }

  int result = 0;
  size_t running = pids.size();
  std::vector<bool> done(pids.size(), false);
  auto first_failure = std::chrono::steady_clock::time_point{};
  bool terminated = false, killed = false;
  while (running > 0) {
    if (const int sig = g_forward_signal.exchange(0))
      for (size_t i = 0; i < pids.size(); ++i)
        if (!done[i]) ::kill(pids[i], sig);
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (size_t i = 0; i < pids.size(); ++i) {
        if (pids[i] != pid || done[i]) continue;
        done[i] = true;
        --running;
        const int code = status_code(status);
        if (code != 0 && result == 0) {
          result = code;
          first_failure = std::chrono::steady_clock::now();
        }
      }
      continue;
    }
    if (pid < 0 && errno == ECHILD) break;
    // The others get the grace period to see the failure themselves (their collectives time
    // out and they keep the run's last step), then a SIGTERM, then a SIGKILL.
    if (result != 0) {
      const auto waited = std::chrono::steady_clock::now() - first_failure;
      if (!terminated && waited > o.grace) {
        for (size_t i = 0; i < pids.size(); ++i)
          if (!done[i]) ::kill(pids[i], SIGTERM);
        terminated = true;
      } else if (!killed && waited > o.grace + std::chrono::seconds(10)) {
        for (size_t i = 0; i < pids.size(); ++i)
          if (!done[i]) ::kill(pids[i], SIGKILL);
        killed = true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace vit
