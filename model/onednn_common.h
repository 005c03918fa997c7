#pragma once
// What the oneDNN kernels of vit_core share (fused_attention.cpp, onednn_linear.cpp): the CPU
// engine, a stream per thread, matmul creation in both oneDNN APIs, memory over a tensor's data.
// Included only where VIT_HAVE_ONEDNN is defined (model/CMakeLists.txt).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include <unordered_map>

#include "kernel_switch.h"

namespace vit::onednn {

using dnnl::memory;
using dt = memory::data_type;

inline const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// One stream per thread: data-parallel shards run kernels from several threads at once.
inline dnnl::stream& thread_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

using vit::switched_on;  // kernel_switch.h

inline dt type_of(const at::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 ? dt::bf16 : dt::f32;
}

inline memory mem(const memory::desc& md, const void* ptr) {
  return memory(md, cpu_engine(), const_cast<void*>(ptr));
}

// The number of OpenMP threads a primitive made now is made for. oneDNN fixes a primitive's work
// split (and so the order of its sums) when it is made, so our per-thread kernel caches are keyed
// by it too: a data-parallel shard runs with 1 thread on the same OS thread that may have made a
// kernel of the same shape with 2 before, and must get the 1-thread kernel a 1-thread process
// gets (test_distributed TwoRanksEqualTwoThreads).
inline int kernel_threads() { return omp_get_max_threads(); }

// Every primitive here takes its scratchpad from the caller (scratchpad_mode::user), through
// these attributes and run(): with the library-managed scratchpad of a default oneDNN build a
// primitive is only safe on the thread that made it (oneDNN's scratchpad_mode documentation),
// while a user scratchpad is safe whenever no two executions share one buffer. run() gives each
// thread its own.
inline dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// Executes p on this thread's stream, with a scratchpad from this thread's buffer when p needs
// one. CPU execution is synchronous, so the buffer is free again when this returns.
inline void run(const dnnl::primitive& p, std::unordered_map<int, memory> args) {
  const_dnnl_primitive_desc_t pd = nullptr;
  dnnl::error::wrap_c_api(dnnl_primitive_get_primitive_desc(p.get(), &pd), "could not query a primitive");
  const size_t bytes = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
  if (bytes > 0) {
    thread_local at::Tensor buffer;  // LibTorch's CPU allocator aligns to 64 bytes
    if (!buffer.defined() || size_t(buffer.numel()) < bytes) buffer = at::empty({int64_t(bytes)}, at::kByte);
    args.emplace(DNNL_ARG_SCRATCHPAD, mem(memory::desc({int64_t(bytes)}, dt::u8, memory::format_tag::a), buffer.data_ptr()));
  }
  p.execute(thread_stream(), args);
}

// One element-wise post-op in both APIs.
inline void append_eltwise(dnnl::post_ops& ops, dnnl::algorithm alg, float alpha, float beta) {
#if DNNL_VERSION_MAJOR >= 3
  ops.append_eltwise(alg, alpha, beta);
#else
  ops.append_eltwise(1.0f, alg, alpha, beta);
#endif
}

// c = scale * (a b) [+ bias], then GELU (erf form) when `gelu`; c += a b when `accumulate`.
// make_matmul_pd gives the primitive's description (e.g. the layout it picked for a "format any"
// operand), make_matmul the primitive.
// oneDNN 2.x (Debian 12) and 3.x (Debian 13) spell primitive creation and post-ops differently;
// the kernels are the same. Throws dnnl::error when this CPU has no kernel for the types (bf16
// needs AVX-512).
inline dnnl::matmul::primitive_desc make_matmul_pd(const memory::desc& a, const memory::desc& b, const memory::desc& c,
                                                   float scale = 1.0f, const memory::desc* bias = nullptr,
                                                   bool gelu = false, bool accumulate = false) {
  auto attr = user_scratchpad();
  dnnl::post_ops ops;
  if (accumulate) ops.append_sum(1.0f);
  if (scale != 1.0f) append_eltwise(ops, dnnl::algorithm::eltwise_linear, scale, 0.0f);
  if (gelu) append_eltwise(ops, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f);
  if (ops.len() > 0) attr.set_post_ops(ops);
#if DNNL_VERSION_MAJOR >= 3
  if (bias) return dnnl::matmul::primitive_desc(cpu_engine(), a, b, *bias, c, attr);
  return dnnl::matmul::primitive_desc(cpu_engine(), a, b, c, attr);
#else
  if (bias) return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, *bias, c), attr, cpu_engine());
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), attr, cpu_engine());
#endif
}

inline dnnl::matmul make_matmul(const memory::desc& a, const memory::desc& b, const memory::desc& c,
                                float scale = 1.0f, const memory::desc* bias = nullptr,
                                bool gelu = false, bool accumulate = false) {
  return dnnl::matmul(make_matmul_pd(a, b, c, scale, bias, gelu, accumulate));
}

}  // namespace vit::onednn
