#include "fused_attention.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "attention_kernels.h"  // AttentionDropout; the kernels' declarations only
#include "dropout.h"
#include "dropout_stream.h"
#ifdef VIT_HAVE_ONEDNN
#include "onednn_common.h"
#endif
#ifdef VIT_HAVE_ELTWISE_KERNELS
#include <ATen/Parallel.h>

#include "kernel_isa.h"  // x86 only: __builtin_cpu_supports
#include "softmax_kernels.h"
#endif

namespace vit {

bool fused_attention_enabled() {
#ifdef VIT_HAVE_ONEDNN
  static const bool on = onednn::switched_on("VIT_FUSED_ATTENTION");
  return on;
#else
  return false;
#endif
}

#ifndef VIT_HAVE_ONEDNN

std::optional<at::Tensor> fused_attention(const at::Tensor&, int64_t, double, double) { return std::nullopt; }
std::string fused_attention_declined() { return "built without oneDNN (libdnnl-dev)"; }
std::string fused_attention_softmax() { return "none (built without oneDNN)"; }
std::string fused_attention_kernels(int64_t, int64_t, at::ScalarType) { return "none (built without oneDNN)"; }
bool fused_attention_drops_out(int64_t, int64_t, at::ScalarType) { return false; }

#else

namespace {

using namespace vit::onednn;

// One call's shape: n images of T tokens, H heads of hd features (D = H * hd), in dtype `type`.
struct Shape {
  int64_t n, H, T, hd;
  dt type;
  int threads = kernel_threads();  // the OpenMP threads the kernels are made for (onednn_common.h)
  int64_t D() const { return H * hd; }
  bool operator<(const Shape& o) const {
    return std::tie(n, H, T, hd, type, threads) < std::tie(o.n, o.H, o.T, o.hd, o.type, o.threads);
  }
};

// Heads gathered into dense (n*H, T, hd) matrices, one per (image, head): the layout oneDNN's
// batched brgemm kernels take (on the strided layout it chose a generic GEMM loop that was slower
// than LibTorch's bf16 bmm for short sequences). As the matmuls see it, or transposed (n*H, hd, T).
memory::desc dense(const Shape& s) {
  return memory::desc({s.n * s.H, s.T, s.hd}, s.type, {s.T * s.hd, s.hd, 1});
}
memory::desc dense_t(const Shape& s) {
  return memory::desc({s.n * s.H, s.hd, s.T}, s.type, {s.T * s.hd, 1, s.hd});
}
// (n*H, T, T) scores or probabilities, contiguous; _t: read transposed.
memory::desc scores(const Shape& s, dt type) {
  return memory::desc({s.n * s.H, s.T, s.T}, type, {s.T * s.T, s.T, 1});
}
memory::desc scores_t(const Shape& s, dt type) {
  return memory::desc({s.n * s.H, s.T, s.T}, type, {s.T * s.T, 1, s.T});
}

// Softmax is spelled differently by oneDNN 2.x (softmax_v2, Debian 12) and 3.x (Debian 13).
#if DNNL_VERSION_MAJOR >= 3
using SoftmaxFwd = dnnl::softmax_forward;
using SoftmaxBwd = dnnl::softmax_backward;
#else
using SoftmaxFwd = dnnl::softmax_v2_forward;
using SoftmaxBwd = dnnl::softmax_v2_backward;
#endif

SoftmaxFwd::primitive_desc softmax_fwd_pd(const memory::desc& src, const memory::desc& dst) {
  const auto prop = dnnl::prop_kind::forward_training;
  const auto alg = dnnl::algorithm::softmax_accurate;
#if DNNL_VERSION_MAJOR >= 3
  return SoftmaxFwd::primitive_desc(cpu_engine(), prop, alg, src, dst, 2, user_scratchpad());
#else
  return SoftmaxFwd::primitive_desc(SoftmaxFwd::desc(prop, alg, src, dst, 2), user_scratchpad(), cpu_engine());
#endif
}

SoftmaxBwd::primitive_desc softmax_bwd_pd(const memory::desc& diff_src, const memory::desc& diff_dst,
                                          const memory::desc& dst,
                                          const SoftmaxFwd::primitive_desc& hint) {
  const auto alg = dnnl::algorithm::softmax_accurate;
#if DNNL_VERSION_MAJOR >= 3
  return SoftmaxBwd::primitive_desc(cpu_engine(), alg, diff_src, diff_dst, dst, 2, hint, user_scratchpad());
#else
  return SoftmaxBwd::primitive_desc(SoftmaxBwd::desc(alg, diff_src, diff_dst, dst, 2),
                                    user_scratchpad(), cpu_engine(), hint);
#endif
}

// Moves the heads of n images between a row-major (n, T, row) matrix, head h of a token at
// columns [h*hd, (h+1)*hd) of `strided` (q, k or v in the qkv projection's output, row = 3D; the
// output or its gradient, row = D), and dense (n*H, T, hd) matrices at `dense`. Gather: strided
// to dense (from = strided, to = dense); else back (from = dense, to = strided). Plain copies of hd-element runs, where oneDNN's reorder primitives were
// (11 per layer and step before backward reused the forward's gathered heads): fmnist-small's
// attention forward+backward 0.62-0.72 -> 0.55-0.57 ms (`attention_bench 32 17 4 32 100`, Intel
// Xeon model 207, 2026-12-06), the same values.
void move_heads(const Shape& s, int64_t row, int64_t esize, const char* from, char* to, bool gather) {
  const int64_t run = s.hd * esize, row_bytes = row * esize;
  auto copy = [run](char* to, const char* from) {
    if (run % 64 == 0) {
      for (int64_t b = 0; b < run; b += 64) std::memcpy(to + b, from + b, 64);  // inlined moves
    } else {
      std::memcpy(to, from, size_t(run));
    }
  };
  for (int64_t i = 0; i < s.n; ++i)
    for (int64_t h = 0; h < s.H; ++h) {
      const int64_t d = (i * s.H + h) * s.T * run, r = i * s.T * row_bytes + h * run;  // offsets
      for (int64_t t = 0; t < s.T; ++t) {
        const int64_t dense_at = d + t * run, strided_at = r + t * row_bytes;
        gather ? copy(to + dense_at, from + strided_at) : copy(to + strided_at, from + dense_at);
      }
    }
}

// Whether the row softmax is ours (softmax_kernels.h, the element-wise family's set: oneDNN 2.6's
// primitive is slow on short rows); not with VIT_FUSED_ELTWISE=0, on a CPU without AVX2, or in a
// build without the element-wise kernels: then oneDNN's primitives.
#ifdef VIT_HAVE_ELTWISE_KERNELS
bool own_softmax() { return eltwise_kernel_isa() != KernelIsa::None; }
// P = softmax(S) row by row, S (rows, T) float scratch (may be overwritten), P in the input's type.
void softmax_forward(dt type, void* s, int64_t rows, int64_t T, void* p) {
  const KernelIsa isa = eltwise_kernel_isa();
  auto* sf = static_cast<float*>(s);
  if (type == dt::f32) VIT_KERNEL_CALL(isa, softmax_rows, sf, rows, T, static_cast<float*>(p));
  else VIT_KERNEL_CALL(isa, softmax_rows, sf, rows, T, static_cast<c10::BFloat16*>(p));
}
// dS = P * (dP - rowsum(P * dP)), all in the input's type.
void softmax_backward(dt type, const void* p, const void* dp, int64_t rows, int64_t T, void* ds) {
  const KernelIsa isa = eltwise_kernel_isa();
  if (type == dt::f32)
    VIT_KERNEL_CALL(isa, softmax_backward_rows, static_cast<const float*>(p), static_cast<const float*>(dp),
                    rows, T, static_cast<float*>(ds));
  else
    VIT_KERNEL_CALL(isa, softmax_backward_rows, static_cast<const c10::BFloat16*>(p),
                    static_cast<const c10::BFloat16*>(dp), rows, T, static_cast<c10::BFloat16*>(ds));
}

// Whether float or bfloat16 heads of T tokens and hd features run on our register-blocked
// kernels (attention_kernels.h: short sequences, small heads), with the element-wise family's
// switch: where they are the faster choice, or, with attention dropout (`dropping`), wherever
// they cover the heads.
bool own_products(dt type, int64_t T, int64_t hd, bool dropping = false) {
  const KernelIsa isa = eltwise_kernel_isa();
  if ((type != dt::f32 && type != dt::bf16) || isa == KernelIsa::None) return false;
  return dropping ? VIT_KERNEL_CALL(isa, small_attention_fits, T, hd)
                  : VIT_KERNEL_CALL(isa, small_attention_preferred, T, hd);
}
// The probabilities our kernels keep for backward: float for float and bfloat16 heads.
at::Tensor own_probs(const at::Tensor& qkv, int64_t H) {
  return at::empty({qkv.size(0), H, qkv.size(1), qkv.size(1)}, qkv.options().dtype(at::kFloat));
}
// (image, head) pairs per task when a call runs on several threads (outside data-parallel
// shards, e.g. evaluation): each pair is a microsecond or two.
constexpr int64_t kPairsPerTask = 8;
// The attention of qkv (B, T, 3D) on our kernels; probabilities into `probs` (B, H, T, T) when
// it is defined; with dropout on them when `drop` is not null.
at::Tensor own_forward(const at::Tensor& qkv, int64_t H, float scale, const at::Tensor& probs,
                       const AttentionDropout* drop) {
  const int64_t B = qkv.size(0), T = qkv.size(1), D = qkv.size(2) / 3, hd = D / H;
  auto out = at::empty({B, T, D}, qkv.options());
  const KernelIsa isa = eltwise_kernel_isa();
  float* p = probs.defined() ? probs.data_ptr<float>() : nullptr;
  const int64_t scratch_size = VIT_KERNEL_CALL(isa, small_attention_scratch, T, hd);
  at::parallel_for(0, B * H, kPairsPerTask, [&](int64_t bh0, int64_t bh1) {
    std::vector<float> scratch(static_cast<size_t>(scratch_size));
    if (qkv.scalar_type() == at::kFloat)
      VIT_KERNEL_CALL(isa, small_attention_forward, qkv.data_ptr<float>(), T, H, hd, scale, bh0, bh1, p,
                      out.data_ptr<float>(), scratch.data(), drop);
    else
      VIT_KERNEL_CALL(isa, small_attention_forward, qkv.data_ptr<at::BFloat16>(), T, H, hd, scale, bh0, bh1, p,
                      out.data_ptr<at::BFloat16>(), scratch.data(), drop);
  });
  return out;
}
at::Tensor own_backward(const at::Tensor& qkv, const at::Tensor& probs, const at::Tensor& grad_out, int64_t H,
                        float scale, float dropout_scale) {
  const int64_t B = qkv.size(0), T = qkv.size(1), D = qkv.size(2) / 3, hd = D / H;
  auto grad = at::empty_like(qkv);
  const KernelIsa isa = eltwise_kernel_isa();
  const float* p = probs.data_ptr<float>();
  const int64_t scratch_size = VIT_KERNEL_CALL(isa, small_attention_scratch, T, hd);
  at::parallel_for(0, B * H, kPairsPerTask, [&](int64_t bh0, int64_t bh1) {
    std::vector<float> scratch(static_cast<size_t>(scratch_size));
    if (qkv.scalar_type() == at::kFloat)
      VIT_KERNEL_CALL(isa, small_attention_backward, qkv.data_ptr<float>(), p, grad_out.data_ptr<float>(), T, H,
                      hd, scale, bh0, bh1, grad.data_ptr<float>(), scratch.data(), dropout_scale);
    else
      VIT_KERNEL_CALL(isa, small_attention_backward, qkv.data_ptr<at::BFloat16>(), p,
                      grad_out.data_ptr<at::BFloat16>(), T, H, hd, scale, bh0, bh1, grad.data_ptr<at::BFloat16>(),
                      scratch.data(), dropout_scale);
  });
  return grad;
}
#else
bool own_softmax() { return false; }
void softmax_forward(dt, void*, int64_t, int64_t, void*) {}
void softmax_backward(dt, const void*, const void*, int64_t, int64_t, void*) {}
bool own_products(dt, int64_t, int64_t, bool = false) { return false; }
at::Tensor own_probs(const at::Tensor&, int64_t) { return {}; }
at::Tensor own_forward(const at::Tensor&, int64_t, float, const at::Tensor&, const AttentionDropout*) { return {}; }
at::Tensor own_backward(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, float, float) { return {}; }
#endif

// The primitives for one shape. Forward (q, k, v gathered into dense per-head matrices first):
// S = scale * Q K^T (float scores), P = softmax(S) in the input's type, O = P V, then scattered
// into the (n, T, D) output. Backward (made only when needed; dO gathered): dV = P^T dO,
// dP = dO V^T, dS = softmax'(P, dP), dQ = scale * dS K, dK = scale * dS^T Q, each scattered into
// its D columns of the qkv gradient.
struct Kernels {
  dnnl::matmul qk, pv;
  dnnl::primitive softmax;  // oneDNN's, made only when ours (softmax_kernels.h) are off
  bool has_backward = false;
  dnnl::matmul dv, dp, dq, dk;
  dnnl::primitive softmax_bwd;
};

Kernels make_kernels(const Shape& s, float scale, bool backward) {
  Kernels k;
  k.qk = make_matmul(dense(s), dense_t(s), scores(s, dt::f32), scale);
  std::optional<SoftmaxFwd::primitive_desc> fwd;  // also the backward primitive's hint
  if (!own_softmax()) {
    fwd = softmax_fwd_pd(scores(s, dt::f32), scores(s, s.type));
    k.softmax = SoftmaxFwd(*fwd);
  }
  k.pv = make_matmul(scores(s, s.type), dense(s), dense(s));
  if (backward) {
    k.dv = make_matmul(scores_t(s, s.type), dense(s), dense(s));
    k.dp = make_matmul(dense(s), dense_t(s), scores(s, s.type));
    if (fwd)
      k.softmax_bwd = SoftmaxBwd(softmax_bwd_pd(scores(s, s.type), scores(s, s.type), scores(s, s.type), *fwd));
    k.dq = make_matmul(scores(s, s.type), dense(s), dense(s), scale);
    k.dk = make_matmul(scores_t(s, s.type), dense(s), dense(s), scale);
    k.has_backward = true;
  }
  return k;
}

// Per thread (data-parallel shards each run their own): the primitives by shape and scale;
// kernels_for() gives nullptr when oneDNN cannot make them here (e.g. bfloat16 without AVX-512).
struct ThreadState {
  std::map<std::pair<Shape, float>, Kernels> kernels;
  std::map<std::pair<Shape, float>, bool> unsupported;
  std::string declined;  // oneDNN's message for the last shape it could not make kernels for
};

ThreadState& thread_state() {
  thread_local ThreadState state;
  return state;
}

const Kernels* kernels_for(const Shape& s, float scale, bool backward) {
  auto& st = thread_state();
  const auto key = std::make_pair(s, scale);
  if (st.unsupported.count(key)) return nullptr;
  auto it = st.kernels.find(key);
  if (it != st.kernels.end() && (it->second.has_backward || !backward)) return &it->second;
  try {
    auto made = make_kernels(s, scale, backward);
    return &(st.kernels[key] = std::move(made));
  } catch (const dnnl::error& e) {
    st.unsupported[key] = true;
    st.declined = e.what();
    return nullptr;
  }
}

// How many images one call covers: the float scores of a chunk stay in a core's cache (~512 KiB).
int64_t chunk_images(int64_t B, int64_t H, int64_t T) {
  const int64_t per_image = H * T * T * int64_t(sizeof(float));
  return std::max<int64_t>(1, std::min<int64_t>(B, (512 << 10) / per_image));
}

bool kernels_ready(int64_t B, int64_t H, int64_t T, int64_t hd, dt type, float scale, bool backward) {
  const int64_t chunk = chunk_images(B, H, T);
  return kernels_for({chunk, H, T, hd, type}, scale, backward) &&
         (B % chunk == 0 || kernels_for({B % chunk, H, T, hd, type}, scale, backward));
}

template <class F>
void for_each_chunk(int64_t B, int64_t H, int64_t T, int64_t hd, dt type, float scale,
                    bool backward, F&& body) {
  const int64_t chunk = chunk_images(B, H, T);
  const Kernels* full = kernels_for({chunk, H, T, hd, type}, scale, backward);
  const Kernels* rest = B % chunk ? kernels_for({B % chunk, H, T, hd, type}, scale, backward) : full;
  if (!full || !rest)  // made on another thread than the one that checked, and failed here
    throw std::runtime_error("fused attention: oneDNN could not make its kernels on this thread; "
                             "run with VIT_FUSED_ATTENTION=0");
  for (int64_t b0 = 0; b0 < B; b0 += chunk) {
    const int64_t n = std::min(chunk, B - b0);
    body(b0, n, n == chunk ? *full : *rest);
  }
}

// `count` buffers of (images, H, T, hd) elements in the input's options: a chunk's scratch, or the
// whole batch's dense heads.
at::Tensor head_buffers(const at::Tensor& like, int64_t count, int64_t images, int64_t H, int64_t T, int64_t hd) {
  return at::empty({count, images * H * T * hd}, like.options());
}

char* row_of(const at::Tensor& buffers, int64_t i) {
  return static_cast<char*>(buffers.data_ptr()) + i * buffers.size(1) * buffers.element_size();
}

// Forward over all chunks; probabilities into `probs` (B, H, T, T) when it is defined (kept for
// backward), else into a chunk-sized scratch. q, k and v are gathered into `heads` (3, B*H*T*hd:
// the dense per-head matrices of the whole batch, what backward reads) when it is defined, else
// into a chunk-sized scratch.
at::Tensor attention_forward(const at::Tensor& qkv, int64_t H, float scale, const at::Tensor& probs,
                             const at::Tensor& heads) {
  const int64_t B = qkv.size(0), T = qkv.size(1), D = qkv.size(2) / 3, hd = D / H;
  const dt type = type_of(qkv);
  const int64_t esize = qkv.element_size();
  auto out = at::empty({B, T, D}, qkv.options());
  const int64_t chunk = chunk_images(B, H, T);
  auto s_scratch = at::empty({chunk, H, T, T}, qkv.options().dtype(at::kFloat));
  auto p_scratch = probs.defined() ? at::Tensor() : at::empty({chunk, H, T, T}, qkv.options());
  // q, k, v (unless `heads` keeps them) and o of one chunk.
  auto scratch = head_buffers(qkv, heads.defined() ? 1 : 4, chunk, H, T, hd);
  const auto* base = static_cast<const char*>(qkv.data_ptr());
  auto* o = static_cast<char*>(out.data_ptr());
  for_each_chunk(B, H, T, hd, type, scale, probs.defined(), [&](int64_t b0, int64_t n, const Kernels& k) {
    const Shape s{n, H, T, hd, type};
    const char* in = base + b0 * T * 3 * D * esize;
    char* p = probs.defined() ? static_cast<char*>(probs.data_ptr()) + b0 * H * T * T * esize
                              : static_cast<char*>(p_scratch.data_ptr());
    char* qkv_dense[3];
    for (int i = 0; i < 3; ++i) {
      qkv_dense[i] = heads.defined() ? row_of(heads, i) + b0 * H * T * hd * esize : row_of(scratch, i + 1);
      move_heads(s, 3 * D, esize, in + i * D * esize, qkv_dense[i], /*gather=*/true);
    }
    char* od = row_of(scratch, 0);
    const auto S = mem(scores(s, dt::f32), s_scratch.data_ptr()), P = mem(scores(s, type), p);
    run(k.qk, {{DNNL_ARG_SRC, mem(dense(s), qkv_dense[0])}, {DNNL_ARG_WEIGHTS, mem(dense_t(s), qkv_dense[1])},
               {DNNL_ARG_DST, S}});
    if (own_softmax()) {
      thread_stream().wait();
      softmax_forward(type, s_scratch.data_ptr(), n * H * T, T, p);
    } else {
      run(k.softmax, {{DNNL_ARG_SRC, S}, {DNNL_ARG_DST, P}});
    }
    run(k.pv, {{DNNL_ARG_SRC, P}, {DNNL_ARG_WEIGHTS, mem(dense(s), qkv_dense[2])}, {DNNL_ARG_DST, mem(dense(s), od)}});
    thread_stream().wait();
    move_heads(s, D, esize, od, o + b0 * T * D * esize, /*gather=*/false);
  });
  return out;
}

// The qkv gradient (B, T, 3D) from the forward pass's `heads` (q, k, v as dense per-head matrices
// of the whole batch), its probabilities and the output's gradient (B, T, D).
at::Tensor attention_backward(const at::Tensor& heads, const at::Tensor& probs, const at::Tensor& grad_out,
                              int64_t H, float scale) {
  const int64_t B = grad_out.size(0), T = grad_out.size(1), D = grad_out.size(2), hd = D / H;
  const dt type = type_of(heads);
  const int64_t esize = heads.element_size();
  auto grad = at::empty({B, T, 3 * D}, heads.options());
  const int64_t chunk = chunk_images(B, H, T);
  auto dp_scratch = at::empty({chunk, H, T, T}, heads.options());
  auto ds_scratch = at::empty({chunk, H, T, T}, heads.options());
  auto scratch = head_buffers(heads, 2, chunk, H, T, hd);  // dO, one gradient at a time
  const auto* dout = static_cast<const char*>(grad_out.data_ptr());
  auto* g = static_cast<char*>(grad.data_ptr());
  for_each_chunk(B, H, T, hd, type, scale, true, [&](int64_t b0, int64_t n, const Kernels& k) {
    const Shape s{n, H, T, hd, type};
    const int64_t row3 = b0 * T * 3 * D * esize, at_chunk = b0 * H * T * hd * esize;
    move_heads(s, D, esize, dout + b0 * T * D * esize, row_of(scratch, 0), /*gather=*/true);
    const char* p = static_cast<const char*>(probs.data_ptr()) + b0 * H * T * T * esize;
    const auto q = mem(dense(s), row_of(heads, 0) + at_chunk), kk = mem(dense(s), row_of(heads, 1) + at_chunk);
    const auto dO = mem(dense(s), row_of(scratch, 0)), gd = mem(dense(s), row_of(scratch, 1));
    const auto dP = mem(scores(s, type), dp_scratch.data_ptr());
    const auto dS = mem(scores(s, type), ds_scratch.data_ptr());
    // One gradient of q, k, v at a time into the dense buffer, then into its columns of `grad`.
    auto scatter = [&](int which) {
      thread_stream().wait();
      move_heads(s, 3 * D, esize, row_of(scratch, 1), g + row3 + which * D * esize, /*gather=*/false);
    };
    // P comes from memory (saved by the forward pass for the whole batch): the softmax backward
    // reads it row by row, which prefetches well, and leaves it in cache for dV's transposed
    // read (that read straight from memory took 26 us per image of keras-cifar, from cache 12).
    run(k.dp, {{DNNL_ARG_SRC, dO}, {DNNL_ARG_WEIGHTS, mem(dense_t(s), row_of(heads, 2) + at_chunk)}, {DNNL_ARG_DST, dP}});
    if (own_softmax()) {
      thread_stream().wait();
      softmax_backward(type, p, dp_scratch.data_ptr(), n * H * T, T, ds_scratch.data_ptr());
    } else {
      run(k.softmax_bwd, {{DNNL_ARG_DST, mem(scores(s, type), p)}, {DNNL_ARG_DIFF_DST, dP},
                          {DNNL_ARG_DIFF_SRC, dS}});
    }
    run(k.dv, {{DNNL_ARG_SRC, mem(scores_t(s, type), p)}, {DNNL_ARG_WEIGHTS, dO}, {DNNL_ARG_DST, gd}});
    scatter(2);
    run(k.dq, {{DNNL_ARG_SRC, dS}, {DNNL_ARG_WEIGHTS, kk}, {DNNL_ARG_DST, gd}});
    scatter(0);
    run(k.dk, {{DNNL_ARG_SRC, mem(scores_t(s, type), ds_scratch.data_ptr())}, {DNNL_ARG_WEIGHTS, q},
               {DNNL_ARG_DST, gd}});
    scatter(1);
  });
  return grad;
}

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

struct FusedAttentionFunction : torch::autograd::Function<FusedAttentionFunction> {
  // Saves the probabilities and q, k, v already gathered per head (the same size as qkv, which
  // is not kept): backward needs no gathering of its own.
  // On our kernels (own_products) it saves qkv itself, which they read head by head in place.
  // Attention dropout (only on our kernels: fused_attention() checks) is `drop` as three numbers.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& qkv, int64_t heads, double scale,
                            int64_t drop_seed, int64_t drop_threshold, double drop_scale) {
    const int64_t B = qkv.size(0), T = qkv.size(1), hd = qkv.size(2) / 3 / heads;
    const bool own = own_products(type_of(qkv), T, hd, drop_threshold > 0);
    at::Tensor out;
    const AttentionDropout drop{uint64_t(drop_seed), uint32_t(drop_threshold), float(drop_scale)};
    ctx->saved_data["dropout_scale"] = drop_threshold > 0 ? drop_scale : 0.0;
    if (own) {
      auto probs = own_probs(qkv, heads);
      out = own_forward(qkv, heads, float(scale), probs, drop_threshold > 0 ? &drop : nullptr);
      ctx->save_for_backward({qkv, probs});
    } else {
      auto probs = at::empty({B, heads, T, T}, qkv.options());
      auto dense_heads = head_buffers(qkv, 3, B, heads, T, hd);
      out = attention_forward(qkv, heads, float(scale), probs, dense_heads);
      ctx->save_for_backward({dense_heads, probs});
    }
    ctx->saved_data["own"] = own;
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const int64_t heads = ctx->saved_data["heads"].toInt();
    const float scale = float(ctx->saved_data["scale"].toDouble());
    auto grad_out = grads[0].to(saved[0].scalar_type()).contiguous();
    const at::Tensor none;
    if (ctx->saved_data["own"].toBool()) {
      const float dropout_scale = float(ctx->saved_data["dropout_scale"].toDouble());
      return {own_backward(saved[0], saved[1], grad_out, heads, scale, dropout_scale), none, none, none, none, none};
    }
    return {attention_backward(saved[0], saved[1], grad_out, heads, scale), none, none, none, none, none};
  }
};

}  // namespace

std::string fused_attention_declined() { return thread_state().declined; }

std::string fused_attention_kernels(int64_t tokens, int64_t head_dim, at::ScalarType type) {
  if (!fused_attention_enabled()) return "none (VIT_FUSED_ATTENTION=0)";
  if (type != at::kFloat && type != at::kBFloat16) return "none (only float and bfloat16)";
#ifdef VIT_HAVE_ELTWISE_KERNELS
  if (own_products(type == at::kFloat ? dt::f32 : dt::bf16, tokens, head_dim))
    return std::string("ours (") + eltwise_kernel_isa_name() + ")";
#else
  (void)tokens, (void)head_dim;
#endif
  return "oneDNN's matmuls, softmax " + fused_attention_softmax();
}

bool fused_attention_drops_out(int64_t tokens, int64_t head_dim, at::ScalarType type) {
  if (!fused_attention_enabled() || (type != at::kFloat && type != at::kBFloat16)) return false;
  return own_products(type == at::kFloat ? dt::f32 : dt::bf16, tokens, head_dim, /*dropping=*/true);
}

std::string fused_attention_softmax() {
#ifdef VIT_HAVE_ELTWISE_KERNELS
  if (own_softmax()) return eltwise_kernel_isa_name();
  return std::string("oneDNN; ours: ") + eltwise_kernel_isa_name();
#else
  return "oneDNN (built without the element-wise kernels: libsleef-dev)";
#endif
}

std::optional<at::Tensor> fused_attention(const at::Tensor& qkv_in, int64_t heads, double scale, double dropout) {
  if (!fused_attention_enabled() || !qkv_in.device().is_cpu() || qkv_in.dim() != 3) return std::nullopt;
  const auto type = qkv_in.scalar_type();
  if (type != at::kFloat && type != at::kBFloat16) return std::nullopt;
  const int64_t B = qkv_in.size(0), T = qkv_in.size(1), D3 = qkv_in.size(2);
  if (B == 0 || T == 0 || heads <= 0 || D3 % (3 * heads) != 0) return std::nullopt;
  if (!(dropout >= 0.0 && dropout < 1.0)) return std::nullopt;
  const bool backward = at::GradMode::is_enabled() && qkv_in.requires_grad();
  const int64_t hd = D3 / 3 / heads;
  // Dropout on the probabilities runs inside our kernels only (oneDNN's path keeps no mask): with
  // it, every shape they cover runs on them, and others go the composite way.
  AttentionDropout drop;
  const bool dropping = dropout_threshold(dropout) > 0;
  const bool own = own_products(type_of(qkv_in), T, hd, dropping);
  if (dropping) {
    if (!own) return std::nullopt;
    drop = {next_dropout_seed(), dropout_threshold(dropout), static_cast<float>(1.0 / (1.0 - dropout))};
  }
  if (!own && !kernels_ready(B, heads, T, hd, type_of(qkv_in), float(scale), backward)) {
    // bf16 where oneDNN has no bf16 matmul (a CPU without AVX-512, e.g. an AMD EPYC family 25):
    // the products in float on the bf16 values, as bf16 linear layers run there (onednn_linear.h),
    // the result rounded to bf16 (autograd carries the gradient through both casts). LibTorch's
    // bf16 bmm there was a scalar loop: 52% of a ViT-B/16 bf16 forward, 2.4x the whole fp32 one.
    if (type == at::kBFloat16 && kernels_ready(B, heads, T, hd, dt::f32, float(scale), backward))
      if (auto out = fused_attention(qkv_in.to(at::kFloat), heads, scale)) return out->to(at::kBFloat16);
    return std::nullopt;
  }
  const auto qkv = qkv_in.contiguous();
  if (backward)
    return FusedAttentionFunction::apply(qkv, heads, scale, int64_t(drop.seed), int64_t(drop.threshold),
                                         double(drop.scale));
  if (own) return own_forward(qkv, heads, float(scale), at::Tensor(), dropping ? &drop : nullptr);
  return attention_forward(qkv, heads, float(scale), at::Tensor(), at::Tensor());
}

#endif  // VIT_HAVE_ONEDNN

}  // namespace vit
