// ViTConfig validation, presets and JSON round trip (torch-free).
#include <QtTest>

#include "config_json.h"
#include "vit_config.h"

using vit::ViTConfig;

Q_DECLARE_METATYPE(ViTConfig)

class TstVitConfig : public QObject {
  Q_OBJECT
 private slots:
  void presetsAreValid() {
    QVERIFY(vit::presets().size() >= 7);
    for (const auto& p : vit::presets()) {
      const auto errors = vit::validate(p.config);
      QVERIFY2(errors.empty(), (p.name + ": " + (errors.empty() ? "" : errors[0].message)).c_str());
    }
    QCOMPARE(vit::preset(vit::kDefaultPreset).config.in_channels, 1);  // Fashion-MNIST is gray
    QCOMPARE(vit::preset(vit::kDefaultPreset).config.image_size, 28);
  }

  void unknownPresetNamesTheKnownOnes() {
    try {
      vit::preset("vit-h14");
      QFAIL("unknown preset accepted");
    } catch (const std::invalid_argument& e) {
      const QString msg = e.what();
      QVERIFY(msg.contains("vit-h14"));
      QVERIFY(msg.contains("vit-b16"));
      QVERIFY(msg.contains("keras-cifar"));
    }
  }

  void invalidConfigIsRejected_data() {
    QTest::addColumn<ViTConfig>("config");
    QTest::addColumn<QString>("field");
    QTest::addColumn<QString>("hint");  // part of the valid alternative the message must offer
    auto base = [] { return vit::preset("vit-ti16").config; };
    ViTConfig c;
    c = base(); c.dim = 100; c.heads = 3;
    QTest::newRow("dim not divisible by heads") << c << "dim" << "use dim 99 or 102";
    c = base(); c.image_size = 30; c.patch_size = 4;
    QTest::newRow("image not divisible by patch") << c << "image_size" << "use image_size 28 or 32";
    c = base(); c.image_size = 28; c.patch_size = 32;
    QTest::newRow("patch larger than image") << c << "patch_size" << "1, 2, 4, 7, 14, 28";
    c = base(); c.dim = 0;
    QTest::newRow("zero dim") << c << "dim" << "positive";
    c = base(); c.depth = -1;
    QTest::newRow("negative depth") << c << "depth" << "positive";
    c = base(); c.heads = 0;
    QTest::newRow("zero heads") << c << "heads" << "positive";
    c = base(); c.patch_size = 0;
    QTest::newRow("zero patch") << c << "patch_size" << "positive";
    c = base(); c.image_size = -224;
    QTest::newRow("negative image") << c << "image_size" << "positive";
    c = base(); c.num_classes = 0;
    QTest::newRow("zero classes") << c << "num_classes" << "positive";
    c = base(); c.in_channels = 0;
    QTest::newRow("zero channels") << c << "in_channels" << "positive";
    c = base(); c.mlp_hidden = 0;
    QTest::newRow("zero mlp") << c << "mlp_hidden" << "positive";
    c = base(); c.dim = 1 << 20;
    QTest::newRow("absurd dim") << c << "dim" << "too large";
    c = base(); c.dropout = 1.0;
    QTest::newRow("dropout 1") << c << "dropout" << "[0, 1)";
    c = base(); c.dropout = -0.1;
    QTest::newRow("negative dropout") << c << "dropout" << "[0, 1)";
    c = base(); c.attn_dropout = std::nan("");
    QTest::newRow("NaN attention dropout") << c << "attn_dropout" << "[0, 1)";
    c = base(); c.drop_path = 1.5;
    QTest::newRow("drop_path 1.5") << c << "drop_path" << "[0, 1)";
    c = base(); c.head_dropout = 1.0;
    QTest::newRow("head_dropout 1") << c << "head_dropout" << "[0, 1)";
    c = base(); c.ln_eps = 0.0;
    QTest::newRow("zero eps") << c << "ln_eps" << "1e-6";
    c = base(); c.class_token = false;
    QTest::newRow("token pool without token") << c << "pool" << "mean";
    c = base(); c.head_hidden = {2048, 0};
    QTest::newRow("zero head width") << c << "head_hidden" << "2048,1024";
  }

  void invalidConfigIsRejected() {
    QFETCH(ViTConfig, config);
    QFETCH(QString, field);
    QFETCH(QString, hint);
    const auto errors = vit::validate(config);
    QVERIFY(!errors.empty());
    QCOMPARE(QString::fromStdString(errors.front().field), field);
    const QString message = QString::fromStdString(errors.front().message);
    QVERIFY2(message.startsWith(field), qPrintable(message));  // names the field first
    QVERIFY2(message.contains(hint), qPrintable(message));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, vit::check(config));
  }

  void everyBrokenRuleIsReported() {
    ViTConfig c = vit::preset("vit-ti16").config;
    c.dim = 100; c.heads = 3; c.dropout = 2.0; c.depth = 0;
    QStringList fields;
    for (const auto& e : vit::validate(c)) fields << QString::fromStdString(e.field);
    QVERIFY(fields.contains("dim"));
    QVERIFY(fields.contains("dropout"));
    QVERIFY(fields.contains("depth"));
  }

  void jsonRoundTrip() {
    for (const auto& p : vit::presets()) {
      ViTConfig c = p.config;
      c.head_hidden = {32, 16};
      c.pool = vit::Pool::Mean;
      c.drop_path = 0.125;
      const ViTConfig back = vit::config_from_json(vit::to_json(c));
      QVERIFY2(back == c, p.name.c_str());
    }
  }

  void jsonRejectsUnknownFieldsAndWrongTypes() {
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument,
                             vit::config_from_json(nlohmann::json{{"dimm", 3}}));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument,
                             vit::config_from_json(nlohmann::json{{"dim", "wide"}}));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument,
                             vit::config_from_json(nlohmann::json{{"pool", "max"}}));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, vit::config_from_json(nlohmann::json::array()));
    // Missing fields keep the base values.
    const ViTConfig c = vit::config_from_json(nlohmann::json{{"depth", 3}});
    QCOMPARE(c.depth, 3);
    QCOMPARE(c.dim, ViTConfig{}.dim);
  }
};

QTEST_APPLESS_MAIN(TstVitConfig)
#include "tst_vit_config.moc"
