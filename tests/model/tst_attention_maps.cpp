// Patchify, head fusion, discarding, attention rollout and the maps built from them: round trips,
// invariants (rows sum to 1, identity attention rolls out to a uniform map), and small examples
// worked out by hand (cross-checked with Debian's python3-torch, see the comments).
#include <torch/torch.h>  // torch before any Qt header: Qt's `slots` macro breaks LibTorch headers

#include <QtTest>

#include "attention_maps.h"
#include "patchify.h"
#include "vit.h"

using vit::HeadFusion;
using vit::ViTConfig;

Q_DECLARE_METATYPE(ViTConfig)
Q_DECLARE_METATYPE(vit::AttentionRequest)
Q_DECLARE_METATYPE(HeadFusion)
Q_DECLARE_METATYPE(torch::Tensor)
Q_DECLARE_METATYPE(std::vector<int64_t>)

namespace {

ViTConfig tiny(vit::Pool pool = vit::Pool::Token, bool class_token = true) {
  ViTConfig c;
  c.image_size = 8;
  c.patch_size = 2;  // 4x4 grid, 16 patches
  c.in_channels = 3;
  c.num_classes = 4;
  c.dim = 16;
  c.depth = 2;
  c.heads = 2;
  c.mlp_hidden = 32;
  c.pool = pool;
  c.class_token = class_token;
  return c;
}

// The 3-token example (class token + 2 patches), 2 blocks x 2 heads, one image.
torch::Tensor block1() {
  auto h0 = torch::tensor({0.5, 0.25, 0.25, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5}).view({3, 3});
  auto h1 = torch::tensor({0.5, 0.5, 0.0, 0.0, 1.0, 0.0, 0.25, 0.25, 0.5}).view({3, 3});
  return torch::stack({h0, h1}).unsqueeze(0).to(torch::kFloat32);  // (1, 2, 3, 3)
}
torch::Tensor block2() {
  auto h0 = torch::tensor({0.0, 0.5, 0.5, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0}).view({3, 3});
  auto h1 = torch::tensor({0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0}).view({3, 3});
  return torch::stack({h0, h1}).unsqueeze(0).to(torch::kFloat32);
}

torch::Tensor rows(std::initializer_list<double> values, int64_t n) {
  return torch::tensor(std::vector<double>(values)).view({1, n, n}).to(torch::kFloat32);
}

bool close(const torch::Tensor& a, const torch::Tensor& b, double tol = 1e-6) {
  if (a.sizes() != b.sizes()) {
    qWarning() << "shapes differ";
    return false;
  }
  const bool ok = torch::allclose(a, b, /*rtol=*/0.0, /*atol=*/tol);
  if (!ok) std::cerr << "got\n" << a << "\nexpected\n" << b << std::endl;
  return ok;
}

std::vector<torch::Tensor> model_attention(const ViTConfig& c, int64_t batch = 2) {
  torch::manual_seed(3);
  vit::VisionTransformer model(c);
  model->eval();
  torch::NoGradGuard no_grad;
  return model->forward_with_attention(torch::randn({batch, c.in_channels, c.image_size,
                                                     c.image_size}))
      .attentions;
}

}  // namespace

class TstAttentionMaps : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() { torch::set_num_threads(1); }

  // ---- patchify

  void patchifyRoundTrip() {
    torch::manual_seed(0);
    const auto x = torch::randn({2, 3, 8, 12});  // a 2x3 grid of 4x4 patches
    const auto p = vit::patchify(x, 4);
    QCOMPARE(p.sizes().vec(), (std::vector<int64_t>{2, 6, 48}));
    QVERIFY(torch::equal(vit::unpatchify(p, 4, 3, 2, 3), x));
    // Patch 4 is grid row 1, column 1, flattened in (C, P, P) order.
    QVERIFY(torch::equal(p[1][4], x[1].slice(1, 4, 8).slice(2, 4, 8).flatten()));
  }

  void patchifyMatchesPatchEmbed() {
    // The Conv2d of PatchEmbed is a linear map of patchify's vectors: the two cuts agree.
    const ViTConfig c = tiny();
    torch::manual_seed(1);
    vit::VisionTransformer model(c);
    torch::NoGradGuard no_grad;
    const auto x = torch::randn({2, 3, 8, 8});
    const auto& proj = model->patch_embed->proj;
    const auto by_patchify = torch::matmul(vit::patchify(x, c.patch_size),
                                           proj->weight.flatten(1).t()) + proj->bias;  // (B, N, D)
    QVERIFY(close(by_patchify, model->patch_embed(x), 1e-5));
  }

  void patchifyRejects_data() {
    QTest::addColumn<std::vector<int64_t>>("shape");
    QTest::addColumn<int>("patch");
    QTest::newRow("side not a multiple") << std::vector<int64_t>{1, 3, 10, 8} << 4;
    QTest::newRow("3-d input") << std::vector<int64_t>{3, 8, 8} << 4;
    QTest::newRow("zero patch") << std::vector<int64_t>{1, 3, 8, 8} << 0;
  }
  void patchifyRejects() {
    QFETCH(std::vector<int64_t>, shape);
    QFETCH(int, patch);
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, vit::patchify(torch::zeros(shape), patch));
  }

  void unpatchifyRejectsWrongGrid() {
    const auto p = torch::zeros({1, 6, 48});
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, vit::unpatchify(p, 4, 3, 2, 2));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, vit::unpatchify(p, 4, 1, 2, 3));
  }

  // ---- invariants on a real model's attention

  void attentionRowsSumToOne_data() {
    QTest::addColumn<ViTConfig>("config");
    QTest::newRow("class token") << tiny();
    QTest::newRow("mean pool, no class token") << tiny(vit::Pool::Mean, false);
  }
  void attentionRowsSumToOne() {
    QFETCH(ViTConfig, config);
    const auto att = model_attention(config);
    QCOMPARE(int(att.size()), config.depth);
    for (const auto& a : att) {
      QCOMPARE(a.sizes().vec(), (std::vector<int64_t>{2, config.heads, config.num_tokens(),
                                                      config.num_tokens()}));
      QVERIFY(close(a.sum(-1), torch::ones({2, config.heads, config.num_tokens()}), 1e-5));
      QVERIFY(close(vit::fuse_heads(a, HeadFusion::Mean).sum(-1),
                    torch::ones({2, config.num_tokens()}), 1e-5));
    }
    for (auto fusion : {HeadFusion::Mean, HeadFusion::Max, HeadFusion::Min}) {
      std::vector<torch::Tensor> fused;
      for (const auto& a : att) fused.push_back(vit::fuse_heads(a, fusion));
      for (double discard : {0.0, 0.9}) {
        const auto r = vit::attention_rollout(fused, discard, config.class_token);
        QVERIFY(close(r.sum(-1), torch::ones({2, config.num_tokens()}), 1e-5));
        QVERIFY(r.min().item<float>() >= 0.0f);
      }
    }
  }

  void rolloutOfIdentityIsUniform() {
    // Attention that keeps every token to itself moves nothing: the rollout is the identity, and
    // the class token's map gives every patch the same weight (none).
    const ViTConfig c = tiny();
    const int64_t T = c.num_tokens();
    const std::vector<torch::Tensor> att(c.depth, torch::eye(T).expand({1, c.heads, T, T}));
    vit::AttentionRequest r;
    r.rollout = true;
    const auto r_matrix = vit::attention_rollout({att[0].mean(1), att[1].mean(1)}, 0.0, true);
    QVERIFY(close(r_matrix, torch::eye(T).unsqueeze(0)));
    const auto map = vit::attention_map(att, c, r);  // (1, 4, 4)
    QVERIFY(close(map, torch::zeros({1, 4, 4})));
  }

  void rolloutOfUniformAttentionIsUniform() {
    // Every token attending equally to all: patches are indistinguishable, so the map is flat
    // (and positive).
    const ViTConfig c = tiny();
    const int64_t T = c.num_tokens();
    const std::vector<torch::Tensor> att(c.depth, torch::full({1, c.heads, T, T}, 1.0 / T));
    vit::AttentionRequest r;
    r.rollout = true;
    const auto map = vit::attention_map(att, c, r);
    QVERIFY(map.min().item<float>() > 0.0f);
    QVERIFY(close(map, torch::full({1, 4, 4}, map[0][0][0].item<float>())));
  }

  // ---- hand-computed examples (T = 3: class token + 2 patches)

  void fusionByHand_data() {
    QTest::addColumn<HeadFusion>("fusion");
    QTest::addColumn<torch::Tensor>("expected");
    QTest::newRow("mean") << HeadFusion::Mean
                          << rows({0.5, 0.375, 0.125, 0.25, 0.75, 0, 0.125, 0.375, 0.5}, 3);
    QTest::newRow("max") << HeadFusion::Max << rows({0.5, 0.5, 0.25, 0.5, 1, 0, 0.25, 0.5, 0.5}, 3);
    QTest::newRow("min") << HeadFusion::Min << rows({0.5, 0.25, 0, 0, 0.5, 0, 0, 0.25, 0.5}, 3);
  }
  void fusionByHand() {
    QFETCH(HeadFusion, fusion);
    QFETCH(torch::Tensor, expected);
    QVERIFY(close(vit::fuse_heads(block1(), fusion), expected));
  }

  void rolloutByHand_data() {
    // R = A2' A1' with A' = (A + I) / 2, rows re-normalized; row 0 is the class token's.
    // mean: A1' = [[.75 .1875 .0625] [.125 .875 0] [.0625 .1875 .75]],
    //       A2' = [[.5 .375 .125] [.25 .75 0] [0 .25 .75]]
    //       row 0 = .5 A1'[0] + .375 A1'[1] + .125 A1'[2] = [55 57 16] / 128.
    // max:  rows of (A + I) / 2 sum to more than 1; normalized A1'[0] = [2/3 2/9 1/9],
    //       A1'[1] = [.2 .8 0], A1'[2] = [1/9 2/9 2/3], A2'[0] = [.4 .4 .2]
    //       row 0 = [83 102 40] / 225.
    // min:  A1'[0] = [6/7 1/7 0], A1'[1] = [0 1 0]; block 2's min keeps only 0.5 at (0, 1), so
    //       A2'[0] = [2/3 1/3 0] and row 0 = [4/7 3/7 0].
    QTest::addColumn<HeadFusion>("fusion");
    QTest::addColumn<torch::Tensor>("row0");
    QTest::newRow("mean") << HeadFusion::Mean
                          << torch::tensor({55.0 / 128, 57.0 / 128, 16.0 / 128}).to(torch::kFloat32);
    QTest::newRow("max") << HeadFusion::Max
                         << torch::tensor({83.0 / 225, 102.0 / 225, 40.0 / 225}).to(torch::kFloat32);
    QTest::newRow("min") << HeadFusion::Min
                         << torch::tensor({4.0 / 7, 3.0 / 7, 0.0}).to(torch::kFloat32);
  }
  void rolloutByHand() {
    QFETCH(HeadFusion, fusion);
    QFETCH(torch::Tensor, row0);
    const auto r = vit::attention_rollout(
        {vit::fuse_heads(block1(), fusion), vit::fuse_heads(block2(), fusion)}, 0.0, true);
    QVERIFY(close(r[0][0], row0));
    if (fusion == HeadFusion::Mean)  // the whole matrix, python3-torch: the same numbers
      QVERIFY(close(r, rows({0.4296875, 0.4453125, 0.125, 0.28125, 0.703125, 0.015625, 0.078125,
                             0.359375, 0.5625},
                            3)));
  }

  void discardKeepsTheClassToken() {
    // Mean-fused block 1; with the class token kept, only the 4 patch-to-patch entries are
    // candidates: ratio 0.5 drops the 2 lowest (0 and 0.375), although the class token's row and
    // column hold the smallest values (0.125).
    const auto a = vit::fuse_heads(block1(), HeadFusion::Mean);
    QVERIFY(close(vit::discard_lowest(a, 0.5, true),
                  rows({0.5, 0.375, 0.125, 0.25, 0.75, 0, 0.125, 0, 0.5}, 3)));
    // Without a class token every entry is a candidate: floor(0.5 * 9) = 4 lowest go
    // (0, 0.125, 0.125, 0.25).
    QVERIFY(close(vit::discard_lowest(a, 0.5, false),
                  rows({0.5, 0.375, 0, 0, 0.75, 0, 0, 0.375, 0.5}, 3)));
    QVERIFY(close(vit::discard_lowest(a, 0.0, true), a));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, vit::discard_lowest(a, 1.0, true));
    // Rollout of the discarded block: (A + I) / 2 row 2 = [.0625 0 .75] -> [1/13 0 12/13].
    const auto r = vit::attention_rollout({a}, 0.5, true);
    QVERIFY(close(r[0][2], torch::tensor({1.0 / 13, 0.0, 12.0 / 13}).to(torch::kFloat32)));
    QVERIFY(close(r[0][0], torch::tensor({0.75, 0.1875, 0.0625}).to(torch::kFloat32)));
  }

  void gradientFusionByHand() {
    // mean over heads of max(0, A * dA): head 0 [.5 .5] * [2 -1] = [1 -.5] -> [1 0];
    // head 1 [.25 .75] * [-4 2] = [-1 1.5] -> [0 1.5]; mean [.5 .75].
    // (1, 2, 2, 2): the same row twice per head.
    const auto a = torch::tensor({0.5, 0.5, 0.25, 0.75}).view({1, 2, 1, 2}).to(torch::kFloat32);
    const auto g = torch::tensor({2.0, -1.0, -4.0, 2.0}).view({1, 2, 1, 2}).to(torch::kFloat32);
    const auto a2 = a.expand({1, 2, 2, 2}).contiguous(), g2 = g.expand({1, 2, 2, 2}).contiguous();
    QVERIFY(close(vit::gradient_weighted_fusion(a2, g2)[0][1],
                  torch::tensor({0.5, 0.75}).to(torch::kFloat32)));
  }

  // ---- rows and maps

  void queryRowsAndPatchMaps() {
    ViTConfig c = tiny();
    c.image_size = 4;  // 2x2 grid, T = 5
    const auto m = torch::arange(25, torch::kFloat32).view({1, 5, 5});
    auto map = [&](const ViTConfig& cfg, const torch::Tensor& mat, int query) {
      return vit::patch_map(vit::query_row(mat, cfg, query), cfg);
    };
    QVERIFY(close(map(c, m, -1), torch::tensor({1.0f, 2.0f, 3.0f, 4.0f}).view({1, 2, 2})));
    QVERIFY(close(map(c, m, 2), torch::tensor({16.0f, 17.0f, 18.0f, 19.0f}).view({1, 2, 2})));
    // Mean pooling with a class token: the head reads the mean of patch rows 1..4.
    c.pool = vit::Pool::Mean;
    QVERIFY(close(map(c, m, -1), torch::tensor({13.5f, 14.5f, 15.5f, 16.5f}).view({1, 2, 2})));
    // No class token: every token is a patch, the mean runs over all rows.
    c.class_token = false;
    const auto m4 = torch::arange(16, torch::kFloat32).view({1, 4, 4});
    QVERIFY(close(map(c, m4, -1), torch::tensor({6.0f, 7.0f, 8.0f, 9.0f}).view({1, 2, 2})));
    QVERIFY(close(map(c, m4, 1), torch::tensor({4.0f, 5.0f, 6.0f, 7.0f}).view({1, 2, 2})));
  }

  void meanPooledRolloutAveragesRows() {
    const ViTConfig c = tiny(vit::Pool::Mean, false);
    const auto att = model_attention(c, 1);
    vit::AttentionRequest r;
    r.rollout = true;
    std::vector<torch::Tensor> fused;
    for (const auto& a : att) fused.push_back(vit::fuse_heads(a, HeadFusion::Mean));
    const auto expected = vit::attention_rollout(fused, 0.0, false).mean(1).view({1, 4, 4});
    QVERIFY(close(vit::attention_map(att, c, r), expected));
    // The rows are distributions, so their mean is one too: the map sums to 1.
    QVERIFY(std::abs(expected.sum().item<float>() - 1.0f) < 1e-5);
  }

  void singleLayerMapIsTheClassTokenRow() {
    const ViTConfig c = tiny();
    const auto att = model_attention(c, 1);
    vit::AttentionRequest r;
    r.layer = 0;
    r.head = 1;
    QVERIFY(close(vit::attention_map(att, c, r), att[0][0][1][0].narrow(0, 1, 16).view({1, 4, 4})));
    r.head = -1;
    r.fusion = HeadFusion::Max;
    r.layer = -1;  // the last block
    QVERIFY(close(vit::attention_map(att, c, r),
                  std::get<0>(att[1].max(1))[0][0].narrow(0, 1, 16).view({1, 4, 4})));
  }

  void gradientRolloutOnModel() {
    const ViTConfig c = tiny();
    torch::manual_seed(5);
    vit::VisionTransformer model(c);
    model->train();
    const auto x = torch::randn({1, 3, 8, 8});
    const auto g = vit::attention_gradients(*model, x, {-1});
    QVERIFY(model->is_training());  // mode restored
    QCOMPARE(int(g.gradients.size()), c.depth);
    QCOMPARE(g.targets.front(), g.logits.argmax(1).item<int64_t>());
    QCOMPARE(g.gradients[0].sizes(), g.attentions[0].sizes());
    QVERIFY(g.gradients.back().abs().sum().item<float>() > 0.0f);
    vit::AttentionRequest r;
    r.gradient = true;
    const auto map = vit::attention_map(g.attentions, c, r, &g.gradients);
    QCOMPARE(map.sizes().vec(), (std::vector<int64_t>{1, 4, 4}));
    QVERIFY(torch::isfinite(map).all().item<bool>());
    QVERIFY(map.min().item<float>() >= 0.0f);
    // Another class weighs the heads differently.
    const auto other = vit::attention_gradients(*model, x, {(g.targets.front() + 1) % 4});
    QVERIFY(!torch::allclose(vit::attention_map(other.attentions, c, r, &other.gradients), map));
  }

  void positionSimilarity() {
    const ViTConfig c = tiny();
    torch::manual_seed(2);
    vit::VisionTransformer model(c);
    torch::NoGradGuard no_grad;
    const auto s = vit::position_similarity(model->pos_embed, c);  // (16, 4, 4)
    QCOMPARE(s.sizes().vec(), (std::vector<int64_t>{16, 4, 4}));
    const auto flat = s.view({16, 16});
    QVERIFY(close(flat.diagonal(), torch::ones({16}), 1e-5));
    QVERIFY(close(flat, flat.t(), 1e-6));
    QVERIFY(flat.abs().max().item<float>() <= 1.0f + 1e-5f);
  }

  void impossibleRequests_data() {
    QTest::addColumn<vit::AttentionRequest>("request");
    QTest::addColumn<QString>("mentions");
    vit::AttentionRequest r;
    r.layer = 2;
    QTest::newRow("layer past the end") << r << "layer 2";
    r = {};
    r.head = 2;
    QTest::newRow("head past the end") << r << "head 2";
    r = {};
    r.rollout = true;
    r.discard_ratio = 1.0;
    QTest::newRow("discard 1") << r << "discard";
    r = {};
    r.discard_ratio = 0.5;
    QTest::newRow("discard without rollout") << r << "rollout";
    r = {};
    r.query_patch = 16;
    QTest::newRow("patch past the end") << r << "patch 16";
    r = {};
    r.gradient = true;
    r.head = 0;
    QTest::newRow("gradient with a head") << r << "gradient";
    r = {};
    r.gradient = true;
    r.target_class = 4;
    QTest::newRow("class past the end") << r << "class 4";
  }
  void impossibleRequests() {
    QFETCH(vit::AttentionRequest, request);
    QFETCH(QString, mentions);
    const ViTConfig c = tiny();
    const auto att = model_attention(c, 1);
    const QString problem = QString::fromStdString(vit::validate(request, c));
    QVERIFY2(problem.contains(mentions), qPrintable(problem));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, vit::attention_map(att, c, request));
  }
};

QTEST_GUILESS_MAIN(TstAttentionMaps)
#include "tst_attention_maps.moc"
