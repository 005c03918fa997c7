// Fused attention's row softmax kernels (model/softmax_kernels.h), both instruction sets the CPU
// runs, against float64: forward into float and bfloat16, backward in both, row lengths around
// the vector width and the in-register limit (4 vectors), row counts that leave a remainder of
// the 4-row groups, extreme scores, NaN, and nothing written past the rows. The attention layer
// that uses them is tested against its definition in test_onednn_kernels.cpp.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "fused_attention.h"
#include "softmax_kernels.h"

namespace {

// Row lengths: 1, under one AVX2 vector, around one AVX-512 vector (17: fmnist-small's tokens),
// two, three and four of them (the last kept in registers) and past that (the three-pass loop;
// 145 and 197: keras-cifar's and ViT-B/16's tokens).
const std::vector<int64_t> kCols = {1, 5, 8, 15, 16, 17, 31, 32, 33, 48, 49, 64, 65, 145, 197};
constexpr int64_t kRows = 11;  // two groups of 4 rows and 3 left over

struct KernelSet {
  std::string name;
  std::function<void(float*, int64_t, int64_t, float*)> forward;
  std::function<void(float*, int64_t, int64_t, c10::BFloat16*)> forward_bf16;
  std::function<void(const float*, const float*, int64_t, int64_t, float*)> backward;
  std::function<void(const c10::BFloat16*, const c10::BFloat16*, int64_t, int64_t, c10::BFloat16*)> backward_bf16;
};

// One instruction set's kernels (vit::AVX512 or vit::AVX2) as a KernelSet.
#define VIT_KERNEL_SET(label, ns)                                                                 \
  KernelSet{(label),                                                                              \
            [](float* s, int64_t r, int64_t c, float* p) { vit::ns::softmax_rows(s, r, c, p); },    \
            [](float* s, int64_t r, int64_t c, c10::BFloat16* p) { vit::ns::softmax_rows(s, r, c, p); }, \
            [](const float* p, const float* d, int64_t r, int64_t c, float* o) {                  \
              vit::ns::softmax_backward_rows(p, d, r, c, o);                                      \
            },                                                                                    \
            [](const c10::BFloat16* p, const c10::BFloat16* d, int64_t r, int64_t c,              \
               c10::BFloat16* o) { vit::ns::softmax_backward_rows(p, d, r, c, o); }}

// The sets this CPU can run (the kernels are built on x86-64 only).
std::vector<KernelSet> kernel_sets() {
  std::vector<KernelSet> sets;
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    sets.push_back(VIT_KERNEL_SET("avx512", AVX512));
  if (avx2) sets.push_back(VIT_KERNEL_SET("avx2", AVX2));
  return sets;
}

// Runs the float forward kernel on a copy of `scores` (rows, cols) into a buffer with guard
// elements after the rows, and checks the guards.
torch::Tensor forward_float(const KernelSet& k, const torch::Tensor& scores) {
  const int64_t rows = scores.size(0), cols = scores.size(1), guard = 40;
  auto s = scores.clone();
  auto out = torch::full({rows * cols + guard}, 7.0f);
  k.forward(s.data_ptr<float>(), rows, cols, out.data_ptr<float>());
  EXPECT_TRUE(torch::all(out.slice(0, rows * cols) == 7.0f).item<bool>()) << "wrote past the rows";
  return out.slice(0, 0, rows * cols).view({rows, cols});
}

torch::Tensor forward_bf16(const KernelSet& k, const torch::Tensor& scores) {
  const int64_t rows = scores.size(0), cols = scores.size(1), guard = 40;
  auto s = scores.clone();
  auto out = torch::full({rows * cols + guard}, 7.0f).to(torch::kBFloat16);
  k.forward_bf16(s.data_ptr<float>(), rows, cols, out.data_ptr<c10::BFloat16>());
  EXPECT_TRUE(torch::all(out.slice(0, rows * cols) == 7.0f).item<bool>()) << "wrote past the rows";
  return out.slice(0, 0, rows * cols).view({rows, cols});
}

}  // namespace

TEST(SoftmaxKernels, AttentionUsesThemHere) {
  // The default x86-64 build runs fused attention's softmax on these kernels (oneDNN's only with
  // VIT_FUSED_ELTWISE=0, CTest's second run of test_onednn_kernels).
  ASSERT_FALSE(kernel_sets().empty()) << "no AVX2 on this CPU";
  const std::string used = vit::fused_attention_softmax();
  const char* cap = std::getenv("ATEN_CPU_CAPABILITY");
  EXPECT_EQ(used, cap && std::string(cap) == "avx2" ? "avx2" : kernel_sets().front().name);
}

TEST(SoftmaxKernels, ForwardMatchesFloat64) {
  torch::manual_seed(5);
  for (const auto& k : kernel_sets())
    for (const int64_t cols : kCols) {
      SCOPED_TRACE(k.name + " cols " + std::to_string(cols));
      // Scores spread over ~60 (probabilities down to ~e^-60), and shifted far from 0: the
      // kernel must subtract the row's maximum.
      const auto scores = torch::randn({kRows, cols}) * 10.0 + 1000.0;
      const auto got = forward_float(k, scores);
      const auto want = torch::softmax(scores.to(torch::kDouble), 1);
      // exp within 2 ulp, the row sum's rounding (at most ~16 terms per lane, then the lanes),
      // one division and one product: 4e-6 relative covers it with room.
      const auto err = (got.to(torch::kDouble) - want).abs();
      EXPECT_TRUE((err <= want * 4e-6 + 1e-37).all().item<bool>())
          << "max relative error " << (err / want).max().item<double>();
      // A wrong exp (e.g. 2^n off by one) would still sum to 1 after the division, so the
      // relative check above is the one that matters; this one catches lost lanes.
      EXPECT_LT((got.to(torch::kDouble).sum(1) - 1.0).abs().max().item<double>(), 1e-5);
    }
}

TEST(SoftmaxKernels, Bfloat16OutputIsTheFloatResultRoundedToNearestEven) {
  torch::manual_seed(6);
  for (const auto& k : kernel_sets())
    for (const int64_t cols : kCols) {
      SCOPED_TRACE(k.name + " cols " + std::to_string(cols));
      // ~2^18 values per length: the float results whose low 16 bits are 0x7fff, 0x8000 or
      // 0x8001 (where a wrong rounding bias shows) occur a few times each.
      const auto scores = torch::randn({(1 << 18) / cols + kRows, cols}) * 4.0;
      const auto f = forward_float(k, scores);
      const auto b = forward_bf16(k, scores);
      EXPECT_TRUE(torch::equal(b, f.to(torch::kBFloat16)))  // c10's rounding: nearest, ties to even
          << "max difference " << (b.to(torch::kFloat) - f.to(torch::kBFloat16).to(torch::kFloat)).abs().max();
    }
}

TEST(SoftmaxKernels, ExtremeScoresAndNaN) {
  for (const auto& k : kernel_sets()) {
    SCOPED_TRACE(k.name);
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    // Row 0: one score 1e30 above the rest: probability 1 and exact zeros. Row 1: all equal and
    // huge: uniform. Row 2: a score of -inf (a masked position): probability 0, the rest shared.
    // Row 3: a NaN: the whole row NaN, as the definition gives.
    auto scores = torch::zeros({4, 17});
    scores[0][3] = 1e30f;
    scores[1].fill_(3e38f);
    scores[2][5] = -inf;
    scores[3][16] = nan;
    const auto p = forward_float(k, scores);
    EXPECT_EQ(p[0][3].item<float>(), 1.0f);
    EXPECT_EQ(p[0].sum().item<float>(), 1.0f);
    EXPECT_TRUE(torch::allclose(p[1], torch::full({17}, 1.0f / 17)));
    EXPECT_EQ(p[2][5].item<float>(), 0.0f);
    EXPECT_NEAR(p[2][0].item<float>(), 1.0f / 16, 1e-7);
    EXPECT_TRUE(torch::all(torch::isnan(p[3])).item<bool>()) << p[3];
  }
}

TEST(SoftmaxKernels, BackwardMatchesFloat64) {
  torch::manual_seed(7);
  for (const auto& k : kernel_sets())
    for (const int64_t cols : kCols) {
      SCOPED_TRACE(k.name + " cols " + std::to_string(cols));
      const auto p = torch::softmax(torch::randn({kRows, cols}) * 3.0, 1);
      const auto dp = torch::randn({kRows, cols});
      const auto pd = p.to(torch::kDouble), dpd = dp.to(torch::kDouble);
      const auto want = pd * (dpd - (pd * dpd).sum(1, true));
      // Scale of each row's terms: a float error bound relative to it.
      const auto scale = pd * (dpd.abs() + (pd * dpd).abs().sum(1, true));
      auto got = torch::full({kRows * cols + 40}, 7.0f);
      k.backward(p.data_ptr<float>(), dp.data_ptr<float>(), kRows, cols, got.data_ptr<float>());
      EXPECT_TRUE(torch::all(got.slice(0, kRows * cols) == 7.0f).item<bool>()) << "wrote past the rows";
      const auto err = (got.slice(0, 0, kRows * cols).view({kRows, cols}).to(torch::kDouble) - want).abs();
      EXPECT_TRUE((err <= scale * 2e-6 + 1e-30).all().item<bool>())
          << "max error / scale " << (err / (scale + 1e-30)).max().item<double>();
      // bfloat16 in and out: float arithmetic on the bf16 inputs, rounded once.
      const auto pb = p.to(torch::kBFloat16), dpb = dp.to(torch::kBFloat16);
      const auto pbd = pb.to(torch::kDouble), dpbd = dpb.to(torch::kDouble);
      const auto want_b = pbd * (dpbd - (pbd * dpbd).sum(1, true));
      auto got_b = torch::empty({kRows, cols}, torch::kBFloat16);
      k.backward_bf16(pb.data_ptr<c10::BFloat16>(), dpb.data_ptr<c10::BFloat16>(), kRows, cols,
                      got_b.data_ptr<c10::BFloat16>());
      const auto scale_b = pbd * (dpbd.abs() + (pbd * dpbd).abs().sum(1, true));
      const auto err_b = (got_b.to(torch::kDouble) - want_b).abs();
      EXPECT_TRUE((err_b <= want_b.abs() * (1.0 / 256) + scale_b * 2e-6 + 1e-30).all().item<bool>())
          << "max bf16 error " << err_b.max().item<double>();
    }
}
