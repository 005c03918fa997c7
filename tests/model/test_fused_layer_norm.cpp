// Our layer norm kernels (model/fused_layer_norm.h) against at::layer_norm in float64: values and
// the three gradients for every type pair (float, bf16, float in -> bf16 out), with and without
// scale and shift, row lengths with vector tails and row counts across the backward's row blocks;
// the residual pass-through; thread-count independence; non-finite rows; what it declines; and a transformer block under
// bf16 autocast against the same block written with ATen's ops. CTest runs this suite twice, the
// second time with ATEN_CPU_CAPABILITY=avx2, so both kernel sets run on an AVX-512 machine.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "data_parallel.h"
#include "fused_layer_norm.h"
#include "gelu_dropout.h"
#include "vit.h"

namespace {

bool available() { return vit::fused_layer_norm(torch::ones({2, 3}), {}, {}, 1e-5).has_value(); }

#define SKIP_WITHOUT_KERNELS() \
  if (!available()) GTEST_SKIP() << "kernels off here: " << vit::fused_layer_norm_isa()

// The worst of |got - want| / (rel * |want| + abs) over all elements (<= 1: passes).
double worst(const torch::Tensor& got, const torch::Tensor& want, double rel, double abs) {
  const auto w = want.to(torch::kDouble);
  return ((got.to(torch::kDouble) - w).abs() / (rel * w.abs() + abs)).max().item<double>();
}

struct Case {
  torch::ScalarType in, out;
};
const std::vector<Case> kCases = {{torch::kFloat, torch::kFloat},
                                  {torch::kFloat, torch::kBFloat16},
                                  {torch::kBFloat16, torch::kBFloat16}};

TEST(FusedLayerNorm, KernelSetIsTheElementWiseKernelsOne) {
  const std::string isa = vit::fused_layer_norm_isa();
  if (const char* off = std::getenv("VIT_FUSED_LAYER_NORM"); off && std::strcmp(off, "0") == 0)
    EXPECT_EQ(isa, "off (VIT_FUSED_LAYER_NORM=0)");
  else if (const char* e = std::getenv("VIT_FUSED_ELTWISE"); !(e && std::strcmp(e, "0") == 0))
    EXPECT_EQ(isa, vit::gelu_dropout_isa());  // one choice of instruction set for both
  std::printf("kernels: %s\n", isa.c_str());
}

TEST(FusedLayerNorm, ValuesAndGradientsFollowFloat64) {
  SKIP_WITHOUT_KERNELS();
  torch::manual_seed(3);
  // (rows, features): one element; a row shorter than a vector; keras-cifar's 64; an odd row
  // past two AVX-512 vector pairs over more rows than one backward block (128); ViT-B/16's 768.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1}, {3, 7}, {37, 64}, {129, 100}, {20, 768}};
  for (const auto& [M, C] : shapes) {
    for (const auto& cs : kCases) {
      for (const int affine : {0, 1, 2}) {  // none, scale only, scale and shift
        SCOPED_TRACE(testing::Message() << M << "x" << C << " " << cs.in << "->" << cs.out << " affine " << affine);
        // Rows with an offset and spread of their own: the statistics matter.
        const auto x0 = (torch::randn({M, C}) * (1 + 3 * torch::rand({M, 1})) + 5 * torch::randn({M, 1})).to(cs.in);
        const auto w0 = (1 + 0.5 * torch::randn({C})).to(cs.in), b0 = torch::randn({C}).to(cs.in);
        const auto dy = torch::randn({M, C}).to(cs.out);
        auto x = x0.clone().requires_grad_();
        auto w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
        const auto wd = affine >= 1 ? w : torch::Tensor(), bd = affine == 2 ? b : torch::Tensor();
        const auto y = vit::fused_layer_norm(x, wd, bd, 1e-5, cs.out);
        ASSERT_TRUE(y.has_value());
        ASSERT_EQ(y->scalar_type(), cs.out);
        y->backward(dy);

        auto x64 = x0.to(torch::kDouble).requires_grad_();
        auto w64 = w0.to(torch::kDouble).requires_grad_(), b64 = b0.to(torch::kDouble).requires_grad_();
        const auto y64 = torch::layer_norm(x64, {C}, affine >= 1 ? w64 : torch::Tensor(),
                                           affine == 2 ? b64 : torch::Tensor(), 1e-5);
        y64.backward(dy.to(torch::kDouble));

        // float: float rounding; bf16 results: one rounding to bf16's 8 bits (2^-8 relative).
        const bool bf = cs.out == torch::kBFloat16;
        EXPECT_LE(worst(*y, y64, bf ? 1.0 / 256 : 1e-5, 1e-5), 1.0);
        // dx sums C products per row: an absolute allowance on the row's scale.
        const double gscale = x64.grad().abs().max().item<double>() + 1e-3;
        EXPECT_LE(worst(x.grad(), x64.grad(), cs.in == torch::kBFloat16 ? 1.0 / 128 : 1e-4, 1e-4 * gscale), 1.0);
        if (affine >= 1) {
          const double s = w64.grad().abs().max().item<double>() + 1e-3;
          EXPECT_EQ(w.grad().scalar_type(), cs.in);
          EXPECT_LE(worst(w.grad(), w64.grad(), cs.in == torch::kBFloat16 ? 1.0 / 128 : 1e-4, 1e-4 * s), 1.0);
        }
        if (affine == 2) {
          const double s = b64.grad().abs().max().item<double>() + 1e-3;
          EXPECT_LE(worst(b.grad(), b64.grad(), cs.in == torch::kBFloat16 ? 1.0 / 128 : 1e-4, 1e-4 * s), 1.0);
        }
        if (affine == 0) {
          EXPECT_FALSE(w.grad().defined());
        }
      }
    }
  }
}

// The passed-through x (`residual`): its gradient is added into x's inside the backward pass,
// for every type pair, and alone (the normalized rows unused) it is the identity.
TEST(FusedLayerNorm, ResidualGradientJoinsTheInputGradient) {
  SKIP_WITHOUT_KERNELS();
  torch::manual_seed(6);
  for (const auto& cs : kCases) {
    SCOPED_TRACE(testing::Message() << cs.in << "->" << cs.out);
    const auto x0 = torch::randn({2, 70, 48}).to(cs.in), w0 = torch::randn({48}).to(cs.in);
    const auto g1 = torch::randn({2, 70, 48}).to(cs.out), g2 = torch::randn({2, 70, 48}).to(cs.in);
    auto x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_();
    torch::Tensor r;
    const auto y = *vit::fused_layer_norm(x, w, {}, 1e-5, cs.out, &r);
    EXPECT_TRUE(torch::equal(r, x0));
    EXPECT_EQ(r.data_ptr(), x.data_ptr());  // a view, not a copy
    torch::autograd::backward({y, r}, {g1, g2});

    auto xr = x0.clone().requires_grad_(), wr = w0.clone().requires_grad_();
    const auto yr = *vit::fused_layer_norm(xr, wr, {}, 1e-5, cs.out);  // no pass-through: autograd adds
    torch::autograd::backward({yr, xr}, {g1, g2});
    const double tol = cs.in == torch::kBFloat16 ? 1.0 / 128 : 1e-6;  // bf16: dx rounded once, not twice
    EXPECT_LE((x.grad() - xr.grad()).abs().max().item<double>(), tol * xr.grad().abs().max().item<double>());
    EXPECT_TRUE(torch::equal(w.grad(), wr.grad()));

    auto xo = x0.clone().requires_grad_(), wo = w0.clone().requires_grad_();
    torch::Tensor ro;
    (void)vit::fused_layer_norm(xo, wo, {}, 1e-5, cs.out, &ro);
    ro.backward(g2);
    EXPECT_TRUE(torch::equal(xo.grad(), g2));
    EXPECT_EQ(wo.grad().abs().max().item<double>(), 0.0);
  }
}

TEST(FusedLayerNorm, ResultsDoNotDependOnTheThreadCount) {
  SKIP_WITHOUT_KERNELS();
  const int before = torch::get_num_threads();
  torch::manual_seed(5);
  const auto x0 = torch::randn({1000, 64}) * 2 + 1, w0 = torch::randn({64}), b0 = torch::randn({64});
  const auto dy = torch::randn({1000, 64});
  std::vector<std::vector<torch::Tensor>> runs;
  for (const int threads : {1, 2, 4}) {
    torch::set_num_threads(threads);
    auto x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
    const auto y = *vit::fused_layer_norm(x, w, b, 1e-6);
    y.backward(dy);
    runs.push_back({y.detach(), x.grad(), w.grad(), b.grad()});
  }
  torch::set_num_threads(before);
  for (size_t r = 1; r < runs.size(); ++r)
    for (size_t i = 0; i < runs[0].size(); ++i) EXPECT_TRUE(torch::equal(runs[0][i], runs[r][i])) << r << " " << i;
}

TEST(FusedLayerNorm, NonFiniteRowsStayTheirOwn) {
  SKIP_WITHOUT_KERNELS();
  auto x = torch::randn({4, 40});
  x[1][3] = std::numeric_limits<float>::quiet_NaN();
  x[2][0] = std::numeric_limits<float>::infinity();
  x.requires_grad_();
  const auto y = *vit::fused_layer_norm(x, {}, {}, 1e-5);
  y.sum().backward();
  EXPECT_TRUE(y[1].isnan().all().item<bool>());
  EXPECT_FALSE(y[2].isfinite().all().item<bool>());
  for (const int r : {0, 3}) {
    EXPECT_TRUE(y[r].isfinite().all().item<bool>()) << r;
    EXPECT_TRUE(x.grad()[r].isfinite().all().item<bool>()) << r;
    EXPECT_TRUE(torch::allclose(y[r], torch::layer_norm(x.detach()[r], {40}), 1e-5, 1e-5)) << r;
  }
  EXPECT_TRUE(x.grad()[1].isnan().all().item<bool>());
}

TEST(FusedLayerNorm, DeclinesWhatItDoesNotCover) {
  SKIP_WITHOUT_KERNELS();
  const auto x = torch::randn({3, 8});
  EXPECT_FALSE(vit::fused_layer_norm(x.to(torch::kDouble), {}, {}, 1e-5));
  EXPECT_FALSE(vit::fused_layer_norm(x, torch::ones({7}), {}, 1e-5));           // scale of another length
  EXPECT_FALSE(vit::fused_layer_norm(x, {}, torch::ones({8}, torch::kDouble), 1e-5));
  EXPECT_FALSE(vit::fused_layer_norm(x, {}, {}, 1e-5, torch::kDouble));        // no float64 result
  EXPECT_FALSE(vit::fused_layer_norm(x.to(torch::kBFloat16), {}, {}, 1e-5, torch::kFloat));
  EXPECT_FALSE(vit::fused_layer_norm(torch::randn({0, 8}), {}, {}, 1e-5));
  EXPECT_FALSE(vit::fused_layer_norm(x, {}, {}, std::nan("")));
  {
    vit::Bf16AutocastScope autocast(true);  // LibTorch would normalize a bf16 x in float here
    EXPECT_FALSE(vit::fused_layer_norm(x.to(torch::kBFloat16), {}, {}, 1e-5));
    EXPECT_TRUE(vit::fused_layer_norm(x, {}, {}, 1e-5, torch::kBFloat16));
  }
}

// Under bf16 autocast a block's norms hand their linear layers bf16 rows themselves; the block's
// output and every gradient match the block written with ATen's ops under the same autocast
// (which normalizes in float and casts). Tolerances: bf16 matmuls, where one rounding of a
// normalized value may land on the other side.
TEST(FusedLayerNorm, BlockUnderAutocastMatchesTheBlockWrittenOut) {
  SKIP_WITHOUT_KERNELS();
  vit::ViTConfig c;
  c.dim = 32;
  c.heads = 2;
  c.mlp_hidden = 64;
  torch::manual_seed(8);
  vit::Block block(c, 0.0);
  block->eval();  // no dropout: the two paths draw nothing
  const auto x0 = torch::randn({2, 9, 32}), g = torch::randn({2, 9, 32});
  auto run = [&](bool ours) {
    for (auto& p : block->parameters()) p.mutable_grad() = torch::Tensor();
    auto x = x0.clone().requires_grad_();
    torch::Tensor y;
    {
      vit::Bf16AutocastScope autocast(true);
      if (ours) {
        y = block->forward(x);
      } else {
        namespace F = torch::nn::functional;
        auto& a = *block->attn;
        auto& m = *block->mlp;
        auto ln = [](torch::nn::LayerNorm& n, const torch::Tensor& t) {
          return torch::layer_norm(t, {t.size(-1)}, n->weight, n->bias, n->options.eps());
        };
        auto h = a.composite(F::linear(ln(block->norm1, x), a.qkv->weight, a.qkv->bias));
        auto s = x + F::linear(h, a.proj->weight, a.proj->bias);
        auto u = torch::gelu(F::linear(ln(block->norm2, s), m.fc1->weight, m.fc1->bias));
        y = s + F::linear(u, m.fc2->weight, m.fc2->bias);
      }
    }
    (y.to(torch::kFloat) * g).sum().backward();
    std::vector<torch::Tensor> out = {y.detach().to(torch::kFloat), x.grad()};
    for (auto& p : block->parameters()) out.push_back(p.grad().clone());
    return out;
  };
  const auto ours = run(true), theirs = run(false);
  ASSERT_EQ(ours.size(), theirs.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    const double scale = theirs[i].abs().max().item<double>();
    EXPECT_LE((ours[i] - theirs[i]).abs().max().item<double>(), 0.03 * scale + 1e-4) << i;
  }
}

}  // namespace
