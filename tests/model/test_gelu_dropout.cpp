// The fused GELU/dropout kernels (model/gelu_dropout.h) against the same expression in float64:
// values and gradients, float and bfloat16, with and without a residual; the mask is exactly
// dropout_mask()'s for the same seed; tails and chunk boundaries; non-finite inputs; thread-count
// independence; and a transformer block in training against the block written out with ATen ops.
// CTest runs this suite twice: as is (AVX-512 where the CPU has it) and with
// ATEN_CPU_CAPABILITY=avx2, so both kernel sets are checked on an AVX-512 machine.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "dropout.h"
#include "gelu_dropout.h"
#include "vit.h"

namespace {

// Sizes: one element; less than a vector; a block and a few; past one mask chunk (16,384
// elements) with an odd remainder, so a draw's second half falls off the end.
const std::vector<int64_t> kSizes = {1, 13, 1024 + 37, 3 * 16384 + 77};

bool fused_available() { return vit::gelu_dropout(torch::zeros({1}), true, 0.0).has_value(); }

#define SKIP_WITHOUT_KERNELS()                                                                  \
  if (!fused_available()) GTEST_SKIP() << "kernels off here: " << vit::gelu_dropout_isa()

torch::Tensor gelu64(const torch::Tensor& x) {
  const auto d = x.to(torch::kDouble);
  return 0.5 * d * (1.0 + torch::erf(d / std::sqrt(2.0)));
}

// The mask dropout_mask() makes from the seed a RandomStreamScope(stream) hands out first.
torch::Tensor mask_of(uint64_t stream, at::IntArrayRef sizes, double p) {
  vit::RandomStreamScope scope(stream);
  return vit::dropout_mask(sizes, p, torch::kFloat);
}

// Inputs spread over GELU's interesting range (the tails included), exactly representable in
// the tensor's type so the float64 reference sees the same numbers.
torch::Tensor inputs(int64_t n, torch::ScalarType type) {
  return (torch::randn({n}) * 3.0).to(type);
}

// |got - want| <= rel * |want| + abs_tol(x) elementwise; returns the worst excess (<= 0: passes).
double excess(const torch::Tensor& got, const torch::Tensor& want, double rel, const torch::Tensor& abs_tol) {
  const auto e = (got.to(torch::kDouble) - want).abs() - rel * want.abs() - abs_tol;
  return e.max().item<double>();
}

TEST(GeluDropout, KernelSetFollowsTheCpuAndAtenCpuCapability) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const char* cap = std::getenv("ATEN_CPU_CAPABILITY");
  const std::string isa = vit::gelu_dropout_isa();
  if (const char* off = std::getenv("VIT_FUSED_ELTWISE"); off && std::strcmp(off, "0") == 0)
    EXPECT_EQ(isa, "off (VIT_FUSED_ELTWISE=0)");
  else if (cap && std::strcmp(cap, "avx2") == 0)
    EXPECT_EQ(isa, avx2 ? "avx2" : isa);
  else if (avx512)
    EXPECT_EQ(isa, "avx512");
  else if (avx2)
    EXPECT_EQ(isa, "avx2");
  std::printf("kernels: %s\n", isa.c_str());
}

TEST(GeluDropout, GeluFollowsFloat64) {
  SKIP_WITHOUT_KERNELS();
  torch::manual_seed(1);
  for (const auto type : {torch::kFloat, torch::kBFloat16}) {
    for (const int64_t n : kSizes) {
      const auto x = inputs(n, type);
      const auto y = *vit::gelu_dropout(x, /*gelu=*/true, 0.0);
      ASSERT_EQ(y.scalar_type(), type);
      const auto want = gelu64(x);
      // Abramowitz & Stegun 7.1.26: |error of erfc| <= 1.5e-7, so |error of gelu| <= 0.75e-7 |x|;
      // plus the rounding of the result (float or bf16).
      const double rel = type == torch::kFloat ? 1e-6 : 1.0 / 256;
      const auto tol = 1e-7 * x.to(torch::kDouble).abs() + 1e-30;
      EXPECT_LE(excess(y, want, rel, tol), 0.0) << "n=" << n << " type=" << type;
    }
  }
  // Far in the tails: gelu(x) -> x for large x, -> -0 (tiny) for very negative x, never NaN.
  const auto far = torch::tensor({-30.0f, -12.0f, -6.0f, 6.0f, 12.0f, 30.0f});
  const auto y = *vit::gelu_dropout(far, true, 0.0);
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << y;
  EXPECT_TRUE(torch::allclose(y.slice(0, 3), far.slice(0, 3)));
  EXPECT_LE(y.slice(0, 0, 3).abs().max().item<float>(), 1e-7f);
  // In the left tail the CDF is computed without cancellation: relative accuracy holds where
  // gelu is small (at -5, 1 - (1 - erfc) would keep about one digit in float).
  const auto left = torch::tensor({-5.0f, -4.0f, -3.0f});
  const auto rel = ((*vit::gelu_dropout(left, true, 0.0)).to(torch::kDouble) / gelu64(left) - 1.0).abs();
  EXPECT_LE(rel.max().item<double>(), 3e-3) << rel;  // the approximation's own: 1.6e-3 at -5
}

TEST(GeluDropout, DropsExactlyTheElementsOfDropoutMaskForTheSameSeed) {
  SKIP_WITHOUT_KERNELS();
  for (const double p : {0.1, 0.5}) {
    for (const int64_t n : kSizes) {
      const auto mask = mask_of(7, {n}, p);
      {
        vit::RandomStreamScope scope(7);
        const auto y = *vit::gelu_dropout(torch::ones({n}), /*gelu=*/false, p);
        ASSERT_TRUE(torch::equal(y, mask)) << "n=" << n << " p=" << p;  // 0 or float(1 / (1 - p))
      }
      {
        vit::RandomStreamScope scope(7);
        const auto y = *vit::gelu_dropout(torch::ones({n}, torch::kBFloat16), false, p);
        ASSERT_TRUE(torch::equal(y.eq(0), mask.eq(0))) << "n=" << n << " p=" << p;
      }
    }
  }
  // The fraction dropped is p, and fresh seeds draw fresh masks.
  torch::manual_seed(3);
  const auto a = *vit::gelu_dropout(torch::ones({1 << 20}), false, 0.25);
  const auto b = *vit::gelu_dropout(torch::ones({1 << 20}), false, 0.25);
  EXPECT_NEAR(a.eq(0).to(torch::kDouble).mean().item<double>(), 0.25, 0.003);
  EXPECT_FALSE(torch::equal(a, b));
}

// y = r + gelu(x) * m and its gradients against float64 autograd of the same expression with
// dropout_mask()'s mask, for the type pairs the model uses.
struct TypeCase {
  torch::ScalarType x, r;  // r = kUndefined: no residual
};

TEST(GeluDropout, ValuesAndGradientsFollowFloat64) {
  SKIP_WITHOUT_KERNELS();
  torch::manual_seed(2);
  const std::vector<TypeCase> cases = {{torch::kFloat, c10::ScalarType::Undefined}, {torch::kBFloat16, c10::ScalarType::Undefined},
                                       {torch::kFloat, torch::kFloat},      {torch::kBFloat16, torch::kFloat},
                                       {torch::kBFloat16, torch::kBFloat16}};
  for (const auto& c : cases) {
    for (const bool gelu : {true, false}) {
      for (const double p : {0.0, 0.3}) {
        if (!gelu && p == 0.0 && c.r == c10::ScalarType::Undefined) continue;  // the identity: returned as is
        for (const int64_t n : {int64_t(1024 + 37), int64_t(3 * 16384 + 77)}) {
          const auto x0 = inputs(n, c.x);
          const auto r0 = c.r == c10::ScalarType::Undefined ? torch::Tensor() : torch::randn({n}).to(c.r);
          const auto out_type = c.r == c10::ScalarType::Undefined ? c.x : c.r;
          const auto g = torch::randn({n}).to(out_type);
          auto x = x0.clone().requires_grad_();
          auto r = r0.defined() ? r0.clone().requires_grad_() : r0;
          std::optional<torch::Tensor> y;
          {
            vit::RandomStreamScope scope(11);
            y = vit::gelu_dropout(x, gelu, p, r);
          }
          ASSERT_TRUE(y) << "declined x " << c.x << " r " << c.r;
          ASSERT_EQ(y->scalar_type(), out_type);
          (*y * g).sum().backward();

          const auto m = p > 0 ? mask_of(11, {n}, p).to(torch::kDouble) : torch::ones({n}, torch::kDouble);
          auto x64 = x0.to(torch::kDouble).requires_grad_();
          auto r64 = r0.defined() ? r0.to(torch::kDouble).requires_grad_() : r0;
          auto want = (gelu ? 0.5 * x64 * (1.0 + torch::erf(x64 / std::sqrt(2.0))) : x64) * m;
          if (r64.defined()) want = want + r64;
          (want * g.to(torch::kDouble)).sum().backward();

          const bool bf16 = c.x == torch::kBFloat16 || out_type == torch::kBFloat16;
          const double rel = bf16 ? 1.0 / 128 : 1e-5;
          const auto scale = m.abs() * x0.to(torch::kDouble).abs() + (r0.defined() ? r0.to(torch::kDouble).abs() : torch::zeros({n}, torch::kDouble));
          std::string what = "x " + std::string(c10::toString(c.x)) + " r " +
                             (r0.defined() ? c10::toString(c.r) : "none") + " gelu " + std::to_string(gelu) +
                             " p " + std::to_string(p) + " n " + std::to_string(n);
          EXPECT_LE(excess(y->detach(), want.detach(), rel, 1e-6 * scale + 1e-30), 0.0) << what;
          const auto gscale = g.to(torch::kDouble).abs() * m.abs();
          EXPECT_LE(excess(x.grad(), x64.grad(), rel, 1e-6 * gscale + 1e-30), 0.0) << "d/dx " << what;
          ASSERT_EQ(x.grad().scalar_type(), c.x);
          if (r.defined()) {
            ASSERT_EQ(r.grad().scalar_type(), c.r);
            EXPECT_TRUE(torch::equal(r.grad(), g.to(c.r))) << "d/dr is the incoming gradient " << what;
          }
        }
      }
    }
  }
}

TEST(GeluDropout, DeclinesWhatItDoesNotCover) {
  SKIP_WITHOUT_KERNELS();
  const auto x = torch::randn({8});
  EXPECT_FALSE(vit::gelu_dropout(x.to(torch::kDouble), true, 0.1));       // float64
  EXPECT_FALSE(vit::gelu_dropout(x, true, 1.0));                           // p = 1 drops everything
  EXPECT_FALSE(vit::gelu_dropout(x, true, -0.1));
  EXPECT_FALSE(vit::gelu_dropout(x, true, std::numeric_limits<double>::quiet_NaN()));
  EXPECT_FALSE(vit::gelu_dropout(x, true, 0.1, torch::randn({4})));       // shapes differ
  EXPECT_FALSE(vit::gelu_dropout(x, true, 0.1, torch::randn({8}).to(torch::kBFloat16)));  // float on bf16
  // Neither GELU nor dropout nor residual: x itself, no copy.
  const auto same = vit::gelu_dropout(x, false, 0.0);
  ASSERT_TRUE(same);
  EXPECT_TRUE(same->is_same(x));
  // A non-contiguous input is read in its logical order.
  const auto t = torch::randn({6, 5}).t();
  EXPECT_TRUE(torch::allclose(*vit::gelu_dropout(t, true, 0.0), *vit::gelu_dropout(t.contiguous(), true, 0.0)));
}

TEST(GeluDropout, NonFiniteValuesStayNonFinite) {
  SKIP_WITHOUT_KERNELS();
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const auto type : {torch::kFloat, torch::kBFloat16}) {
    auto x = torch::tensor({nan, inf, 1.0f, -2.0f}).to(type).requires_grad_();
    const auto y = *vit::gelu_dropout(x, true, 0.0);
    EXPECT_TRUE(std::isnan(y[0].item<float>()));
    EXPECT_EQ(y[1].item<float>(), inf);
    EXPECT_TRUE(torch::isfinite(y.slice(0, 2)).all().item<bool>());
    y.sum().backward();
    EXPECT_TRUE(std::isnan(x.grad()[0].item<float>()));  // a NaN loss must reach the guard as NaN
    EXPECT_TRUE(torch::isfinite(x.grad().slice(0, 2)).all().item<bool>());
    // A NaN gradient stays NaN through the backward pass too.
    auto x2 = torch::randn({40}).to(type).requires_grad_();
    auto g = torch::ones({40}).to(type);
    g[17] = nan;
    (*vit::gelu_dropout(x2, true, 0.2) * g).sum().backward();
    EXPECT_TRUE(std::isnan(x2.grad()[17].item<float>()));  // NaN * 0 is NaN: a dropped element too
  }
}

TEST(GeluDropout, ResultsDoNotDependOnTheThreadCount) {
  SKIP_WITHOUT_KERNELS();
  const int saved = at::get_num_threads();
  const auto x = inputs(5 * 16384 + 3, torch::kBFloat16).requires_grad_();
  const auto r = torch::randn({5 * 16384 + 3});
  const auto g = torch::randn({5 * 16384 + 3});
  std::vector<torch::Tensor> ys, grads;
  for (const int threads : {1, 2, 4}) {
    at::set_num_threads(threads);
    vit::RandomStreamScope scope(5);
    x.mutable_grad() = torch::Tensor();
    const auto y = *vit::gelu_dropout(x, true, 0.2, r);
    (y * g).sum().backward();
    ys.push_back(y.detach());
    grads.push_back(x.grad().clone());
  }
  at::set_num_threads(saved);
  for (size_t i = 1; i < ys.size(); ++i) {
    EXPECT_TRUE(torch::equal(ys[i], ys[0])) << i;
    EXPECT_TRUE(torch::equal(grads[i], grads[0])) << i;
  }
}

// A keras-cifar-style block (GELU after both MLP layers, dropout 0.3) in training: the model,
// whose residual sums and dropouts run in the fused kernels, against the block written out with
// ATen ops and dropout_mask() drawing the same seeds in the same order.
TEST(GeluDropout, TrainingBlockMatchesTheBlockWrittenOut) {
  SKIP_WITHOUT_KERNELS();
  for (const bool act_after_fc2 : {true, false}) {
    vit::ViTConfig c;
    c.dim = 16;
    c.heads = 2;
    c.mlp_hidden = 32;
    c.dropout = 0.3;
    c.mlp_act_after_fc2 = act_after_fc2;
    torch::manual_seed(4);
    vit::Block block(c, /*drop_path=*/0.0);
    block->train();
    const auto x0 = torch::randn({3, 7, 16});
    const auto g = torch::randn({3, 7, 16});

    auto x = x0.clone().requires_grad_();
    torch::Tensor y;
    {
      vit::RandomStreamScope scope(21);
      y = block->forward(x);
    }
    (y * g).sum().backward();
    std::vector<torch::Tensor> grads = {x.grad().clone()};
    for (auto& p : block->parameters()) {
      grads.push_back(p.grad().clone());
      p.mutable_grad() = torch::Tensor();
    }

    auto x2 = x0.clone().requires_grad_();
    torch::Tensor y2;
    {
      vit::RandomStreamScope scope(21);  // the same seeds, drawn in the model's order
      namespace F = torch::nn::functional;
      auto& a = *block->attn;
      auto& m = *block->mlp;
      auto ln = [](torch::nn::LayerNorm& n, const torch::Tensor& t) {
        return torch::layer_norm(t, {t.size(-1)}, n->weight, n->bias, n->options.eps());
      };
      auto drop = [&](const torch::Tensor& t) { return t * vit::dropout_mask(t.sizes(), c.dropout); };
      auto h = a.composite(F::linear(ln(block->norm1, x2), a.qkv->weight, a.qkv->bias));
      auto s = x2 + drop(F::linear(h, a.proj->weight, a.proj->bias));
      auto u = drop(torch::gelu(F::linear(ln(block->norm2, s), m.fc1->weight, m.fc1->bias)));
      u = F::linear(u, m.fc2->weight, m.fc2->bias);
      y2 = s + drop(act_after_fc2 ? torch::gelu(u) : u);
    }
    (y2 * g).sum().backward();
    std::vector<torch::Tensor> grads2 = {x2.grad()};
    for (auto& p : block->parameters()) grads2.push_back(p.grad());

    EXPECT_TRUE(torch::allclose(y, y2, 1e-4, 1e-5)) << (y - y2).abs().max();
    ASSERT_EQ(grads.size(), grads2.size());
    for (size_t i = 0; i < grads.size(); ++i)
      EXPECT_TRUE(torch::allclose(grads[i], grads2[i], 1e-3, 1e-5)) << i << ": " << (grads[i] - grads2[i]).abs().max();
  }
}

}  // namespace
