// See column_sum_kernels.h. Built with CPU_CAPABILITY=AVX2 or AVX512 (and the matching -m flags);
// nothing here may be called on a CPU without that instruction set.
#include "column_sum_kernels.h"

#include <algorithm>

#include "vec_io.h"

namespace vit {
namespace CPU_CAPABILITY {

namespace {

// Registers of sums: 16 vectors (256 floats) with AVX-512's 32 registers, 8 (64 floats) with
// AVX2's 16, so a block's sums stay in registers while the rows stream past.
constexpr int kMaxPairs = W == 16 ? 8 : 4;
static_assert(kColumnSumBlock % (2 * W * kMaxPairs) == 0, "blocks of the header's size split into register blocks");

// Columns [cb, cb + width) of every row, width <= 2W x P, into out[cb ...].
template <int P, typename T>
void sum_block(const T* x, int64_t rows, int64_t cols, int64_t cb, int64_t width, float* out) {
  Vec acc[2 * P];
  for (auto& a : acc) a = Vec(0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * cols + cb;
    for (int p = 0; p < P; ++p) {
      Vec a, b;
      load(row + p * 2 * W, std::min<int64_t>(2 * W, width - p * 2 * W), a, b);
      acc[2 * p] = acc[2 * p] + a;
      acc[2 * p + 1] = acc[2 * p + 1] + b;
    }
  }
  for (int p = 0; p < P; ++p)
    store(out + cb + p * 2 * W, std::min<int64_t>(2 * W, width - p * 2 * W), acc[2 * p], acc[2 * p + 1]);
}

template <typename T>
void sums(const T* x, int64_t rows, int64_t cols, int64_t c0, int64_t c1, float* out) {
  constexpr int64_t span = 2 * W * kMaxPairs;
  for (int64_t cb = c0; cb < c1; cb += span) {
    const int64_t width = std::min(span, c1 - cb);
    switch ((width + 2 * W - 1) / (2 * W)) {  // register pairs this block needs
      case 1: sum_block<1>(x, rows, cols, cb, width, out); break;
      case 2: sum_block<2>(x, rows, cols, cb, width, out); break;
      case 3: sum_block<3>(x, rows, cols, cb, width, out); break;
#if defined(CPU_CAPABILITY_AVX512)
      case 4: sum_block<4>(x, rows, cols, cb, width, out); break;
      case 5: sum_block<5>(x, rows, cols, cb, width, out); break;
      case 6: sum_block<6>(x, rows, cols, cb, width, out); break;
      case 7: sum_block<7>(x, rows, cols, cb, width, out); break;
#endif
      default: sum_block<kMaxPairs>(x, rows, cols, cb, width, out); break;
    }
  }
}

}  // namespace

void column_sums(const float* x, int64_t rows, int64_t cols, int64_t c0, int64_t c1, float* out) {
  sums(x, rows, cols, c0, c1, out);
}
void column_sums(const c10::BFloat16* x, int64_t rows, int64_t cols, int64_t c0, int64_t c1, float* out) {
  sums(x, rows, cols, c0, c1, out);
}

}  // namespace CPU_CAPABILITY
}  // namespace vit
