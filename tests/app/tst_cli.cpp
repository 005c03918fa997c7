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
                            "7", "--max-steps", "3", "--batch-size", "32", "--out", run, "--json"});
    QVERIFY2(r.code == 0, r.err.constData());
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
};

QTEST_GUILESS_MAIN(TstCli)
#include "tst_cli.moc"
