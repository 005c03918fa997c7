#include "distributed.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <c10/util/Exception.h>
#include <torch/version.h>

#include <cstdlib>
#include <sstream>

#ifndef USE_C10D_GLOO
#error "distributed.cpp needs USE_C10D_GLOO (Torch's CMake target defines it); without it ProcessGroupGloo.hpp compiles to nothing"
#endif

namespace vit {

namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

int env_int(const char* name, int fallback, int lo, int hi) {
  const auto v = env(name);
  if (!v) return fallback;
  try {
    size_t used = 0;
    const long long x = std::stoll(*v, &used);
    if (used == v->size() && x >= lo && x <= hi) return int(x);
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(std::string(name) + "=" + *v + " is not a whole number in " +
                              std::to_string(lo) + ".." + std::to_string(hi) +
                              ": check how the launcher (torchrun) was started");
}

// The first line of an exception's message, without LibTorch's C++ backtrace.
std::string reason(const std::exception& e) {
  std::string m = e.what();
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) m = c->what_without_backtrace();
  const auto nl = m.find('\n');
  return nl == std::string::npos ? m : m.substr(0, nl);
}

}  // namespace

DistEnv dist_env_from_environment() {
  DistEnv d;
  d.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 20);
  d.rank = env_int("RANK", 0, 0, d.world_size - 1);
  d.local_world_size = env_int("LOCAL_WORLD_SIZE", d.world_size, 1, d.world_size);
  d.local_rank = env_int("LOCAL_RANK", d.rank % d.local_world_size, 0, d.local_world_size - 1);
  d.master_addr = env("MASTER_ADDR").value_or("127.0.0.1");
  d.master_port = env_int("MASTER_PORT", 29500, 1, 65535);
  d.restart_count = env_int("TORCHELASTIC_RESTART_COUNT", 0, 0, 1 << 20);
  const auto agent = env("TORCHELASTIC_USE_AGENT_STORE");
  d.agent_store = agent && (*agent == "True" || *agent == "true" || *agent == "1");
  if (d.distributed() && !env("MASTER_ADDR"))
    throw std::invalid_argument("WORLD_SIZE=" + std::to_string(d.world_size) +
                                " but MASTER_ADDR is not set: start the ranks with torchrun or "
                                "`vit train --nproc-per-node N`");
  return d;
}

struct ProcessGroup::Impl {
  DistEnv env;
  std::chrono::milliseconds timeout{};
  c10::intrusive_ptr<c10d::Store> base;         // the TCP store (torchrun's agent's, or rank 0's)
  c10::intrusive_ptr<c10d::Store> store;        // this attempt's keys
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  int64_t broadcasts = 0;

  [[noreturn]] void fail(const std::string& what, const std::exception& e, bool setup = false) const {
    std::ostringstream out;
    out << "rank " << env.rank << " of " << env.world_size << ": " << what << " failed ("
        << reason(e) << "). ";
    if (setup)
      out << "Not every rank arrived within --dist-timeout " << timeout.count() / 1000
          << " s: start all " << env.world_size << " with the same WORLD_SIZE, MASTER_ADDR and "
          << "MASTER_PORT, reachable from every machine (GLOO_SOCKET_IFNAME picks the network "
          << "interface); nothing was trained";
    else
      out << "Another rank died, hung or lost the network (no answer within --dist-timeout "
          << timeout.count() / 1000 << " s); every rank stops. The run directory keeps the last "
          << "completed step: continue it with `vit train --resume DIR`";
    throw DistributedError(out.str());
  }
};

ProcessGroup::ProcessGroup(const DistEnv& env, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  Impl& d = *impl_;
  d.env = env;
  d.timeout = timeout;
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(env.master_port);
    o.isServer = env.rank == 0 && !env.agent_store;
    o.numWorkers = env.agent_store ? c10::nullopt : c10::optional<std::size_t>(env.world_size);
    o.waitWorkers = false;  // the group's own rendezvous below waits, under the same timeout
    o.timeout = timeout;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    // 2.4 made libuv the TCPStore's default; Debian 13's LibTorch 2.6 is built without it
    // ("use_libuv was requested but PyTorch was build without libuv support").
    o.useLibUV = false;
#endif
    d.base = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
    d.base->setTimeout(timeout);
    // torchrun's workers keep their keys under /worker/attempt_<restart count> of the agent's
    // store (torch.distributed.rendezvous), so a restarted attempt starts clean.
    const std::string prefix =
        env.agent_store ? "/worker/attempt_" + std::to_string(env.restart_count) : "vit";
    d.store = c10::make_intrusive<c10d::PrefixStore>(prefix, d.base);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const auto ifname = ::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(
          std::string(ifname).substr(0, std::string(ifname).find(','))));
    else
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    d.group = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("default_pg", d.store), env.rank, env.world_size,
        options);
  } catch (const std::exception& e) {
    std::ostringstream what;
    what << "joining the group at " << env.master_addr << ":" << env.master_port;
    d.fail(what.str(), e, /*setup=*/true);
  }
}

ProcessGroup::~ProcessGroup() = default;

int ProcessGroup::rank() const { return impl_->env.rank; }
int ProcessGroup::size() const { return impl_->env.world_size; }
const DistEnv& ProcessGroup::env() const { return impl_->env; }

void ProcessGroup::all_reduce_sum(at::Tensor& tensor, const std::string& what) {
  try {
    std::vector<at::Tensor> tensors{tensor};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = impl_->timeout;
    impl_->group->allreduce(tensors, o)->wait(impl_->timeout);
  } catch (const std::exception& e) {
    impl_->fail("the all-reduce of " + what, e);
  }
}

void ProcessGroup::broadcast(std::vector<at::Tensor>& tensors, const std::string& what, int root) {
  try {
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = impl_->timeout;
    for (auto& t : tensors) {  // one at a time: Gloo broadcasts one tensor per call
      std::vector<at::Tensor> one{t};
      impl_->group->broadcast(one, o)->wait(impl_->timeout);
    }
  } catch (const std::exception& e) {
    impl_->fail("the broadcast of " + what, e);
  }
}

std::string ProcessGroup::broadcast_string(const std::string& value, const std::string& what, int root) {
  const std::string key = "broadcast/" + std::to_string(impl_->broadcasts++);
  try {
    if (rank() == root) {
      impl_->store->set(key, std::vector<uint8_t>(value.begin(), value.end()));
      return value;
    }
    const auto bytes = impl_->store->get(key);
    return std::string(bytes.begin(), bytes.end());
  } catch (const std::exception& e) {
    impl_->fail("sharing " + what, e);
  }
}

void ProcessGroup::barrier(const std::string& what) {
  try {
    c10d::BarrierOptions o;
    o.timeout = impl_->timeout;
    impl_->group->barrier(o)->wait(impl_->timeout);
  } catch (const std::exception& e) {
    impl_->fail(what, e);
  }
}

std::optional<std::string> ProcessGroup::persistent_get(const std::string& key) {
  if (!impl_->env.agent_store) return std::nullopt;
  try {
    const std::string k = "vit/" + key;
    if (!impl_->base->check({k})) return std::nullopt;
    const auto bytes = impl_->base->get(k);
    return std::string(bytes.begin(), bytes.end());
  } catch (const std::exception& e) {
    impl_->fail("reading '" + key + "' from torchrun's store", e);
  }
}

void ProcessGroup::persistent_set(const std::string& key, const std::string& value) {
  if (!impl_->env.agent_store) return;
  try {
    impl_->base->set("vit/" + key, std::vector<uint8_t>(value.begin(), value.end()));
  } catch (const std::exception& e) {
    impl_->fail("writing '" + key + "' to torchrun's store", e);
  }
}

}  // namespace vit
