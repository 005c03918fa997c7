// See softmax_kernels.h. Built with CPU_CAPABILITY=AVX2 or AVX512 (and the matching -m flags);
// nothing here may be called on a CPU without that instruction set.
//
// One vector at a time, with masked loads and stores for a row's last, partial vector (ATen's
// partial loads go through a zeroed stack buffer, which costs more than the row itself when rows
// are 17 long); rows of up to 4 vectors stay in registers (a masked store forwards nothing to the
// load after it).
#include "softmax_kernels.h"

#include <ATen/cpu/vec/vec.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "vec_io.h"
#include "vec_math.h"

#if !defined(CPU_CAPABILITY_AVX2) && !defined(CPU_CAPABILITY_AVX512)
#error "softmax_kernels.cpp is built per instruction set: CPU_CAPABILITY_AVX2 or CPU_CAPABILITY_AVX512"
#endif

namespace vit {
namespace CPU_CAPABILITY {

namespace {

// Rows of at most NV vectors (cols in ((NV - 1) W, NV W]), R rows at a time: each row stays in
// registers from its load to its store (nothing is written to `s`), and the R rows' reductions,
// exps and divisions are independent, so their latencies overlap.
template <int NV, int R, typename T>
inline void rows_in_registers(const float* x, int64_t cols, T* y) {
  const Vec lowest(-std::numeric_limits<float>::infinity()), zero(0.0f);
  const int64_t tail = cols - (NV - 1) * W;
  Vec v[R][NV], row_max[R], sum[R];
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < NV; ++i) v[r][i] = load(x + r * cols + i * W, i == NV - 1 ? tail : W);
    v[r][NV - 1] = keep_first(tail, lowest, v[r][NV - 1]);
    Vec m = v[r][0];
    for (int i = 1; i < NV; ++i) m = vmax(m, v[r][i]);
    row_max[r] = Vec(lanes_max(m));
  }
  for (int r = 0; r < R; ++r) {
    sum[r] = zero;
    for (int i = 0; i < NV; ++i) {
      v[r][i] = exp_nonpositive(v[r][i] - row_max[r]);  // the -inf past the row's end gives 0
      sum[r] = sum[r] + v[r][i];
    }
  }
  for (int r = 0; r < R; ++r) {
    const Vec inv(1.0f / lanes_sum(sum[r]));
    for (int i = 0; i < NV; ++i) store(y + r * cols + i * W, i == NV - 1 ? tail : W, v[r][i] * inv);
  }
}

template <int NV, typename T>
void forward_short(const float* s, int64_t rows, int64_t cols, T* p) {
  constexpr int R = NV <= 2 ? 4 : 2;
  int64_t r = 0;
  for (; r + R <= rows; r += R) rows_in_registers<NV, R>(s + r * cols, cols, p + r * cols);
  for (; r < rows; ++r) rows_in_registers<NV, 1>(s + r * cols, cols, p + r * cols);
}

// Longer rows: three passes, exp(x - max) kept in `s` between the second and the third.
template <typename T>
void forward_long(float* s, int64_t rows, int64_t cols, T* p) {
  const Vec lowest(-std::numeric_limits<float>::infinity()), zero(0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float* x = s + r * cols;
    T* y = p + r * cols;
    Vec m = lowest;
    for (int64_t c = 0; c < cols; c += W) {
      const int64_t n = std::min(W, cols - c);
      m = vmax(m, keep_first(n, lowest, load(x + c, n)));
    }
    const Vec row_max(lanes_max(m));
    Vec sum = zero;
    for (int64_t c = 0; c < cols; c += W) {
      const int64_t n = std::min(W, cols - c);
      const Vec e = keep_first(n, zero, exp_nonpositive(load(x + c, n) - row_max));
      sum = sum + e;
      store(x + c, n, e);
    }
    const Vec inv(1.0f / lanes_sum(sum));
    for (int64_t c = 0; c < cols; c += W) {
      const int64_t n = std::min(W, cols - c);
      store(y + c, n, load(x + c, n) * inv);
    }
  }
}

template <typename T>
void forward(float* s, int64_t rows, int64_t cols, T* p) {
  if (cols <= 0) return;
  switch ((cols + W - 1) / W) {
    case 1: return forward_short<1>(s, rows, cols, p);
    case 2: return forward_short<2>(s, rows, cols, p);
    case 3: return forward_short<3>(s, rows, cols, p);
    case 4: return forward_short<4>(s, rows, cols, p);
    default: return forward_long(s, rows, cols, p);
  }
}

template <typename T>
void backward(const T* p, const T* dp, int64_t rows, int64_t cols, T* ds) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* pr = p + r * cols;
    const T* dr = dp + r * cols;
    Vec dot(0.0f);
    for (int64_t c = 0; c < cols; c += W) {
      const int64_t n = std::min(W, cols - c);
      dot = at::vec::fmadd(load(pr + c, n), load(dr + c, n), dot);  // lanes past n are zero
    }
    const Vec total(lanes_sum(dot));
    for (int64_t c = 0; c < cols; c += W) {
      const int64_t n = std::min(W, cols - c);
      store(ds + r * cols + c, n, load(pr + c, n) * (load(dr + c, n) - total));
    }
  }
}

}  // namespace

void softmax_rows(float* s, int64_t rows, int64_t cols, float* p) { forward(s, rows, cols, p); }
void softmax_rows(float* s, int64_t rows, int64_t cols, c10::BFloat16* p) { forward(s, rows, cols, p); }
void softmax_backward_rows(const float* p, const float* dp, int64_t rows, int64_t cols, float* ds) {
  backward(p, dp, rows, cols, ds);
}
void softmax_backward_rows(const c10::BFloat16* p, const c10::BFloat16* dp, int64_t rows, int64_t cols,
                           c10::BFloat16* ds) {
  backward(p, dp, rows, cols, ds);
}

}  // namespace CPU_CAPABILITY
}  // namespace vit
