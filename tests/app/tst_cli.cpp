// The `vit` command line as other tools call it: JSON output and exit codes.
#include <QtTest>

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>

namespace {

struct Result {
  int code = -1;
  QByteArray out, err;
};

Result run_vit(const QStringList& args) {
  QProcess p;
  const QString binary = qEnvironmentVariable("VIT_BINARY");
  p.start(binary, args);
  if (!p.waitForFinished(120000)) qFatal("vit did not finish: %s", qPrintable(args.join(' ')));
  return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1, p.readAllStandardOutput(),
          p.readAllStandardError()};
}

}  // namespace

class TstCli : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() { QVERIFY2(!qEnvironmentVariable("VIT_BINARY").isEmpty(), "VIT_BINARY unset"); }

  void summaryJson() {
    const auto r = run_vit({"summary", "--preset", "vit-b16", "--json"});
    QCOMPARE(r.code, 0);
    QJsonParseError error;
    const auto doc = QJsonDocument::fromJson(r.out, &error);
    QVERIFY2(error.error == QJsonParseError::NoError, qPrintable(error.errorString()));
    const auto o = doc.object();
    QCOMPARE(o["params"].toInteger(), 86'567'656);  // timm vit_base_patch16_224
    QCOMPARE(o["trainable_params"].toInteger(), 86'567'656);
    QCOMPARE(o["flops"].toInteger(), 2 * o["macs"].toInteger());
    QVERIFY(std::abs(o["macs"].toDouble() / 17.58e9 - 1.0) < 0.001);  // timm: 17.6 GMACs
    const auto layers = o["layers"].toArray();
    QVERIFY(layers.size() > 12 * 8);
    const auto first = layers.first().toObject();
    for (const char* key : {"name", "type", "output_shape", "params", "macs"})
      QVERIFY2(first.contains(key), key);
    QCOMPARE(first["output_shape"].toArray().size(), 3);
  }

  void overridesApply() {
    const auto r = run_vit({"summary", "--preset", "vit-ti16", "--image-size", "32", "--patch-size",
                        "4", "--dim", "48", "--depth", "2", "--heads", "3", "--classes", "7",
                        "--channels", "1", "--json"});
    QCOMPARE(r.code, 0);
    const auto o = QJsonDocument::fromJson(r.out).object();
    const auto cfg = o["config"].toObject();
    QCOMPARE(cfg["image_size"].toInt(), 32);
    QCOMPARE(cfg["dim"].toInt(), 48);
    QCOMPARE(cfg["mlp_hidden"].toInt(), 192);  // keeps the preset's 4x ratio
    QCOMPARE(o["num_tokens"].toInt(), 65);
    QCOMPARE(o["layers"].toArray().last().toObject()["output_shape"].toArray().at(0).toInt(), 7);
  }

  void humanTable() {
    const auto r = run_vit({"summary", "--preset", "keras-cifar"});
    QCOMPARE(r.code, 0);
    QVERIFY(r.out.contains("284,874"));
    QVERIFY(r.out.contains("blocks.7.mlp.fc2"));
  }

  void badUsageExitsWithTwo_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<QString>("mentions");
    QTest::newRow("unknown flag") << QStringList{"summary", "--bogus"} << "--bogus";
    QTest::newRow("not a number") << QStringList{"summary", "--dim", "wide"} << "--dim";
    QTest::newRow("dim vs heads") << QStringList{"summary", "--dim", "100", "--heads", "3"}
                                  << "dim 100 is not divisible by heads 3";
    QTest::newRow("patch vs image") << QStringList{"summary", "--image-size", "30"}
                                    << "image_size 30";
    QTest::newRow("zero depth") << QStringList{"summary", "--depth", "0"} << "depth";
    QTest::newRow("dropout 1") << QStringList{"summary", "--dropout", "1"} << "dropout";
    QTest::newRow("unknown preset") << QStringList{"summary", "--preset", "vit-x"} << "vit-x";
    QTest::newRow("unknown pool") << QStringList{"summary", "--pool", "max"} << "--pool";
    QTest::newRow("unknown command") << QStringList{"summarize"} << "summarize";
    QTest::newRow("no command") << QStringList{} << "subcommand";
  }
  void badUsageExitsWithTwo() {
    QFETCH(QStringList, args);
    QFETCH(QString, mentions);
    const auto r = run_vit(args);
    QCOMPARE(r.code, 2);
    QVERIFY(r.out.isEmpty());
    const QString err = QString::fromUtf8(r.err).trimmed();
    QVERIFY2(!err.contains('\n'), qPrintable(err));  // one line
    QVERIFY2(err.contains(mentions), qPrintable(err));
  }

  void trainJsonContractAndEval() {
    // A smoke run on the real Debian Fashion-MNIST with a tiny model: the contract other tools
    // rely on, not accuracy.
    QTemporaryDir tmp;
    const QString run = tmp.filePath("run");
    const auto r = run_vit({"train", "--dim", "16", "--depth", "1", "--heads", "2", "--patch-size",
                            "7", "--max-steps", "3", "--batch-size", "32", "--out", run, "--json",
                            "--augment", "crop", "--erase", "0.3"});
    QVERIFY2(r.code == 0, r.err.constData());
    QFile config(run + "/config.json");  // the preset and the override both reach the run's record
    QVERIFY(config.open(QIODevice::ReadOnly));
    const auto augment = QJsonDocument::fromJson(config.readAll()).object()["train"].toObject()["augment"].toObject();
    QCOMPARE(augment["crop"].toInt(), 4);  // 28 px: 1/8 of the side, rounded
    QVERIFY(augment["hflip"].toBool());
    QCOMPARE(augment["erase"].toDouble(), 0.3);
    const auto lines = r.out.trimmed().split('\n');
    const auto o = QJsonDocument::fromJson(lines.last()).object();
    for (const char* key : {"run_dir", "epochs", "steps", "test_accuracy", "test_top5_accuracy",
                            "images_per_second"})
      QVERIFY2(o.contains(key), key);
    QCOMPARE(o["steps"].toInt(), 3);
    QCOMPARE(o["stop_reason"].toString(), QString("max_steps"));
    QCOMPARE(o["run_dir"].toString(), run);
    QVERIFY(o["images_per_second"].toDouble() > 0);
    const double acc = o["test_accuracy"].toDouble();
    QVERIFY(acc >= 0.0 && acc <= 1.0);
    QVERIFY(o["test_top5_accuracy"].toDouble() >= acc);
    QVERIFY(QFile::exists(run + "/config.json"));
    QVERIFY(QFile::exists(run + "/checkpoints/last.safetensors"));

    const auto e = run_vit({"eval", "--run", run, "--json"});
    QVERIFY2(e.code == 0, e.err.constData());
    const auto eo = QJsonDocument::fromJson(e.out).object();
    for (const char* key : {"loss", "accuracy", "top5_accuracy"}) QVERIFY2(eo.contains(key), key);
    QCOMPARE(eo["count"].toInt(), 10000);  // the Fashion-MNIST test split
  }

  void trainBadUsageExitsWithTwo_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<QString>("mentions");
    QTest::newRow("zero epochs") << QStringList{"train", "--epochs", "0"} << "epochs";
    QTest::newRow("bad lr") << QStringList{"train", "--lr", "-1"} << "lr";
    QTest::newRow("unknown data set kind") << QStringList{"train", "--dataset", "mnist:/x"} << "mnist";
    QTest::newRow("unknown augment") << QStringList{"train", "--augment", "heavy"} << "--augment";
    QTest::newRow("erase above 1") << QStringList{"train", "--erase", "1.5"} << "--erase";
    QTest::newRow("resume and out") << QStringList{"train", "--resume", "a", "--out", "b"} << "--resume";
    QTest::newRow("eval without run") << QStringList{"eval"} << "--run";
  }
  void trainBadUsageExitsWithTwo() {
    QFETCH(QStringList, args);
    QFETCH(QString, mentions);
    const auto r = run_vit(args);
    QCOMPARE(r.code, 2);
    const QString err = QString::fromUtf8(r.err).trimmed().split('\n').last();
    QVERIFY2(err.contains(mentions), qPrintable(err));
  }

  void missingDataDirectoryIsARuntimeError() {
    const auto r = run_vit({"train", "--dataset", "cifar10:/nonexistent/cifar", "--max-steps", "1"});
    QCOMPARE(r.code, 1);
    QVERIFY2(r.err.contains("/nonexistent/cifar"), r.err.constData());
  }

  void helpExitsWithZero() {
    const auto r = run_vit({"summary", "--help"});
    QCOMPARE(r.code, 0);
    QVERIFY(r.out.contains("--preset"));
  }

  void benchmarkReportsThroughput() {
    const auto r = run_vit({"summary", "--preset", "vit-ti16", "--depth", "1", "--image-size", "64",
                        "--benchmark", "--threads", "1", "--json"});
    QCOMPARE(r.code, 0);
    const auto bench = QJsonDocument::fromJson(r.out).object()["benchmark"].toObject();
    QCOMPARE(bench["threads"].toInt(), 1);
    const auto rows = bench["forward"].toArray();
    QCOMPARE(rows.size(), 2);
    QCOMPARE(rows[1].toObject()["batch"].toInt(), 8);
    QVERIFY(rows[0].toObject()["gflops"].toDouble() > 0.0);
    QVERIFY(rows[0].toObject()["latency_ms"].toDouble() > 0.0);
  }

  // ---- vit predict / vit attention (a tiny Fashion-MNIST run trained for 3 steps)

  void predictJsonContract() {
    const QString run = tiny_run();
    const QString shirt = gray_image("shirt.pgm", 3), boot = gray_image("boot.pgm", 20);
    const auto r = run_vit({"predict", "--run", run, "--image", shirt, "--topk", "3", "--logits",
                            "--json"});
    QVERIFY2(r.code == 0, r.err.constData());
    const auto o = last_json(r.out);
    const auto preds = o["predictions"].toArray();  // single image: also at the top level
    QCOMPARE(preds.size(), 3);
    double previous = 1.0;
    for (const auto& v : preds) {
      const auto p = v.toObject();
      for (const char* key : {"label", "index", "probability"}) QVERIFY2(p.contains(key), key);
      QVERIFY(p["probability"].toDouble() <= previous);
      previous = p["probability"].toDouble();
    }
    QCOMPARE(o["logits"].toArray().size(), 10);
    const auto images = o["images"].toArray();
    QCOMPARE(images.size(), 1);
    QCOMPARE(images[0].toObject()["path"].toString(), shirt);
    QCOMPARE(images[0].toObject()["predictions"].toArray(), preds);

    // Several images: one entry each; the weights file alone gives the same numbers.
    const auto m = run_vit({"predict", "--weights", run + "/checkpoints/last.safetensors", "--image",
                            shirt, "--image", boot, "--json"});
    QVERIFY2(m.code == 0, m.err.constData());
    const auto mo = last_json(m.out);
    QCOMPARE(mo["images"].toArray().size(), 2);
    QVERIFY(!mo.contains("predictions"));
    const auto first = mo["images"].toArray()[0].toObject()["predictions"].toArray();
    QCOMPARE(first.size(), 5);  // default top-5
    QCOMPARE(first[0].toObject()["index"].toInt(), preds[0].toObject()["index"].toInt());
    QVERIFY(!mo["images"].toArray()[0].toObject().contains("logits"));

    const auto human = run_vit({"predict", "--run", run, "--image", shirt});
    QCOMPARE(human.code, 0);
    QVERIFY(human.out.contains(preds[0].toObject()["label"].toString().toUtf8()));
  }

  void predictReportsBadImages_data() {
    QTest::addColumn<QString>("file");
    QTest::addColumn<QString>("mentions");
    QTest::newRow("not an image") << "notes.png" << "PNG, JPEG";
    QTest::newRow("empty") << "empty.png" << "empty";
    QTest::newRow("missing") << "missing.png" << "no such file";
    QTest::newRow("huge") << "huge.png" << "megapixels";
  }
  void predictReportsBadImages() {
    QFETCH(QString, file);
    QFETCH(QString, mentions);
    const QString run = tiny_run();
    const QString dir = QFileInfo(run).path();
    write_file(dir + "/notes.png", "not an image\n");
    write_file(dir + "/empty.png", "");
    // A PNG signature and an IHDR chunk claiming 50000 x 50000 pixels: refused before decoding.
    write_file(dir + "/huge.png", QByteArray::fromHex("89504e470d0a1a0a0000000d49484452") +
                                      QByteArray::fromHex("0000c3500000c350080200000000000000"));
    const QString bad = dir + "/" + file, good = gray_image("good.pgm", 5);
    const auto r = run_vit({"predict", "--run", run, "--image", good, "--image", bad, "--json"});
    QCOMPARE(r.code, 1);
    const QString err = QString::fromUtf8(r.err).trimmed().split('\n').last();
    QVERIFY2(err.contains(bad) && err.contains(mentions), qPrintable(err));
    const auto images = last_json(r.out)["images"].toArray();  // the good image still answered
    QCOMPARE(images.size(), 2);
    QCOMPARE(images[0].toObject()["predictions"].toArray().size(), 5);
    QVERIFY(images[1].toObject()["error"].toString().contains(mentions));

    const auto a = run_vit({"attention", "--run", run, "--image", bad, "--out", dir + "/x.png"});
    QCOMPARE(a.code, 1);
    QVERIFY2(a.err.contains(bad.toUtf8()), a.err.constData());
  }

  void attentionWritesAHeatmap_data() {
    QTest::addColumn<QStringList>("flags");
    QTest::addColumn<int>("layer");
    QTest::newRow("last block, mean of heads") << QStringList{} << 1;
    QTest::newRow("block 0, head 1") << QStringList{"--layer", "0", "--head", "1"} << 0;
    QTest::newRow("rollout, max, discard") << QStringList{"--rollout", "--fusion", "max", "--discard", "0.9"} << 1;
    QTest::newRow("gradient rollout for a class")
        << QStringList{"--gradient", "--class", "Sneaker"} << 1;
    QTest::newRow("a patch's row") << QStringList{"--query-patch", "5", "--layer", "0"} << 0;
  }
  void attentionWritesAHeatmap() {
    QFETCH(QStringList, flags);
    QFETCH(int, layer);
    const QString run = tiny_run();
    const QString out = QFileInfo(run).path() + "/heat.png";
    QFile::remove(out);
    const auto r = run_vit(QStringList{"attention", "--run", run, "--image",
                                       gray_image("item.pgm", 7), "--out", out, "--json"} + flags);
    QVERIFY2(r.code == 0, r.err.constData());
    QFile png(out);
    QVERIFY(png.open(QIODevice::ReadOnly));
    QVERIFY(png.read(8) == QByteArray::fromHex("89504e470d0a1a0a"));
    const auto o = last_json(r.out);
    QCOMPARE(o["layer"].toInt(), layer);
    QCOMPARE(o["grid"].toInt(), 4);  // 28 / 7
    const auto map = o["map"].toArray();
    QCOMPARE(map.size(), 4);
    QCOMPARE(map[0].toArray().size(), 4);
    QCOMPARE(o["width"].toInt(), 224);  // 28 px shown 8x larger
    if (flags.contains("--gradient")) QCOMPARE(o["target_class"].toInt(), 7);
    if (flags.contains("--rollout")) {
      // Rollout rows are distributions: the class token's share of the patches is at most 1.
      double sum = 0;
      for (const auto& row : map)
        for (const auto& v : row.toArray()) sum += v.toDouble();
      QVERIFY(sum > 0.0 && sum <= 1.0 + 1e-5);
    }
  }

  void predictAndAttentionBadUsage_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<QString>("mentions");
    const QStringList att{"attention", "--run", "RUN", "--image", "IMG"};
    QTest::newRow("no weights") << QStringList{"predict", "--image", "IMG"} << "--run";
    QTest::newRow("run and weights") << QStringList{"predict", "--run", "RUN", "--weights", "w", "--image", "IMG"} << "--weights";
    QTest::newRow("no image") << QStringList{"predict", "--run", "RUN"} << "--image";
    QTest::newRow("topk 0") << QStringList{"predict", "--run", "RUN", "--image", "IMG", "--topk", "0"} << "--topk";
    QTest::newRow("no out") << att << "--out";
    QTest::newRow("bad out type") << att + QStringList{"--out", "x.txt"} << ".png";
    QTest::newRow("unknown fusion") << att + QStringList{"--out", "x.png", "--fusion", "avg"} << "--fusion";
    QTest::newRow("head and fusion") << att + QStringList{"--out", "x.png", "--head", "0", "--fusion", "max"} << "--fusion";
    QTest::newRow("discard without rollout") << att + QStringList{"--out", "x.png", "--discard", "0.5"} << "--rollout";
    QTest::newRow("discard 1") << att + QStringList{"--out", "x.png", "--rollout", "--discard", "1"} << "--discard";
    QTest::newRow("class without gradient") << att + QStringList{"--out", "x.png", "--class", "1"} << "--gradient";
    QTest::newRow("layer past the end") << att + QStringList{"--out", "x.png", "--layer", "9"} << "layer 9";
    QTest::newRow("head past the end") << att + QStringList{"--out", "x.png", "--head", "5"} << "head 5";
    QTest::newRow("unknown class") << att + QStringList{"--out", "x.png", "--gradient", "--class", "Hat"} << "Hat";
  }
  void predictAndAttentionBadUsage() {
    QFETCH(QStringList, args);
    QFETCH(QString, mentions);
    const QString run = tiny_run(), image = gray_image("usage.pgm", 1);
    for (auto& a : args) {
      if (a == "RUN") a = run;
      if (a == "IMG") a = image;
    }
    const auto r = run_vit(args);
    QCOMPARE(r.code, 2);
    const QString err = QString::fromUtf8(r.err).trimmed();
    QVERIFY2(!err.contains('\n'), qPrintable(err));
    QVERIFY2(err.contains(mentions), qPrintable(err));
  }

 private:
  // A run directory trained once per test process: dim 16, depth 2, 3 steps.
  static QString tiny_run() {
    static QTemporaryDir dir;
    static QString run;
    if (!run.isEmpty()) return run;
    const QString out = dir.filePath("run");
    const auto r = run_vit({"train", "--dim", "16", "--depth", "2", "--heads", "2", "--patch-size",
                            "7", "--max-steps", "3", "--batch-size", "32", "--out", out, "--json"});
    if (r.code != 0) qFatal("training the tiny run failed: %s", r.err.constData());
    run = out;
    return run;
  }

  // A 28x28 gray PGM (OpenCV reads PNM) with a bright square at `offset`, next to the run.
  static QString gray_image(const QString& name, int offset) {
    QByteArray pixels(28 * 28, char(10));
    for (int y = offset; y < std::min(28, offset + 8); ++y)
      for (int x = offset; x < std::min(28, offset + 8); ++x) pixels[y * 28 + x] = char(220);
    const QString path = QFileInfo(tiny_run()).path() + "/" + name;
    write_file(path, QByteArray("P5 28 28 255\n") + pixels);
    return path;
  }

  static void write_file(const QString& path, const QByteArray& bytes) {
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly) || f.write(bytes) != bytes.size())
      qFatal("cannot write %s", qPrintable(path));
  }

  static QJsonObject last_json(const QByteArray& out) {
    return QJsonDocument::fromJson(out.trimmed().split('\n').last()).object();
  }
};

QTEST_GUILESS_MAIN(TstCli)
#include "tst_cli.moc"
