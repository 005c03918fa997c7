#include "onednn_linear.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <tuple>
#include <utility>

#include "column_sums.h"
#include "cpu_info.h"
#include "data_parallel.h"  // bf16_autocast_enabled
#include "tensor_rows.h"

#ifdef VIT_HAVE_ONEDNN
#include "onednn_common.h"
#endif
#ifdef VIT_HAVE_ELTWISE_KERNELS
#include "kernel_isa.h"
#include "transpose_kernels.h"
#endif

namespace vit {

#ifndef VIT_HAVE_ONEDNN

std::optional<at::Tensor> onednn_linear(const at::Tensor&, const at::Tensor&, const at::Tensor&) {
  return std::nullopt;
}
std::optional<at::Tensor> onednn_linear_gelu(const at::Tensor&, const at::Tensor&, const at::Tensor&) {
  return std::nullopt;
}
bool bf16_gemms_on_float_units() { return false; }

#else

namespace {

using namespace vit::onednn;

// (rows, cols) matrix of `type`, row-major, or read transposed.
memory::desc matrix(int64_t rows, int64_t cols, dt type) { return memory::desc({rows, cols}, type, {cols, 1}); }
memory::desc transposed(int64_t rows, int64_t cols, dt type) { return memory::desc({rows, cols}, type, {1, rows}); }

bool enabled() {
  static const bool on = switched_on("VIT_ONEDNN_LINEAR");
  return on;
}

enum class Kind {
  Forward, Forward_bias, Forward_gelu, Forward_bias_gelu, GradInput, GradWeight, GradWeight_accumulate,
  GradWeight_rows, GradWeight_rows_accumulate  // dy^T given as rows (a transposed copy)
};

// The matmul for (M rows of x, K inputs, N outputs) in `type`, per thread; nullptr when oneDNN
// cannot make it (bf16 without AVX-512).
const dnnl::matmul* kernel(Kind kind, int64_t M, int64_t K, int64_t N, dt type) {
  thread_local std::map<std::tuple<Kind, int64_t, int64_t, int64_t, dt, int>, std::optional<dnnl::matmul>> cache;
  const auto key = std::make_tuple(kind, M, K, N, type, kernel_threads());
  auto it = cache.find(key);
  if (it == cache.end()) {
    std::optional<dnnl::matmul> made;
    try {
      switch (kind) {
        case Kind::Forward:       // y (M, N) = x (M, K) W^T (K, N) [+ b] [then GELU]
        case Kind::Forward_bias:
        case Kind::Forward_gelu:
        case Kind::Forward_bias_gelu: {
          const auto bias = matrix(1, N, type);
          const bool with_bias = kind == Kind::Forward_bias || kind == Kind::Forward_bias_gelu;
          const bool gelu = kind == Kind::Forward_gelu || kind == Kind::Forward_bias_gelu;
          made = make_matmul(matrix(M, K, type), transposed(K, N, type), matrix(M, N, type), 1.0f,
                             with_bias ? &bias : nullptr, gelu);
          break;
        }
        case Kind::GradInput:     // dx (M, K) = dy (M, N) W (N, K)
          made = make_matmul(matrix(M, N, type), matrix(N, K, type), matrix(M, K, type));
          break;
        case Kind::GradWeight:    // dW (N, K) = dy^T (N, M) x (M, K)
        case Kind::GradWeight_accumulate:  // dW += dy^T x
          made = make_matmul(transposed(N, M, type), matrix(M, K, type), matrix(N, K, type), 1.0f, nullptr,
                             false, kind == Kind::GradWeight_accumulate);
          break;
        case Kind::GradWeight_rows:  // dW (N, K) = dyT (N, M) x (M, K), dyT a row-major copy
        case Kind::GradWeight_rows_accumulate:
          made = make_matmul(matrix(N, M, type), matrix(M, K, type), matrix(N, K, type), 1.0f, nullptr, false,
                             kind == Kind::GradWeight_rows_accumulate);
          break;
      }
    } catch (const dnnl::error&) {
    }
    it = cache.emplace(key, std::move(made)).first;
  }
  return it->second ? &*it->second : nullptr;
}

// bf16 GEMMs on the float units (Bf16Support::gemm_on_float_units, cpu_info.h) ---------------
// A bf16 layer's GEMMs as float GEMMs on its bf16 values, a block of rows at a time: the block
// widened to float (exact: a bf16 value is a float whose low 16 bits are zero), oneDNN's float
// matmul, the result rounded to bf16 once, as oneDNN's bf16 matmul rounds its float accumulators.
// The operands and the result are the bf16 tensors the bf16 path takes and gives; only the
// products inside run on the float FMA units. Widening and rounding are oneDNN reorders (round to
// nearest even, NaN stays NaN).

bool on_float_units() {
  static const bool on = [] {
    const char* v = std::getenv("VIT_BF16_GEMM");
    if (v && std::strcmp(v, "float") == 0) return true;
    if (v && std::strcmp(v, "bf16") == 0) return false;
    if (v && *v)
      std::cerr << "vit: VIT_BF16_GEMM=" << v << " is neither \"float\" nor \"bf16\"; choosing for this CPU ("
                << bf16_support().describe() << ")\n";
    return bf16_support().gemm_on_float_units();
  }();
  return on;
}

bool float_units_for(dt type) { return type == dt::bf16 && on_float_units(); }

// Rows per block: ~512 KiB of floats over 2K + N a row, a multiple of 16 (whole 16 x 16 blocks for
// the transposes). The widened copies (K + N floats a row forward; 2K + 2N backward with dy's
// transposed copy, up to ~0.75 MiB) stay in L2 from widening to rounding. On an Intel Xeon model
// 207 blocks of 512 rows beat 256 and 1,024-2,048 by 9-44% on keras-cifar's shapes.
int64_t block_rows(int64_t M, int64_t K, int64_t N) {
  constexpr int64_t kBlockFloats = int64_t(1) << 17;
  return std::min(M, std::clamp<int64_t>(kBlockFloats / (2 * K + N), 128, 1024) / 16 * 16);
}

// Whether our register-transpose kernels (transpose_kernels.h) run here: built, and not switched
// off with the element-wise family (VIT_FUSED_ELTWISE=0). Without them dW reads dy^T through
// strides.
bool have_transposes() {
#ifdef VIT_HAVE_ELTWISE_KERNELS
  return eltwise_kernel_isa() != KernelIsa::None;
#else
  return false;
#endif
}

// dst (cols, rows) = src (rows, cols)^T as float; only where have_transposes().
void transpose_to_float(const at::BFloat16* src, int64_t rows, int64_t cols, float* dst) {
#ifdef VIT_HAVE_ELTWISE_KERNELS
  VIT_KERNEL_CALL(eltwise_kernel_isa(), transpose_to_float, src, rows, cols, dst);
#else
  (void)src, (void)rows, (void)cols, (void)dst;
#endif
}

// The kinds the weight gradient runs as, in blocks on the float units: its first block, the rest.
Kind weight_grad_kind(bool first) {
  if (have_transposes()) return first ? Kind::GradWeight_rows : Kind::GradWeight_rows_accumulate;
  return first ? Kind::GradWeight : Kind::GradWeight_accumulate;
}

// `rows` x `cols` values, row-major and contiguous, from `from` to `to` (bf16 <-> f32): our
// kernels where they run (transpose_kernels.h says why), else a oneDNN reorder, per thread as kernel().
void convert(const void* src, dt from, void* dst, dt to, int64_t rows, int64_t cols) {
#ifdef VIT_HAVE_ELTWISE_KERNELS
  if (have_transposes()) {
    const auto isa = eltwise_kernel_isa();
    constexpr int64_t kGrain = int64_t(1) << 15;  // values per task: 64-128 KiB read
    at::parallel_for(0, rows * cols, kGrain, [&](int64_t lo, int64_t hi) {
      if (from == dt::bf16)
        VIT_KERNEL_CALL(isa, widen_to_float, static_cast<const at::BFloat16*>(src) + lo, hi - lo,
                        static_cast<float*>(dst) + lo);
      else
        VIT_KERNEL_CALL(isa, round_to_bf16, static_cast<const float*>(src) + lo, hi - lo,
                        static_cast<at::BFloat16*>(dst) + lo);
    });
    return;
  }
#endif
  thread_local std::map<std::tuple<int64_t, int64_t, dt, int>, dnnl::reorder> cache;
  const auto key = std::make_tuple(rows, cols, to, kernel_threads());
  auto it = cache.find(key);
  if (it == cache.end()) {
    dnnl::reorder::primitive_desc pd(cpu_engine(), matrix(rows, cols, from), cpu_engine(), matrix(rows, cols, to),
                                     user_scratchpad());
    it = cache.emplace(key, dnnl::reorder(pd)).first;
  }
  run(it->second, {{DNNL_ARG_FROM, mem(matrix(rows, cols, from), src)}, {DNNL_ARG_TO, mem(matrix(rows, cols, to), dst)}});
}

// A contiguous bf16 tensor (a weight or a bias) widened to float.
at::Tensor widened(const at::Tensor& t) {
  auto f = at::empty(t.sizes(), t.options().dtype(at::kFloat));
  const int64_t cols = t.size(-1);
  convert(t.data_ptr(), dt::bf16, f.data_ptr(), dt::f32, t.numel() / cols, cols);
  return f;
}

const dnnl::matmul& float_kernel(Kind kind, int64_t m, int64_t K, int64_t N) {
  const auto* mm = kernel(kind, m, K, N, dt::f32);
  if (!mm) throw std::runtime_error("oneDNN linear: no float matmul on this CPU; run with VIT_ONEDNN_LINEAR=0");
  return *mm;
}

// The layers take and give tensors of any leading shape as their rows (tensor_rows.h).
// The shape of the layer's output for x (..., K): (..., N).
std::vector<int64_t> output_sizes(const at::Tensor& x, int64_t N) {
  auto sizes = x.sizes().vec();
  sizes.back() = N;
  return sizes;
}

// y (..., N) = x (..., K) W^T [+ b] [then GELU], all bf16, on the float units.
at::Tensor forward_on_float_units(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, Kind kind) {
  const int64_t M = rows_of(x), K = x.size(-1), N = w.size(0), rows = block_rows(M, K, N);
  const auto wf = widened(w), bf = b.defined() ? widened(b) : at::Tensor();
  auto y = at::empty(output_sizes(x, N), x.options());
  auto xf = at::empty({rows, K}, wf.options()), yf = at::empty({rows, N}, wf.options());
  const auto* xp = static_cast<const at::BFloat16*>(x.data_ptr());
  auto* yp = static_cast<at::BFloat16*>(y.data_ptr());
  for (int64_t r = 0; r < M; r += rows) {
    const int64_t m = std::min(rows, M - r);
    convert(xp + r * K, dt::bf16, xf.data_ptr(), dt::f32, m, K);
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, mem(matrix(m, K, dt::f32), xf.data_ptr())},
                                            {DNNL_ARG_WEIGHTS, mem(transposed(K, N, dt::f32), wf.data_ptr())},
                                            {DNNL_ARG_DST, mem(matrix(m, N, dt::f32), yf.data_ptr())}};
    if (bf.defined()) args.emplace(DNNL_ARG_BIAS, mem(matrix(1, N, dt::f32), bf.data_ptr()));
    run(float_kernel(kind, m, K, N), std::move(args));
    convert(yf.data_ptr(), dt::f32, yp + r * N, dt::bf16, m, N);
  }
  thread_stream().wait();
  return y;
}

// dx = dy W and dW = dy^T x (each when its pointer is given), all bf16, on the float units: dy's
// block widened for dx and, transposed, for dW (a plain product runs ~1.5x faster than one that
// reads dy^T through strides, transpose_kernels.h), dW summed over the blocks in float and
// rounded once.
void backward_on_float_units(const at::Tensor& x, const at::Tensor& w, const at::Tensor& dy, at::Tensor* dx,
                             at::Tensor* dw) {
  const int64_t M = rows_of(x), K = x.size(-1), N = w.size(0), rows = block_rows(M, K, N);
  const auto f32 = x.options().dtype(at::kFloat);
  const auto wf = dx ? widened(w) : at::Tensor();
  const auto dwf = dw ? at::empty({N, K}, f32) : at::Tensor();
  const bool transposes = dw && have_transposes();
  const bool widen_dy = dx || !transposes;  // dy's block as rows: for dx, or for dW read through strides
  auto dyf = widen_dy ? at::empty({rows, N}, f32) : at::Tensor(), xf = at::empty({rows, K}, f32);
  auto dyt = transposes ? at::empty({N, rows}, f32) : at::Tensor();
  if (dx) *dx = at::empty(x.sizes(), x.options());
  const auto* dyp = static_cast<const at::BFloat16*>(dy.data_ptr());
  const auto* xp = static_cast<const at::BFloat16*>(x.data_ptr());
  for (int64_t r = 0; r < M; r += rows) {
    const int64_t m = std::min(rows, M - r);
    if (widen_dy) convert(dyp + r * N, dt::bf16, dyf.data_ptr(), dt::f32, m, N);
    if (dx) {  // xf holds this block's dx, then (below) its x
      run(float_kernel(Kind::GradInput, m, K, N), {{DNNL_ARG_SRC, mem(matrix(m, N, dt::f32), dyf.data_ptr())},
                                                   {DNNL_ARG_WEIGHTS, mem(matrix(N, K, dt::f32), wf.data_ptr())},
                                                   {DNNL_ARG_DST, mem(matrix(m, K, dt::f32), xf.data_ptr())}});
      convert(xf.data_ptr(), dt::f32, static_cast<at::BFloat16*>(dx->data_ptr()) + r * K, dt::bf16, m, K);
    }
    if (dw) {
      convert(xp + r * K, dt::bf16, xf.data_ptr(), dt::f32, m, K);
      if (transposes) transpose_to_float(dyp + r * N, m, N, dyt.data_ptr<float>());
      const auto dy_t = transposes ? mem(matrix(N, m, dt::f32), dyt.data_ptr()) : mem(transposed(N, m, dt::f32), dyf.data_ptr());
      run(float_kernel(weight_grad_kind(r == 0), m, K, N),
          {{DNNL_ARG_SRC, dy_t},
           {DNNL_ARG_WEIGHTS, mem(matrix(m, K, dt::f32), xf.data_ptr())},
           {DNNL_ARG_DST, mem(matrix(N, K, dt::f32), dwf.data_ptr())}});
    }
  }
  if (dw) {
    *dw = at::empty({N, K}, w.options());
    convert(dwf.data_ptr(), dt::f32, dw->data_ptr(), dt::bf16, N, K);
  }
  thread_stream().wait();
}

// Whether the matmul(s) of `kinds` exist here for (M, K, N) in `type`, on the units it runs on
// (on the float units GradWeight stands for the block kinds weight_grad_kind() gives).
bool available(std::initializer_list<Kind> kinds, int64_t M, int64_t K, int64_t N, dt type) {
  for (const Kind kind : kinds) {
    if (!float_units_for(type)) {
      if (!kernel(kind, M, K, N, type)) return false;
      continue;
    }
    const int64_t rows = block_rows(M, K, N);
    const bool grad_weight = kind == Kind::GradWeight;
    if (!kernel(grad_weight ? weight_grad_kind(true) : kind, rows, K, N, dt::f32) ||
        (grad_weight && !kernel(weight_grad_kind(false), rows, K, N, dt::f32)))
      return false;
  }
  return true;
}

// y (..., N) = x (..., K) W^T [+ b] [then GELU]; x contiguous.
at::Tensor forward_rows(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, Kind kind) {
  const int64_t M = rows_of(x), K = x.size(-1), N = w.size(0);
  const dt type = type_of(x);
  if (float_units_for(type)) return forward_on_float_units(x, w, b, kind);
  const auto* mm = kernel(kind, M, K, N, type);
  if (!mm) throw std::runtime_error("oneDNN linear: no forward kernel on this thread; run with VIT_ONEDNN_LINEAR=0");
  auto y = at::empty(output_sizes(x, N), x.options());
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, mem(matrix(M, K, type), x.data_ptr())},
                                          {DNNL_ARG_WEIGHTS, mem(transposed(K, N, type), w.data_ptr())},
                                          {DNNL_ARG_DST, mem(matrix(M, N, type), y.data_ptr())}};
  if (b.defined()) args.emplace(DNNL_ARG_BIAS, mem(matrix(1, N, type), b.data_ptr()));
  run(*mm, std::move(args));
  thread_stream().wait();
  return y;
}

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

struct LinearFunction : torch::autograd::Function<LinearFunction> {
  // x2: (..., K) contiguous; b: the bias, or an empty tensor for none (LibTorch 1.13's apply()
  // cannot take an undefined tensor; the empty one never needs a gradient, so needs_input_grad(2)
  // says whether db is wanted); the kernels were checked to exist before apply().
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x2, const at::Tensor& w,
                            const at::Tensor& b) {
    const bool has_bias = b.numel() > 0;
    ctx->save_for_backward({x2, w});
    return forward_rows(x2, w, has_bias ? b : at::Tensor(), has_bias ? Kind::Forward_bias : Kind::Forward);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1];
    const int64_t M = rows_of(x), K = x.size(-1), N = w.size(0);
    const dt type = type_of(x);
    const auto dy = as_type(grads[0], x.scalar_type()).contiguous();
    const bool want_db = ctx->needs_input_grad(2);
    at::Tensor dx, dw, db;
    if (float_units_for(type)) {
      backward_on_float_units(x, w, dy, ctx->needs_input_grad(0) ? &dx : nullptr, ctx->needs_input_grad(1) ? &dw : nullptr);
      if (want_db) db = column_sums(dy.view({M, N}));
      return {dx, dw, db};
    }
    const auto* gi = kernel(Kind::GradInput, M, K, N, type);
    const auto* gw = kernel(Kind::GradWeight, M, K, N, type);
    if (!gi || !gw) throw std::runtime_error("oneDNN linear: no backward kernel on this thread; run with VIT_ONEDNN_LINEAR=0");
    if (ctx->needs_input_grad(0)) {
      dx = at::empty(x.sizes(), x.options());
      run(*gi, {{DNNL_ARG_SRC, mem(matrix(M, N, type), dy.data_ptr())},
                {DNNL_ARG_WEIGHTS, mem(matrix(N, K, type), w.data_ptr())},
                {DNNL_ARG_DST, mem(matrix(M, K, type), dx.data_ptr())}});
    }
    if (ctx->needs_input_grad(1)) {
      dw = at::empty({N, K}, w.options());
      run(*gw, {{DNNL_ARG_SRC, mem(transposed(N, M, type), dy.data_ptr())},
                {DNNL_ARG_WEIGHTS, mem(matrix(M, K, type), x.data_ptr())},
                {DNNL_ARG_DST, mem(matrix(N, K, type), dw.data_ptr())}});
    }
    thread_stream().wait();
    if (want_db) db = column_sums(dy.view({M, N}));
    return {dx, dw, db};
  }
};

// The shapes of a linear layer oneDNN covers here: M rows of x, K inputs, N outputs; nullopt when
// the layer is not covered (see onednn_linear.h).
struct Dims {
  int64_t M, K, N;
};
std::optional<Dims> covered(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const auto st = x.scalar_type();
  if (x.dim() < 2 || weight.dim() != 2 || !x.device().is_cpu() ||
      !weight.device().is_cpu() || (st != at::kFloat && st != at::kBFloat16) || weight.scalar_type() != st)
    return std::nullopt;
  if (bias.defined() && (bias.scalar_type() != st || !bias.device().is_cpu() ||
                         bias.dim() != 1 || bias.size(0) != weight.size(0)))
    return std::nullopt;
  const int64_t K = x.size(-1), N = weight.size(0), M = rows_of(x);
  if (weight.size(1) != K || M == 0 || K == 0 || N == 0) return std::nullopt;
  return Dims{M, K, N};
}

// What a linear layer computes on: the tensors as given, or under bf16 autocast what LibTorch's
// autocast hands its linear (all bf16, float weights cast once per autocast scope through its
// cache); nullopt for tensors autocast would not cast (other types or devices).
struct Operands {
  at::Tensor x, weight, bias;
};
std::optional<Operands> operands(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!bf16_autocast_enabled(at::kCPU)) return Operands{x, weight, bias};
  for (const auto* t : {&x, &weight, &bias})
    if (t->defined() && (!t->device().is_cpu() || (t->scalar_type() != at::kFloat && t->scalar_type() != at::kBFloat16)))
      return std::nullopt;
  auto cast = [](const at::Tensor& t) {
    return t.defined() ? at::autocast::cached_cast(at::kBFloat16, t, c10::DeviceType::CPU) : t;
  };
  return Operands{cast(x), cast(weight), cast(bias)};
}

bool wants_grad(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return at::GradMode::is_enabled() &&
         (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()));
}

// A layer's operands (cast as autocast would) and shape, when oneDNN covers it.
struct Layer {
  Operands ops;
  Dims dims;
};
std::optional<Layer> layer_of(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!enabled()) return std::nullopt;
  auto ops = operands(x, weight, bias);
  if (!ops) return std::nullopt;
  const auto dims = covered(ops->x, ops->weight, ops->bias);
  if (!dims) return std::nullopt;
  return Layer{std::move(*ops), *dims};
}

}  // namespace

std::optional<at::Tensor> onednn_linear(const at::Tensor& x_in, const at::Tensor& weight_in,
                                        const at::Tensor& bias_in) {
  const auto layer = layer_of(x_in, weight_in, bias_in);
  if (!layer) return std::nullopt;
  const auto &x = layer->ops.x, &weight = layer->ops.weight, &bias = layer->ops.bias;
  const auto [M, K, N] = layer->dims;
  const dt type = type_of(x);
  const bool grad = wants_grad(x, weight, bias);
  const auto kind = bias.defined() ? Kind::Forward_bias : Kind::Forward;
  if (!available({kind}, M, K, N, type)) return std::nullopt;
  if (grad && !available({Kind::GradInput, Kind::GradWeight}, M, K, N, type))
    return std::nullopt;
  const auto x2 = x.contiguous();
  const auto w = weight.contiguous();
  const auto b = bias.defined() ? bias.contiguous() : at::Tensor();
  return grad ? LinearFunction::apply(x2, w, b.defined() ? b : at::empty({0}, x.options()))
              : forward_rows(x2, w, b, kind);
}

std::optional<at::Tensor> onednn_linear_gelu(const at::Tensor& x_in, const at::Tensor& weight_in,
                                             const at::Tensor& bias_in) {
  const auto layer = layer_of(x_in, weight_in, bias_in);
  if (!layer) return std::nullopt;
  const auto &x = layer->ops.x, &weight = layer->ops.weight, &bias = layer->ops.bias;
  if (wants_grad(x, weight, bias)) return std::nullopt;
  const auto [M, K, N] = layer->dims;
  const auto kind = bias.defined() ? Kind::Forward_bias_gelu : Kind::Forward_gelu;
  if (!available({kind}, M, K, N, type_of(x))) return std::nullopt;
  const auto b = bias.defined() ? bias.contiguous() : at::Tensor();
  return forward_rows(x.contiguous(), weight.contiguous(), b, kind);
}

bool bf16_gemms_on_float_units() { return enabled() && on_float_units(); }

#endif  // VIT_HAVE_ONEDNN

}  // namespace vit
