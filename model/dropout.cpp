#include "dropout.h"

#include "dropout_stream.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <mutex>

namespace vit {

namespace {

// The calling thread's private seed stream (RandomStreamScope), if any.
thread_local bool t_has_stream = false;
thread_local uint64_t t_stream_state = 0;

uint64_t splitmix64(uint64_t& state) { return splitmix64_mix(state += kGolden); }

}  // namespace

uint64_t next_dropout_seed() { return t_has_stream ? splitmix64(t_stream_state) : draw_seed(); }

uint64_t draw_seed() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get<at::CPUGeneratorImpl>()->random64();
}

RandomStreamScope::RandomStreamScope(uint64_t seed)
    : had_stream_(t_has_stream), saved_state_(t_stream_state) {
  t_has_stream = true;
  t_stream_state = seed;
}

RandomStreamScope::~RandomStreamScope() {
  t_has_stream = had_stream_;
  t_stream_state = saved_state_;
}

namespace {

template <typename T>
void fill_dropout_mask(T* m, int64_t n, double p, uint64_t seed) {
  // The streams of dropout_stream.h, drawn in order within each chunk.
  const uint32_t threshold = dropout_threshold(p);
  const T keep = static_cast<T>(static_cast<float>(1.0 / (1.0 - p))), drop = static_cast<T>(0.0f);
  at::parallel_for(0, (n + kDropoutChunk - 1) / kDropoutChunk, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      uint64_t state = dropout_chunk_start(seed, c);
      const int64_t lo = c * kDropoutChunk, hi = std::min(n, lo + kDropoutChunk);
      for (int64_t i = lo; i < hi; i += 2) {
        // One 64-bit draw gives two 24-bit uniforms.
        const uint64_t z = splitmix64(state);
        m[i] = uint32_t(z & 0xffffff) >= threshold ? keep : drop;
        if (i + 1 < hi) m[i + 1] = uint32_t((z >> 32) & 0xffffff) >= threshold ? keep : drop;
      }
    }
  });
}

}  // namespace

at::Tensor dropout_mask(at::IntArrayRef sizes, double p, at::ScalarType dtype, c10::Device device) {
  if (!device.is_cpu())  // never through host pointers: made where it is used
    return at::empty(sizes, at::TensorOptions().dtype(dtype).device(device)).bernoulli_(1.0 - p).div_(1.0 - p);
  // torch::dropout draws each element with bernoulli_ through CPUGeneratorImpl::random64, ~20% of a
  // small-ViT training step here. We take one 64-bit seed from LibTorch's default generator (so
  // torch::manual_seed still makes runs reproducible) and fill the mask from splitmix64 streams,
  // one per chunk of 16k elements, in parallel: the same seed gives the same mask at any thread
  // count.
  if (dtype != at::kFloat && dtype != at::kBFloat16) return dropout_mask(sizes, p, at::kFloat, device).to(dtype);
  auto mask = at::empty(sizes, at::TensorOptions().dtype(dtype));
  const uint64_t seed = next_dropout_seed();
  if (dtype == at::kFloat)
    fill_dropout_mask(mask.data_ptr<float>(), mask.numel(), p, seed);
  else
    fill_dropout_mask(mask.data_ptr<at::BFloat16>(), mask.numel(), p, seed);
  return mask;
}

}  // namespace vit
