// The ViT modules: timm names and counts, output shapes, attention maps, input checks, gradients.
#include <torch/torch.h>  // torch before any Qt header: Qt's `slots` macro breaks LibTorch headers

#include <QtTest>

#include "summary.h"
#include "vit.h"

using vit::ViTConfig;

Q_DECLARE_METATYPE(ViTConfig)
Q_DECLARE_METATYPE(std::vector<int64_t>)

namespace {

ViTConfig tiny() {
  ViTConfig c;
  c.image_size = 16;
  c.patch_size = 4;
  c.in_channels = 3;
  c.num_classes = 5;
  c.dim = 16;
  c.depth = 2;
  c.heads = 2;
  c.mlp_hidden = 32;
  return c;
}

}  // namespace

class TstVit : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() { torch::manual_seed(0); }

  void moduleParamsMatchSummary_data() {
    QTest::addColumn<ViTConfig>("config");
    QTest::newRow("tiny") << tiny();
    ViTConfig c = tiny();
    c.pool = vit::Pool::Mean;
    QTest::newRow("tiny mean pool") << c;
    c = tiny();
    c.pool = vit::Pool::Flatten;
    c.class_token = false;
    c.head_hidden = {24, 12};
    QTest::newRow("tiny flatten + MLP head") << c;
    c = tiny();
    c.qkv_bias = false;
    c.in_channels = 1;
    QTest::newRow("tiny no qkv bias, gray") << c;
    QTest::newRow("keras-cifar") << vit::preset("keras-cifar").config;
    QTest::newRow("fmnist-small") << vit::preset("fmnist-small").config;
    QTest::newRow("vit-ti16") << vit::preset("vit-ti16").config;
  }
  void moduleParamsMatchSummary() {
    QFETCH(ViTConfig, config);
    vit::VisionTransformer model(config);
    QCOMPARE(vit::count_parameters(*model), vit::summarize(config).params);
    // Per-layer: every summary row with parameters matches the module's tensors of that prefix.
    const auto named = model->named_parameters();
    for (const auto& row : vit::summarize(config).layers) {
      int64_t n = 0;
      for (const auto& p : named)
        if (p.key() == row.name || p.key().rfind(row.name + ".", 0) == 0) n += p.value().numel();
      QVERIFY2(n == row.params, row.name.c_str());
    }
  }

  void vitB16HasTimmNamesAndShapes() {
    // Keys and shapes of timm's vit_base_patch16_224().state_dict(), 152 tensors.
    vit::VisionTransformer model(vit::preset("vit-b16").config);
    const auto params = model->named_parameters();
    QCOMPARE(int(params.size()), 152);
    QCOMPARE(vit::count_parameters(*model), int64_t(86'567'656));  // timm
    const std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
        {"cls_token", {1, 1, 768}},
        {"pos_embed", {1, 197, 768}},
        {"patch_embed.proj.weight", {768, 3, 16, 16}},
        {"patch_embed.proj.bias", {768}},
        {"blocks.0.norm1.weight", {768}},
        {"blocks.0.norm1.bias", {768}},
        {"blocks.0.attn.qkv.weight", {2304, 768}},
        {"blocks.0.attn.qkv.bias", {2304}},
        {"blocks.0.attn.proj.weight", {768, 768}},
        {"blocks.0.attn.proj.bias", {768}},
        {"blocks.0.norm2.weight", {768}},
        {"blocks.0.norm2.bias", {768}},
        {"blocks.0.mlp.fc1.weight", {3072, 768}},
        {"blocks.0.mlp.fc1.bias", {3072}},
        {"blocks.0.mlp.fc2.weight", {768, 3072}},
        {"blocks.0.mlp.fc2.bias", {768}},
        {"blocks.11.mlp.fc2.bias", {768}},
        {"norm.weight", {768}},
        {"norm.bias", {768}},
        {"head.weight", {1000, 768}},
        {"head.bias", {1000}},
    };
    for (const auto& [name, shape] : expected) {
      const auto* t = params.find(name);
      QVERIFY2(t != nullptr, name.c_str());
      QVERIFY2(t->sizes().vec() == shape, name.c_str());
    }
    QVERIFY(params.find("fc_norm.weight") == nullptr);
  }

  void meanPoolUsesFcNormLikeTimm() {
    ViTConfig c = tiny();
    c.pool = vit::Pool::Mean;
    vit::VisionTransformer model(c);
    const auto params = model->named_parameters();
    QVERIFY(params.find("fc_norm.weight") != nullptr);
    QVERIFY(params.find("norm.weight") == nullptr);
    QVERIFY(params.find("cls_token") != nullptr);  // timm keeps the class token with avg pooling
  }

  void outputShapes_data() {
    QTest::addColumn<ViTConfig>("config");
    QTest::addColumn<int>("batch");
    QTest::newRow("tiny b1") << tiny() << 1;
    QTest::newRow("tiny b3") << tiny() << 3;
    ViTConfig c = tiny();
    c.image_size = 28; c.patch_size = 7; c.in_channels = 1; c.num_classes = 10;
    QTest::newRow("28x28 gray, patch 7") << c << 2;
    c = tiny();
    c.pool = vit::Pool::Flatten;
    c.class_token = false;
    c.head_hidden = {8};
    QTest::newRow("flatten, no class token") << c << 2;
    c = tiny();
    c.pool = vit::Pool::Mean;
    c.image_size = 24; c.patch_size = 6; c.heads = 4;
    QTest::newRow("mean pool, 4 heads") << c << 2;
    QTest::newRow("keras-cifar") << vit::preset("keras-cifar").config << 2;
  }
  void outputShapes() {
    QFETCH(ViTConfig, config);
    QFETCH(int, batch);
    vit::VisionTransformer model(config);
    model->eval();
    auto x = torch::randn({batch, config.in_channels, config.image_size, config.image_size});
    QCOMPARE(model->forward(x).sizes().vec(), (std::vector<int64_t>{batch, config.num_classes}));
    const auto tokens = model->forward_features(x);
    QCOMPARE(tokens.sizes().vec(),
             (std::vector<int64_t>{batch, config.num_tokens(), config.dim}));
    // The summary's shapes are the per-image shapes the modules really produce.
    const auto summary = vit::summarize(config);
    QCOMPARE(summary.layers.back().output_shape, (std::vector<int64_t>{config.num_classes}));
    QCOMPARE(model->patch_embed->proj(x).sizes().slice(1).vec(), summary.layers[0].output_shape);
  }

  void attentionRowsSumToOne() {
    ViTConfig c = tiny();
    c.depth = 3;
    vit::VisionTransformer model(c);
    model->eval();
    torch::NoGradGuard no_grad;
    auto x = torch::randn({2, 3, 16, 16});
    const auto out = model->forward_with_attention(x);
    QCOMPARE(int(out.attentions.size()), 3);
    for (const auto& a : out.attentions) {
      QCOMPARE(a.sizes().vec(), (std::vector<int64_t>{2, 2, 17, 17}));  // (B, H, T, T)
      QVERIFY(a.min().item<float>() >= 0.0f);
      QVERIFY(torch::allclose(a.sum(-1), torch::ones({2, 2, 17}), /*rtol=*/1e-5, /*atol=*/1e-5));
    }
    // Asking for attention does not change the prediction.
    QVERIFY(torch::allclose(out.logits, model->forward(x), 1e-5, 1e-6));
  }

  void attentionMatchesAHandWrittenReference() {
    // One block's attention, recomputed head by head from the module's weights with plain
    // matrix products (no reshapes shared with the implementation).
    ViTConfig c = tiny();
    c.depth = 1;
    vit::VisionTransformer model(c);
    model->eval();
    torch::NoGradGuard no_grad;
    auto x = torch::randn({1, 3, 16, 16});
    const auto probs = model->forward_with_attention(x).attentions.at(0)[0];  // (H, T, T)

    auto tokens = model->patch_embed(x);
    tokens = torch::cat({model->cls_token, tokens}, 1) + model->pos_embed;  // (1, T, D)
    auto block = model->blocks->ptr<vit::BlockImpl>(0);
    auto h = torch::layer_norm(tokens[0], {16}, block->norm1->weight, block->norm1->bias, 1e-6);
    const auto& W = block->attn->qkv->weight;  // (3D, D): rows [q; k; v]
    const auto& b = block->attn->qkv->bias;
    for (int head = 0; head < 2; ++head) {
      auto q = h.matmul(W.slice(0, head * 8, head * 8 + 8).t()) + b.slice(0, head * 8, head * 8 + 8);
      auto k = h.matmul(W.slice(0, 16 + head * 8, 16 + head * 8 + 8).t()) +
               b.slice(0, 16 + head * 8, 16 + head * 8 + 8);
      auto expected = torch::softmax(q.matmul(k.t()) / std::sqrt(8.0), -1);
      QVERIFY(torch::allclose(probs[head], expected, 1e-4, 1e-5));
    }
  }

  void evalIsDeterministicTrainIsNot() {
    ViTConfig c = tiny();
    c.dropout = 0.3;
    c.drop_path = 0.3;
    vit::VisionTransformer model(c);
    auto x = torch::randn({4, 3, 16, 16});
    model->eval();
    QVERIFY(torch::equal(model->forward(x), model->forward(x)));
    model->train();
    QVERIFY(!torch::equal(model->forward(x), model->forward(x)));
  }

  void dropoutMaskHasTheRightStatistics() {
    torch::manual_seed(5);
    const auto a = vit::dropout_mask({1000, 1000}, 0.25);
    const double zeros = a.eq(0).to(torch::kFloat64).mean().item<double>();
    QVERIFY2(std::abs(zeros - 0.25) < 0.003, std::to_string(zeros).c_str());
    QVERIFY(a.ne(0).logical_and(a.ne(1.0f / 0.75f)).sum().item<int64_t>() == 0);  // 0 or 1/(1-p)
    QVERIFY(std::abs(a.mean().item<double>() - 1.0) < 0.005);  // expectation preserved
    torch::manual_seed(5);
    QVERIFY(torch::equal(vit::dropout_mask({1000, 1000}, 0.25), a));  // reproducible
    QVERIFY(!torch::equal(vit::dropout_mask({1000, 1000}, 0.25), a));  // fresh draws differ
    // No long runs of one value: neighbours are independent (zeros of adjacent pairs ~ p^2).
    const auto flat = a.flatten().eq(0);
    const double pairs = flat.slice(0, 0, -1).logical_and(flat.slice(0, 1)).to(torch::kFloat64).mean().item<double>();
    QVERIFY2(std::abs(pairs - 0.0625) < 0.003, std::to_string(pairs).c_str());
    // bf16 masks (mixed precision): the same seed drops the same elements, so that x * mask
    // stays bf16 without changing which activations are dropped.
    torch::manual_seed(5);
    const auto b = vit::dropout_mask({1000, 1000}, 0.25, torch::kBFloat16);
    QCOMPARE(b.scalar_type(), torch::kBFloat16);
    QVERIFY(torch::equal(b.eq(0), a.eq(0)));
    QVERIFY(std::abs(b.to(torch::kFloat).max().item<double>() - 1.0 / 0.75) < 0.01);  // bf16 rounding
  }

  void everyParameterGetsAGradient() {
    ViTConfig c = tiny();
    c.head_hidden = {8};
    vit::VisionTransformer model(c);
    auto loss = torch::cross_entropy_loss(model->forward(torch::randn({3, 3, 16, 16})),
                                          torch::tensor({0, 1, 4}));
    loss.backward();
    for (const auto& p : model->named_parameters()) {
      QVERIFY2(p.value().grad().defined(), p.key().c_str());
      QVERIFY2(p.value().grad().abs().sum().item<float>() > 0.0f, p.key().c_str());
    }
  }

  void wrongInputIsRejected_data() {
    QTest::addColumn<std::vector<int64_t>>("shape");
    QTest::newRow("wrong channels") << std::vector<int64_t>{1, 1, 16, 16};
    QTest::newRow("wrong size") << std::vector<int64_t>{1, 3, 32, 32};
    QTest::newRow("no batch dim") << std::vector<int64_t>{3, 16, 16};
  }
  void wrongInputIsRejected() {
    QFETCH(std::vector<int64_t>, shape);
    vit::VisionTransformer model(tiny());
    try {
      model->forward(torch::zeros(shape));
      QFAIL("accepted a wrong input");
    } catch (const std::invalid_argument& e) {
      QVERIFY2(QString(e.what()).contains("(batch, 3, 16, 16)"), e.what());
    }
  }

  void invalidConfigThrowsBeforeBuilding() {
    ViTConfig c = tiny();
    c.heads = 3;
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, vit::VisionTransformer{c});
  }
};

QTEST_APPLESS_MAIN(TstVit)
#include "tst_vit.moc"
