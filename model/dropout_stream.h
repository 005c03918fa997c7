// The dropout masks' random numbers, shared by the mask filler (dropout.cpp) and the fused
// GELU/dropout kernels (gelu_dropout_kernels.cpp), which draw the same mask again in the backward
// pass instead of keeping it. Header-only and free of ATen so the per-instruction-set kernel files
// can include it.
//
// A mask is cut into chunks of kDropoutChunk elements; chunk c is a splitmix64 stream starting at
// seed ^ (kGolden * (c + 1)). Its k-th draw (k = 0, 1, ...) is mix(start + (k + 1) * kGolden) and
// decides elements 2k (bits 0-23) and 2k + 1 (bits 32-55) of the chunk: kept when the 24-bit
// number is >= dropout_threshold(p). Every draw is a function of (seed, c, k) alone, so any part
// of a mask can be drawn on its own, on any thread, with the same result.
#pragma once

#include <cstdint>

namespace vit {

constexpr int64_t kDropoutChunk = int64_t(1) << 14;
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// splitmix64's output function (Steele, Lea & Flood 2014).
constexpr uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr uint64_t dropout_chunk_start(uint64_t seed, int64_t chunk) {
  return seed ^ (kGolden * uint64_t(chunk + 1));
}

// Elements whose 24-bit draw is below this are dropped: a fraction p of them.
constexpr uint32_t dropout_threshold(double p) { return static_cast<uint32_t>(p * double(1 << 24)); }

}  // namespace vit
