// Model summary: parameter and MAC counts against published figures, per-layer rows, JSON.
#include <QtTest>

#include <limits>

#include "summary.h"

class TstSummary : public QObject {
  Q_OBJECT
 private slots:
  void paramsMatchTimm_data() {
    QTest::addColumn<QString>("preset");
    QTest::addColumn<qint64>("params");
    // timm 0.9: sum(p.numel() for p in timm.create_model(NAME).parameters()), also printed in
    // timm's model cards (vit_tiny_patch16_224: 5.7 M, vit_small: 22.1 M, vit_base: 86.6 M,
    // vit_base_patch32_224: 88.2 M, vit_large_patch16_224: 304.3 M).
    QTest::newRow("vit-ti16") << "vit-ti16" << qint64(5'717'416);
    QTest::newRow("vit-s16") << "vit-s16" << qint64(22'050'664);
    QTest::newRow("vit-b16") << "vit-b16" << qint64(86'567'656);
    QTest::newRow("vit-b32") << "vit-b32" << qint64(88'224'232);
    QTest::newRow("vit-l16") << "vit-l16" << qint64(304'326'632);
    // The Keras example's ViT with a class token and a linear head, as the issue states it.
    QTest::newRow("keras-cifar") << "keras-cifar" << qint64(284'874);
  }
  void paramsMatchTimm() {
    QFETCH(QString, preset);
    QFETCH(qint64, params);
    const auto s = vit::summarize(vit::preset(preset.toStdString()).config);
    QCOMPARE(qint64(s.params), params);
    QCOMPARE(qint64(s.trainable_params), params);
    qint64 sum = 0;
    for (const auto& row : s.layers) sum += row.params;
    QCOMPARE(sum, params);
  }

  void vitB16MacsMatchTimm() {
    // timm's model card for vit_base_patch16_224: 17.6 GMACs (fvcore count: 17.58 G).
    const auto s = vit::summarize(vit::preset("vit-b16").config);
    QVERIFY2(std::abs(double(s.macs) / 17.58e9 - 1.0) < 0.001, std::to_string(s.macs).c_str());
    QCOMPARE(s.flops, 2 * s.macs);
    // The two MLP Linears alone, counted by hand: 2 layers x 12 blocks x 197 x 768 x 3072.
    int64_t mlp = 0;
    for (const auto& row : s.layers)
      if (row.name.find(".mlp.fc") != std::string::npos) mlp += row.macs;
    QCOMPARE(mlp, int64_t(2) * 12 * 197 * 768 * 3072);
    // The tutorial's keras_flops figure (51,955,425,272 for a batch of 8) is below even the MLPs.
    QVERIFY(51'955'425'272 / 8 < 2 * mlp);
  }

  void otherTimmMacs_data() {
    QTest::addColumn<QString>("preset");
    QTest::addColumn<double>("gmacs");
    // timm model cards (GMACs at 224x224).
    QTest::newRow("vit-ti16") << "vit-ti16" << 1.26;
    QTest::newRow("vit-s16") << "vit-s16" << 4.61;
    QTest::newRow("vit-b32") << "vit-b32" << 4.41;
    QTest::newRow("vit-l16") << "vit-l16" << 61.6;
  }
  void otherTimmMacs() {
    QFETCH(QString, preset);
    QFETCH(double, gmacs);
    const auto s = vit::summarize(vit::preset(preset.toStdString()).config);
    QVERIFY2(std::abs(double(s.macs) / 1e9 - gmacs) < 0.006 * gmacs, std::to_string(s.macs).c_str());
  }

  void attentionMatmulsAreCounted() {
    vit::ViTConfig c = vit::preset("vit-ti16").config;
    const auto s = vit::summarize(c);
    const int64_t T = 197, hd = 64, H = 3;
    int found = 0;
    for (const auto& row : s.layers) {
      if (row.name == "blocks.0.attn.qk" || row.name == "blocks.0.attn.av") {
        QCOMPARE(row.macs, H * T * T * hd);
        ++found;
      }
    }
    QCOMPARE(found, 2);
  }

  void outputShapesFollowTheConfig() {
    vit::ViTConfig c = vit::preset("keras-cifar").config;
    const auto s = vit::summarize(c);
    auto row = [&](const std::string& name) {
      for (const auto& r : s.layers)
        if (r.name == name) return r;
      return vit::LayerSummary{};
    };
    QCOMPARE(row("patch_embed.proj").output_shape, (std::vector<int64_t>{64, 12, 12}));
    QCOMPARE(row("blocks.7.attn.qk").output_shape, (std::vector<int64_t>{4, 145, 145}));
    QCOMPARE(row("blocks.7.mlp.fc1").output_shape, (std::vector<int64_t>{145, 128}));
    QCOMPARE(row("head").output_shape, (std::vector<int64_t>{10}));

    c.pool = vit::Pool::Flatten;
    c.class_token = false;
    c.head_hidden = {2048, 1024};
    const auto flat = vit::summarize(c);
    QCOMPARE(flat.layers.back().name, std::string("head"));
    const auto& fc = flat.layers[flat.layers.size() - 3];
    QCOMPARE(fc.name, std::string("head_mlp.0"));
    QCOMPARE(fc.params, int64_t(144) * 64 * 2048 + 2048);  // Flatten(144 x 64) -> Dense(2048)
  }

  void invalidConfigThrows() {
    vit::ViTConfig c;
    c.heads = 5;
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, vit::summarize(c));
  }

  // The largest config check() accepts (a config.json can hold it): its MACs exceed 2^63, and
  // the flatten head's input (tokens x dim) exceeds an int. Counting used to overflow (undefined
  // behaviour, found by fuzzing config.json); now the totals saturate and the parts are exact.
  void largestValidConfigSaturates() {
    vit::ViTConfig c;
    c.image_size = 4096;
    c.patch_size = 1;
    c.in_channels = 64;
    c.num_classes = 1000000;
    c.dim = 16384;
    c.heads = 16;
    c.depth = 256;
    c.mlp_hidden = 131072;
    c.pool = vit::Pool::Flatten;
    c.head_hidden = {131072};
    const auto s = vit::summarize(c);
    const int64_t max = std::numeric_limits<int64_t>::max();
    QCOMPARE(s.macs, max);
    QCOMPARE(s.flops, max);
    const int64_t tokens = int64_t(4096) * 4096 + 1;
    QCOMPARE(s.layers[2].params, tokens * 16384);  // pos_embed
    const auto& head_mlp = s.layers[s.layers.size() - 2];
    QCOMPARE(head_mlp.name, std::string("head_mlp.0"));
    QCOMPARE(head_mlp.params, tokens * 16384 * 131072 + 131072);
    QVERIFY(s.params > head_mlp.params && s.params < max);
  }

  void jsonHasTheContractKeys() {
    const auto j = vit::to_json(vit::summarize(vit::preset("vit-ti16").config));
    for (const char* key : {"params", "trainable_params", "macs", "flops", "layers", "config"})
      QVERIFY2(j.contains(key), key);
    QCOMPARE(j["params"].get<int64_t>(), int64_t(5'717'416));
    QCOMPARE(j["flops"].get<int64_t>(), 2 * j["macs"].get<int64_t>());
    const auto& first = j["layers"].at(0);
    for (const char* key : {"name", "type", "output_shape", "params", "macs"})
      QVERIFY2(first.contains(key), key);
    QCOMPARE(first["name"].get<std::string>(), std::string("patch_embed.proj"));
  }

  void formatting() {
    QCOMPARE(vit::with_commas(86567656), std::string("86,567,656"));
    QCOMPARE(vit::with_commas(999), std::string("999"));
    QCOMPARE(vit::with_commas(-1000), std::string("-1,000"));
    QCOMPARE(vit::si(17.58274e9), std::string("17.58 G"));
    const std::string table = vit::format_table(vit::summarize(vit::preset("vit-b16").config));
    QVERIFY(table.find("86,567,656") != std::string::npos);
    QVERIFY(table.find("blocks.11.mlp.fc2") != std::string::npos);
  }
};

QTEST_APPLESS_MAIN(TstSummary)
#include "tst_summary.moc"
