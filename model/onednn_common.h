#pragma once
// What the oneDNN kernels of vit_core share (fused_attention.cpp, onednn_linear.cpp): the CPU
// engine, a stream per thread, matmul creation in both oneDNN APIs, memory over a tensor's data.
// Included only where VIT_HAVE_ONEDNN is defined (model/CMakeLists.txt).
#include <ATen/core/Tensor.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <unordered_map>

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

inline dt type_of(const at::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 ? dt::bf16 : dt::f32;
}

inline memory mem(const memory::desc& md, const void* ptr) {
  return memory(md, cpu_engine(), const_cast<void*>(ptr));
}

inline void run(const dnnl::primitive& p, const std::unordered_map<int, memory>& args) {
  p.execute(thread_stream(), args);
}

// c = scale * (a b) [+ bias]. oneDNN 2.x (Debian 12) and 3.x (Debian 13) spell primitive creation
// and post-ops differently; the kernels are the same. Throws dnnl::error when this CPU has no
// kernel for the types (bf16 needs AVX-512).
inline dnnl::matmul make_matmul(const memory::desc& a, const memory::desc& b, const memory::desc& c,
                                float scale = 1.0f, const memory::desc* bias = nullptr) {
  dnnl::primitive_attr attr;
  if (scale != 1.0f) {
    dnnl::post_ops ops;
#if DNNL_VERSION_MAJOR >= 3
    ops.append_eltwise(dnnl::algorithm::eltwise_linear, scale, 0.0f);
#else
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, scale, 0.0f);
#endif
    attr.set_post_ops(ops);
  }
#if DNNL_VERSION_MAJOR >= 3
  if (bias) return dnnl::matmul(dnnl::matmul::primitive_desc(cpu_engine(), a, b, *bias, c, attr));
  return dnnl::matmul(dnnl::matmul::primitive_desc(cpu_engine(), a, b, c, attr));
#else
  if (bias)
    return dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, *bias, c), attr, cpu_engine()));
  return dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), attr, cpu_engine()));
#endif
}

}  // namespace vit::onednn
