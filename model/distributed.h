// Data parallelism across processes and machines on PyTorch's own engine: a c10d process group
// with the Gloo backend, joined the way torchrun's workers join one (its environment variables,
// its agent's store), so `torchrun --no_python vit train ...` just works, and so does our own
// launcher (launcher.h) for users without Python.
//
// Every collective and the setup run under one timeout (--dist-timeout): a rank that dies or
// hangs makes the others throw DistributedError within it, instead of waiting for Gloo's default
// of 30 minutes. Gloo has no AVG: callers sum, then divide.
//
// Thread contract: one thread (the training thread) uses a group.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace vit {

// What a launcher told this process through the environment.
struct DistEnv {
  int rank = 0, world_size = 1;              // RANK, WORLD_SIZE
  int local_rank = 0, local_world_size = 1;  // LOCAL_RANK, LOCAL_WORLD_SIZE
  std::string master_addr = "127.0.0.1";     // MASTER_ADDR
  int master_port = 29500;                   // MASTER_PORT
  int restart_count = 0;                     // TORCHELASTIC_RESTART_COUNT (torchrun --max_restarts)
  bool agent_store = false;  // TORCHELASTIC_USE_AGENT_STORE: torchrun's agent hosts the store
  bool distributed() const { return world_size > 1; }
};

// Reads RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
// TORCHELASTIC_RESTART_COUNT and TORCHELASTIC_USE_AGENT_STORE. With WORLD_SIZE unset or 1: one
// process. Throws std::invalid_argument naming the variable when a value is impossible.
DistEnv dist_env_from_environment();

// A rank died, hung or the network failed: what happened and what the user can do.
struct DistributedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ProcessGroup {
 public:
  // Joins the group: every rank calls this with the same world size. Rank 0 hosts the store
  // (unless torchrun's agent does). Throws DistributedError when the others do not come within
  // `timeout`.
  ProcessGroup(const DistEnv& env, std::chrono::milliseconds timeout);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int size() const;
  const DistEnv& env() const;

  // In place: every rank ends with the element-wise sum over ranks. `what` names the collective
  // in errors ("the gradients of step 12").
  void all_reduce_sum(at::Tensor& tensor, const std::string& what);
  // `tensors` of rank `root` copied into every rank's (same shapes on every rank).
  void broadcast(std::vector<at::Tensor>& tensors, const std::string& what, int root = 0);
  // Rank `root`'s `value` on every rank (through the store).
  std::string broadcast_string(const std::string& value, const std::string& what, int root = 0);
  void barrier(const std::string& what);

  // A value that outlives this group in torchrun's agent store (so restarted workers find the
  // run directory the first attempt chose); nullopt without an agent store or when unset.
  std::optional<std::string> persistent_get(const std::string& key);
  void persistent_set(const std::string& key, const std::string& value);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vit
