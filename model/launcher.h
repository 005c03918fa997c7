// Starting the ranks of a distributed run on this machine without Python: what
// `torchrun --nproc_per_node N` does, as `vit train --nproc-per-node N`. Torch-free.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace vit {

// A free TCP port on the loopback interface (bound, read and released: the store binds it next).
int free_port();

struct LaunchOptions {
  int nproc = 2;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free one
  // After the first rank fails, how long the others get to notice and stop by themselves (their
  // collective timeout) before they are terminated.
  std::chrono::milliseconds grace{70000};
};

// Runs `program` with `args` as ranks 0..nproc-1 (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT set for each), forwarding SIGINT and SIGTERM to
// them, and waits for all. Returns 0 when every rank succeeded; otherwise the exit status of the
// first rank that failed (128 + the signal for a rank killed by one), after the others stopped.
int launch_local_ranks(const std::string& program, const std::vector<std::string>& args,
                       const LaunchOptions& options);

}  // namespace vit
