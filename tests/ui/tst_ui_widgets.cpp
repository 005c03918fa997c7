// Widgets of ui/: the hyperparameter panel validates with the core's rules and shows each message
// under its field; the curves smooth like TensorBoard, batch redraws and export what they show;
// the summary view follows the config. Runs offscreen.
#include <qcustomplot.h>

#include <QCheckBox>
#include <QClipboard>
#include <QComboBox>
#include <QGuiApplication>
#include <QLabel>
#include <QLineEdit>
#include <QDropEvent>
#include <QListWidget>
#include <QMimeData>
#include <QProcess>
#include <QRegularExpression>
#include <QPushButton>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QSpinBox>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QtTest>

#include "attention_view.h"
#include "config_panel.h"
#include "curves_view.h"
#include "evaluation_view.h"
#include "predictions_view.h"
#include "run_comparison.h"
#include "run_log.h"
#include "summary_view.h"
#include "training_status.h"

#include <cmath>
#include <fstream>

namespace {

// A run directory as `vit train` leaves it, without weights: config.json and the two logs.
// Epoch e has val top-1 `acc0 + 0.1 * e`, lasts `seconds`, and ends at step 10 * (e + 1).
void writeRun(const QString& dir, int dim, double lr, int epochs, double acc0, double seconds,
              double testAccuracy = -1) {
  QDir().mkpath(dir);
  vit::ViTConfig m = vit::preset("fmnist-small").config;
  m.dim = dim;
  vit::TrainConfig t;
  t.lr = lr;
  t.epochs = epochs;
  vit::RunData data;
  data.spec = "fashion-mnist";
  std::ofstream(QString(dir + "/config.json").toStdString())
      << vit::run_config_json(m, t, vit::Normalization{}, data).dump(2);
  std::ofstream metrics(QString(dir + "/metrics.csv").toStdString());
  metrics << vit::kMetricsHeader << "\n";
  std::ofstream steps(QString(dir + "/steps.csv").toStdString());
  steps << vit::kStepsHeader << "\n";
  double elapsed = 0;
  for (int e = 0; e < epochs; ++e) {
    for (int k = 1; k <= 2; ++k) {
      elapsed += seconds / 2;
      steps << 10 * e + 5 * k << "," << e << "," << 2.0 / (e + k) << ",0.5," << lr << ",100," << elapsed << "\n";
    }
    metrics << e << "," << 1.0 / (e + 1) << ",0.5,0.9," << 1.2 / (e + 1) << "," << acc0 + 0.1 * e << ",0.95," << lr
            << "," << seconds << "\n";
  }
  if (testAccuracy >= 0)
    std::ofstream(QString(dir + "/test.json").toStdString()) << "{\"accuracy\": " << testAccuracy << "}";
}

}  // namespace

class TestUiWidgets : public QObject {
  Q_OBJECT

 private slots:
  void panelStartsOnTheDefaultPreset() {
    ConfigPanel panel;
    QCOMPARE(panel.presetName(), QString(vit::kDefaultPreset));
    QVERIFY(panel.isValid());
    QCOMPARE(panel.datasetSpec(), QString("fashion-mnist"));
    const vit::ViTConfig c = panel.modelConfig();
    vit::ViTConfig expected = vit::preset(vit::kDefaultPreset).config;
    QCOMPARE(c.dim, expected.dim);
    QCOMPARE(c.in_channels, 1);  // Fashion-MNIST is grayscale
    QCOMPARE(c.num_classes, 10);
    QCOMPARE(panel.trainConfig().epochs, vit::TrainConfig{}.epochs);
  }

  // The message is the core's own (vit::validate), shown under the field it names.
  void invalidHeadsShowsTheCoresMessage() {
    ConfigPanel panel;
    QSignalSpy validity(&panel, &ConfigPanel::validityChanged);
    qobject_cast<QSpinBox*>(panel.field("heads"))->setValue(5);  // dim 96 % 5 != 0
    QVERIFY(!panel.isValid());
    QCOMPARE(validity.count(), 1);
    QCOMPARE(validity.at(0).at(0).toBool(), false);
    vit::ViTConfig broken = panel.modelConfig();
    const auto core = vit::validate(broken);
    QCOMPARE(core.size(), size_t(1));
    QCOMPARE(panel.errorFor(QString::fromStdString(core[0].field)), QString::fromStdString(core[0].message));
    QVERIFY(panel.errorFor("dim").contains("not divisible by heads 5"));
    QCOMPARE(panel.presetName(), QString());  // no longer a preset
    qobject_cast<QSpinBox*>(panel.field("heads"))->setValue(4);
    QVERIFY(panel.isValid());
    QCOMPARE(validity.count(), 2);
    QVERIFY(panel.errorFor("dim").isEmpty());
  }

  void invalidLearningRateNamesTheField() {
    ConfigPanel panel;
    qobject_cast<QLineEdit*>(panel.field("lr"))->setText("fast");
    QVERIFY(!panel.isValid());
    QVERIFY(panel.errorFor("lr").startsWith("lr must be"));
    qobject_cast<QLineEdit*>(panel.field("lr"))->setText("3e-4");
    QVERIFY(panel.isValid());
    QCOMPARE(panel.trainConfig().lr, 3e-4);
  }

  void imageFolderNeedsAFolderWithTwoClasses() {
    ConfigPanel panel;
    QTemporaryDir dir;
    QDir(dir.path()).mkpath("cats");
    panel.setImageFolder(dir.path());
    QVERIFY(!panel.isValid());
    QVERIFY(panel.errorFor("dataset_path").contains("at least two"));
    QDir(dir.path()).mkpath("dogs");
    panel.setImageFolder(dir.path());
    QVERIFY(panel.isValid());
    QCOMPARE(panel.datasetSpec(), "folder:" + dir.path());
    QCOMPARE(panel.modelConfig().num_classes, 2);
    QCOMPARE(panel.modelConfig().in_channels, 3);
  }

  void choosingAPresetFillsTheFields() {
    ConfigPanel panel;
    QSignalSpy changed(&panel, &ConfigPanel::configChanged);
    panel.applyPreset("keras-cifar");
    QVERIFY(changed.count() >= 1);
    const auto keras = vit::preset("keras-cifar").config;
    QCOMPARE(panel.modelConfig().patch_size, keras.patch_size);
    QCOMPARE(panel.modelConfig().head_hidden, keras.head_hidden);
    QCOMPARE(panel.presetName(), QString("keras-cifar"));
  }

  void stateRoundTrips() {
    ConfigPanel a;
    qobject_cast<QSpinBox*>(a.field("depth"))->setValue(6);
    qobject_cast<QLineEdit*>(a.field("weight_decay"))->setText("0.1");
    qobject_cast<QComboBox*>(a.field("augmentation"))->setCurrentText("light");
    QVERIFY(a.trainConfig().data_parallel);  // the default
    qobject_cast<QCheckBox*>(a.field("data_parallel"))->setChecked(false);
    QCOMPARE(a.trainConfig().precision, std::string("auto"));  // the default
    // ... shown with what it resolves to on this CPU (the bf16 probe, cpu_info.h)
    auto* precision = qobject_cast<QComboBox*>(a.field("precision"));
    QCOMPARE(precision->currentText(),
             QString("auto (%1 on this CPU)").arg(QString::fromStdString(vit::resolve_precision("auto"))));
    qobject_cast<QComboBox*>(a.field("precision"))->setCurrentText("fp32");
    ConfigPanel b;
    QVERIFY(b.restoreState(a.saveState()));
    QVERIFY(!b.trainConfig().data_parallel);
    QCOMPARE(b.trainConfig().precision, std::string("fp32"));
    QCOMPARE(b.modelConfig().depth, 6);
    QCOMPARE(b.trainConfig().weight_decay, 0.1);
    QCOMPARE(b.augmentation(), QString("light"));
    QVERIFY(!b.restoreState("not json"));
  }

  // The panel's editors come from the core's schema: every field it shows has one, with the
  // field's doc as tooltip; a valid config round-trips through the editors unchanged.
  void everySchemaFieldHasAnEditor() {
    ConfigPanel panel;
    int shown = 0;
    for (const auto& f : vit::vit_schema()) {
      if (f.spec.group == vit::FieldGroup::None) continue;
      QWidget* w = panel.field(QString::fromStdString(f.spec.name));
      QVERIFY2(w, f.spec.name.c_str());
      QCOMPARE(w->toolTip(), QString::fromStdString(f.spec.doc));
      ++shown;
    }
    for (const auto& f : vit::train_schema()) {
      if (f.spec.group == vit::FieldGroup::None) continue;
      QVERIFY2(panel.field(QString::fromStdString(f.spec.name)), f.spec.name.c_str());
      ++shown;
    }
    QVERIFY(shown >= 35);
    vit::ViTConfig m = vit::preset("keras-cifar").config;
    m.ln_eps = 1e-5;
    m.head_hidden = {48, 24};
    vit::TrainConfig t;
    t.augment.crop = 3;
    t.augment.erase = 0.25;
    t.threads = 2;
    t.log_every = 7;  // not shown: kept as given
    t.mean = {0.5f, 0.5f, 0.5f};
    t.std = {0.25f, 0.25f, 0.25f};
    t.dataset = "fashion-mnist";
    panel.setConfigs(m, t);
    const vit::ViTConfig m2 = panel.modelConfig();
    const vit::TrainConfig t2 = panel.trainConfig();
    QCOMPARE(m2.ln_eps, 1e-5);
    QVERIFY(m2.head_hidden == m.head_hidden);
    QCOMPARE(t2.augment.crop, 3);
    QCOMPARE(t2.augment.erase, 0.25);
    QCOMPARE(t2.threads, 2);
    QCOMPARE(t2.log_every, 7);
    QVERIFY(t2.std == t.std);
    QCOMPARE(panel.augmentation(), QString("custom"));
  }

  // Training messages go under the field they name, whatever their first word.
  void trainingMessagesGoUnderTheirField() {
    ConfigPanel panel;
    qobject_cast<QSpinBox*>(panel.field("crop"))->setValue(80);
    QVERIFY(panel.errorFor("crop").startsWith("crop must be"));
    QVERIFY(panel.errorFor("epochs").isEmpty());
    qobject_cast<QSpinBox*>(panel.field("crop"))->setValue(1);
    QVERIFY(panel.isValid());
    qobject_cast<QCheckBox*>(panel.field("freeze_backbone"))->setChecked(true);
    QVERIFY(panel.errorFor("freeze_backbone").contains("needs init_weights"));
    qobject_cast<QSpinBox*>(panel.field("epochs"))->setValue(0);  // explained, not clamped
    QVERIFY(panel.errorFor("epochs").contains("got 0"));
  }

  void summaryFollowsTheConfig() {
    SummaryView view;
    vit::ViTConfig c = vit::preset("vit-b16").config;
    view.setConfig(c);
    QCOMPARE(view.params(), qint64(86567656));  // timm vit_base_patch16_224
    QVERIFY(view.totals().contains("86,567,656"));
    QCOMPARE(view.table()->item(0, 0)->text(), QString("patch_embed.proj"));
    const int rows = view.table()->rowCount();
    c.depth = 6;
    view.setConfig(c);
    QVERIFY(view.table()->rowCount() < rows);
    QVERIFY(view.params() < 86567656);
    QVERIFY(!view.totals().contains("Training steps keep"));
    c.patch_drop = 0.5;  // the model is the same; its training steps see fewer patches
    view.setConfig(c);
    QVERIFY2(view.totals().contains("Training steps keep 98 of the 196 patches (patch dropout 0.5)"),
             qPrintable(view.totals()));
  }

  // TensorBoard: last = last * w + (1 - w) * v; shown = last / (1 - w^n).
  void smoothingIsTensorBoards() {
    const auto s = CurvesView::smooth({1.0, 2.0, 3.0}, 0.5);
    QCOMPARE(s.size(), size_t(3));
    QCOMPARE(s[0], 1.0);                           // 0.5 / 0.5
    QCOMPARE(s[1], (0.25 + 1.0) / 0.75);           // last = 0.25 + 1.0
    QCOMPARE(s[2], ((0.25 + 1.0) * 0.5 + 1.5) / 0.875);
    const auto raw = CurvesView::smooth({4.0, 1.0}, 0.0);
    QCOMPARE(raw[1], 1.0);
  }

  void curvesBatchRedrawsAndHoldEveryPoint() {
    CurvesView view;
    view.resize(800, 600);
    const int before = view.redraws();
    for (int i = 1; i <= 500; ++i) {
      vit::StepRow s;
      s.step = i;
      s.loss = 2.0 / i;
      s.lr = 1e-3;
      view.addStep(s);
    }
    QCOMPARE(view.redraws(), before);  // nothing drawn synchronously
    QTRY_COMPARE_WITH_TIMEOUT(view.drawnPoints("loss_ema"), 500, 2000);
    QVERIFY(view.redraws() - before <= 2);  // one batched redraw, not 500
    vit::EpochRow e;
    e.val_accuracy = 0.5;
    view.addEpoch(e);
    QTRY_COMPARE_WITH_TIMEOUT(view.drawnPoints("val_accuracy"), 1, 2000);
  }

  void curvesExport() {
    QTest::failOnWarning(QRegularExpression("QPainter|not active"));  // a PDF with no plots in it
    CurvesView view;
    view.resize(800, 600);
    std::vector<vit::StepRow> steps(3);
    for (int i = 0; i < 3; ++i) steps[size_t(i)].step = (i + 1) * 10, steps[size_t(i)].loss = 1.0 + i;
    std::vector<vit::EpochRow> epochs(1);
    epochs[0].val_accuracy = 0.75;
    view.setHistory(steps, epochs);
    QTemporaryDir dir;
    QCOMPARE(view.saveCsv(dir.filePath("s.csv"), dir.filePath("e.csv")), QString());
    QFile f(dir.filePath("s.csv"));
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QStringList lines = QString(f.readAll()).split('\n', Qt::SkipEmptyParts);
    QCOMPARE(lines.size(), 4);
    QVERIFY(lines[0].endsWith(",loss_smoothed"));
    QVERIFY(lines[3].startsWith("30,0,3,"));
    // The per-epoch export is a metrics.csv our own reader reads back.
    const auto epochBack = vit::read_metrics_csv(dir.filePath("e.csv").toStdString());
    QCOMPARE(epochBack.size(), size_t(1));
    QCOMPARE(epochBack[0].val_accuracy, 0.75);
    QCOMPARE(view.saveImage(dir.filePath("c.png")), QString());
    QVERIFY(QImage(dir.filePath("c.png")).width() > 100);
    QCOMPARE(view.savePdf(dir.filePath("c.pdf")), QString());
    QFile pdf(dir.filePath("c.pdf"));
    QVERIFY(pdf.open(QIODevice::ReadOnly));
    QVERIFY(pdf.read(5) == "%PDF-");
    QVERIFY(!view.saveImage("/nonexistent-dir/c.png").isEmpty());
  }


  // Defect 5: the per-epoch CSV is NAME-epochs.csv, not NAME-epochs.csv-epochs.csv.
  void csvExportNamesTheEpochFile() {
    QCOMPARE(CurvesView::epochsCsvPath("/tmp/run.csv"), QString("/tmp/run-epochs.csv"));
    QCOMPARE(CurvesView::epochsCsvPath("/tmp/run.CSV"), QString("/tmp/run-epochs.csv"));
    QCOMPARE(CurvesView::epochsCsvPath("/tmp/run"), QString("/tmp/run-epochs.csv"));
  }

  // Defect 2: a vector PDF whose text is at its screen size (it was ~150 pt), and a PNG at twice
  // the screen resolution with the run's name.
  void exportsAreReadable() {
    CurvesView view;
    view.resize(1000, 700);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    std::vector<vit::StepRow> steps(20);
    for (int i = 0; i < 20; ++i) steps[size_t(i)].step = (i + 1) * 10, steps[size_t(i)].loss = 2.0 / (i + 1), steps[size_t(i)].lr = 1e-3;
    std::vector<vit::EpochRow> epochs(3);
    for (int e = 0; e < 3; ++e) epochs[size_t(e)].epoch = e, epochs[size_t(e)].val_accuracy = 0.5 + 0.1 * e;
    view.setHistory(steps, epochs);
    view.setRunName("fmnist-small-20261201-101500");
    QTemporaryDir dir;
    QCOMPARE(view.saveImage(dir.filePath("c.png")), QString());
    const QImage png(dir.filePath("c.png"));
    QVERIFY(png.width() >= 2 * 2 * 480);  // two plots across, at 2x
    QVERIFY(view.exportTitle().contains("fmnist-small-20261201-101500"));
    int dark = 0;  // the title line holds text
    for (int x = 0; x < png.width() / 2; ++x)
      for (int y = 0; y < 40; ++y) dark += qGray(png.pixel(x, y)) < 100;
    QVERIFY(dark > 50);

    QCOMPARE(view.savePdf(dir.filePath("c.pdf")), QString());
    if (qEnvironmentVariableIsSet("VIT_KEEP_EXPORTS")) {  // to look at them
      QFile::copy(dir.filePath("c.pdf"), qEnvironmentVariable("VIT_KEEP_EXPORTS") + "/curves.pdf");
      QFile::copy(dir.filePath("c.png"), qEnvironmentVariable("VIT_KEEP_EXPORTS") + "/curves.png");
    }
    const QString pdftotext = QStandardPaths::findExecutable("pdftotext");
    if (pdftotext.isEmpty()) QSKIP("pdftotext (poppler-utils) is not installed: cannot measure the PDF's text");
    QProcess p;
    p.start(pdftotext, {"-bbox", dir.filePath("c.pdf"), "-"});
    QVERIFY(p.waitForFinished(30000));
    const QString html = QString::fromUtf8(p.readAllStandardOutput());
    // <word xMin=".." yMin=".." xMax=".." yMax="..">text</word>: heights in points.
    QRegularExpression word(R"re(<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>)re");
    QStringList words;
    double tallest = 0;
    QString tallestWord;
    for (auto it = word.globalMatch(html); it.hasNext();) {
      const auto m = it.next();
      // A word's size is its box's smaller side (axis titles on the left are set vertically).
      const double h = std::min(m.captured(4).toDouble() - m.captured(2).toDouble(),
                                m.captured(3).toDouble() - m.captured(1).toDouble());
      if (h > tallest) tallest = h, tallestWord = m.captured(5);
      words << m.captured(5);
    }
    QVERIFY2(words.contains("epoch") && words.contains("step"), qPrintable(words.join(' ')));  // text, not pixels
    QVERIFY2(tallest < 20, qPrintable(QString("tallest word '%1': %2 pt").arg(tallestWord).arg(tallest)));
    QVERIFY(words.contains("fmnist-small-20261201-101500:"));
  }

  // Defect 8: log scale keeps the first training point and the last validation points inside,
  // and Fit brings every point back after a zoom.
  void logScaleKeepsEveryPoint() {
    CurvesView view;
    view.resize(900, 600);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    std::vector<vit::StepRow> steps(50);
    for (int i = 0; i < 50; ++i) steps[size_t(i)].step = i + 1, steps[size_t(i)].loss = 2.5 * std::exp(-0.05 * i), steps[size_t(i)].lr = 1e-3;
    std::vector<vit::EpochRow> epochs(5);
    for (int e = 0; e < 5; ++e) epochs[size_t(e)].epoch = e, epochs[size_t(e)].loss = 1.0 / (e + 1), epochs[size_t(e)].val_loss = 0.9 / (e + 1);
    view.setHistory(steps, epochs);
    view.setSmoothing(0.0);
    view.setLogLoss(true);
    for (const char* g : {"loss", "loss_ema", "epoch_loss", "val_loss"})
      QTRY_VERIFY2_WITH_TIMEOUT(view.allPointsVisible(g), g, 2000);
    // Zoom in on one plot, then Fit.
    const auto plots = view.findChildren<QCustomPlot*>();
    QVERIFY(plots.size() == 4);
    for (QCustomPlot* p : plots) p->yAxis->setRange(0.5, 0.6);
    QVERIFY(!view.allPointsVisible("val_loss"));
    QPushButton* fit = nullptr;
    for (auto* b : view.findChildren<QPushButton*>()) if (b->text() == "Fit") fit = b;
    QVERIFY(fit);
    fit->click();
    for (const char* g : {"loss", "epoch_loss", "val_loss"}) QVERIFY2(view.allPointsVisible(g), g);
    view.setLogLoss(false);
    for (const char* g : {"loss", "epoch_loss", "val_loss", "val_accuracy"}) QTRY_VERIFY2_WITH_TIMEOUT(view.allPointsVisible(g), g, 2000);
  }

  // Defect 12: a curve of one point is drawn as a marker (a line needs two).
  void singlePointIsVisible() {
    CurvesView view;
    vit::StepRow s;
    s.step = 10, s.loss = 1.5, s.lr = 1e-3;
    view.setHistory({s}, {});
    QCOMPARE(view.drawnPoints("loss_ema"), 1);
    QVERIFY(view.drawsMarkers("loss_ema"));
    QVERIFY(view.drawsMarkers("lr"));
    QVERIFY(view.allPointsVisible("loss_ema"));
    vit::StepRow t = s;
    t.step = 20;
    view.setHistory({s, t}, {});
    QVERIFY(!view.drawsMarkers("loss_ema"));
  }

  // Defect 12: the Input line does not invent channels and classes before a folder is chosen.
  void inputLineWaitsForTheFolder() {
    ConfigPanel panel;
    QVERIFY(panel.inputDescription().contains("1 channel(s), 10 classes"));  // Fashion-MNIST
    qobject_cast<QComboBox*>(panel.field("dataset"))->setCurrentIndex(3);  // image folder, none chosen
    QVERIFY2(panel.inputDescription().contains("choose one"), qPrintable(panel.inputDescription()));
    QVERIFY(!panel.inputDescription().contains("classes,"));
  }

  // Defect 9: a truncated CIFAR batch is caught by the panel, before Start.
  void truncatedCifarIsCaught() {
    QTemporaryDir dir;
    const QString root = dir.filePath("cifar-10-batches-bin");
    QDir().mkpath(root);
    for (const char* name : {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                             "data_batch_5.bin", "test_batch.bin"}) {
      QFile f(root + "/" + name);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(QByteArray(2 * 3073, '\1'));  // two whole records
    }
    ConfigPanel panel;
    QCOMPARE(panel.setDatasetFolder(dir.path()), QString());  // recognized as CIFAR-10
    QCOMPARE(panel.datasetSpec(), "cifar10:" + dir.path());
    QVERIFY2(panel.isValid(), qPrintable(panel.errors().join("; ")));
    QVERIFY(panel.inputDescription().contains("3 channel(s), 10 classes"));
    QFile::resize(root + "/data_batch_3.bin", 3073 + 1000);  // a download cut short
    panel.setDatasetFolder(dir.path());
    QVERIFY(!panel.isValid());
    QVERIFY2(panel.errorFor("dataset_path").contains("data_batch_3.bin") &&
                 panel.errorFor("dataset_path").contains("truncated"),
             qPrintable(panel.errorFor("dataset_path")));
  }

  // Defect 12: a dropped folder that is no data set changes nothing, and says why.
  void droppedEmptyFolderIsRefused() {
    QTemporaryDir dir;
    ConfigPanel panel;
    const QString before = panel.datasetSpec();
    QSignalSpy refused(&panel, &ConfigPanel::dropRefused);
    QMimeData mime;
    mime.setUrls({QUrl::fromLocalFile(dir.path())});
    QDragEnterEvent enter(QPoint(5, 5), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(&panel, &enter);
    QVERIFY(enter.isAccepted());
    QDropEvent drop(QPointF(5, 5), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(&panel, &drop);
    QCOMPARE(refused.count(), 1);
    QVERIFY(refused.at(0).at(0).toString().contains("not a data set"));
    QCOMPARE(panel.datasetSpec(), before);
    QVERIFY(panel.isValid());
  }

  // Defect 12: impossible values are explained, not clamped; divisor lists are complete.
  void impossibleValuesAreExplained() {
    ConfigPanel panel;
    qobject_cast<QSpinBox*>(panel.field("batch_size"))->setValue(100000);
    QCOMPARE(panel.trainConfig().batch_size, 100000);
    QVERIFY2(panel.errorFor("batch_size").contains("100000"), qPrintable(panel.errorFor("batch_size")));
    qobject_cast<QSpinBox*>(panel.field("batch_size"))->setValue(64);
    qobject_cast<QSpinBox*>(panel.field("dim"))->setValue(100);
    qobject_cast<QSpinBox*>(panel.field("heads"))->setValue(3);
    const QString dim = panel.errorFor("dim");
    QVERIFY2(dim.contains("1, 2, 4, 5, 10, 20, 25, 50") && !dim.contains("..."), qPrintable(dim));
    qobject_cast<QLineEdit*>(panel.field("lr"))->setText("0");
    QVERIFY2(!panel.errorFor("lr").contains("0.000000"), qPrintable(panel.errorFor("lr")));
  }

  // Defect 12: no ETA once a run stops; a finished run shows 100%.
  void statusWithoutTrainingHasNoEta() {
    TrainingStatus status;
    status.setProgress(50, 200, 1, 4, 1234.4, 75);
    QVERIFY(status.progressText().contains("ETA"));
    status.setDone(50, 200, 1, 4);
    QVERIFY(!status.progressText().contains("ETA"));
    QVERIFY(!status.progressText().contains("img/s"));
    QCOMPARE(status.percent(), 25);
    status.setDone(900, 0, 30, 30);  // an opened finished run
    QCOMPARE(status.percent(), 100);
    QVERIFY(status.progressText().contains("30 of 30 epoch(s)"));
  }

  // Defect 12: the run link says what happened when no file manager can open it.
  void runLinkWithoutAHandlerSaysSo() {
    QTemporaryDir dir;
    TrainingStatus status;
    status.setRunDir(dir.path());
    QSignalSpy failed(&status, &TrainingStatus::openFailed);
    const QByteArray path = qgetenv("PATH");
    qputenv("PATH", "/nonexistent");  // no xdg-open, no browser
    status.openRunDir();
    qputenv("PATH", path);
    QCOMPARE(failed.count(), 1);
    QVERIFY(failed.at(0).at(0).toString().contains(dir.path()));
    QCOMPARE(QGuiApplication::clipboard()->text(), dir.path());
  }

  // The attention view names its weights, explains a chosen class, and its colour bar has numbers.
  void attentionViewSaysWhatItShows() {
    AttentionView view;
    view.setModel(2, 4, {"cat", "dog", "bird"});
    QVERIFY(!view.targetClassBox()->isEnabled());
    QCOMPARE(view.targetClassBox()->count(), 4);  // predicted + 3 classes
    AttentionParams p = view.params();
    p.gradient = true;
    p.targetClass = 1;
    view.setParams(p);
    QVERIFY(view.targetClassBox()->isEnabled());
    QCOMPARE(view.params().targetClass, 1);
    Inspection r;
    r.overlay = QImage(28, 28, QImage::Format_RGB888);
    r.overlay.fill(Qt::red);
    r.original = r.overlay;
    r.originalSize = "500x375 RGB";
    r.inputSize = "28x28 grey";
    r.mapMin = 0.0123;
    r.mapMax = 0.3456;
    r.targetClass = 1;
    r.layer = 1;
    r.weights = "run-a: best weights, epoch 12";
    view.showInspection(r);
    QVERIFY(view.caption().contains("dog"));
    QVERIFY(view.weightsText().contains("run-a: best weights, epoch 12"));
    QCOMPARE(view.colorBarText(), QString("0.012 .. 0.35"));
    bool saysInput = false;
    for (auto* l : view.findChildren<QLabel*>()) saysInput |= l->text().contains("28x28 grey") && l->text().contains("500x375");
    QVERIFY(saysInput);
    view.setNoModel("No weights yet");
    QVERIFY(view.colorBarText().isEmpty());
    QVERIFY(view.shown().overlay.isNull());
  }

  // Evaluation: axis titles, "60 of 181", a stale report offers to evaluate again, Cancel, and a
  // double-clicked image opens in Attention.
  void evaluationViewExplainsItself() {
    EvaluationView view;
    bool axes = false;
    for (auto* l : view.findChildren<QLabel*>()) axes |= l->text().contains("Predicted class");
    QVERIFY(axes);
    EvaluationReport r;
    r.generation = 3;
    r.weights = "run-a: last weights, epoch 2";
    r.classes = {"a", "b"};
    r.confusion = {{181, 2}, {3, 150}};
    r.classCount = {183, 153};
    r.classAccuracy = {181.0 / 183, 150.0 / 153};
    r.count = 336;
    view.setCurrentWeights(3, r.weights);
    view.showReport(r);
    QVERIFY(view.summaryText().contains("epoch 2"));
    QVERIFY(!view.isStale());
    CellImages cell;
    cell.total = 181;
    for (int i = 0; i < 60; ++i) cell.images.push_back({i, 0, 0, 0.9f, QImage(8, 8, QImage::Format_Grayscale8)});
    view.showCell(cell);
    QVERIFY2(view.galleryTitle().contains("60 of 181"), qPrintable(view.galleryTitle()));
    QSignalSpy open(&view, &EvaluationView::openInAttention);
    emit view.gallery()->itemDoubleClicked(view.gallery()->item(7));
    QCOMPARE(open.count(), 1);
    QCOMPARE(open.at(0).at(0).toLongLong(), qint64(7));
    view.setCurrentWeights(4, "run-a: last weights, epoch 3");
    QVERIFY(view.isStale());
    QSignalSpy again(&view, &EvaluationView::evaluateRequested);
    QSignalSpy cancel(&view, &EvaluationView::cancelRequested);
    view.evaluateButton()->click();
    QCOMPARE(again.count(), 1);
    QVERIFY(!view.cancelButton()->isHidden());
    view.cancelButton()->click();
    QCOMPARE(cancel.count(), 1);
  }

  // Predict cards name their weights; cards of older weights are marked, with one click to redo.
  void predictionCardsKnowTheirWeights() {
    PredictionsView view;
    Inspection r;
    r.generation = 1;
    r.weights = "run-a: best weights, epoch 5";
    r.source = "/tmp/x.png";
    r.image = r.overlay = QImage(8, 8, QImage::Format_RGB888);
    view.setCurrentWeights(1, r.weights);
    view.addResult(r);
    QCOMPARE(view.cardWeights(), QStringList{"Weights: run-a: best weights, epoch 5"});
    QCOMPARE(view.staleCards(), 0);
    QVERIFY(view.bannerText().isEmpty());
    view.setCurrentWeights(2, "run-b: best weights, epoch 9");
    QCOMPARE(view.staleCards(), 1);
    QVERIFY(view.bannerText().contains("run-b"));
    QSignalSpy refresh(&view, &PredictionsView::refreshRequested);
    bool clicked = false;
    for (auto* l : view.findChildren<QLabel*>())
      if (l->text().contains("Classify again")) emit l->linkActivated("#"), clicked = true;
    QVERIFY(clicked);
    QCOMPARE(refresh.count(), 1);
  }

  // Compare runs: one graph per run with a legend entry, hiding, the x axes, the read-out, and a
  // table sortable by number.
  void runComparisonOverlaysRuns() {
    QTemporaryDir dir;
    writeRun(dir.filePath("a"), 128, 2e-3, 4, 0.50, 10.0, 0.81);
    writeRun(dir.filePath("b"), 64, 1e-3, 3, 0.65, 20.0);
    RunComparison view;
    view.resize(900, 600);
    QVERIFY(!view.addRun(dir.filePath("nope")).isEmpty());
    QCOMPARE(view.addRun(dir.filePath("a")), QString());
    QCOMPARE(view.addRun(dir.filePath("b")), QString());
    QCOMPARE(view.addRun(dir.filePath("a")), QString());  // already there
    QCOMPARE(view.runs().size(), 2);
    QCOMPARE(view.visibleGraphs(), 2);
    QCOMPARE(view.legendItems(), 2);
    QCOMPARE(view.points(dir.filePath("a")), 4);
    QCOMPARE(view.lastX(dir.filePath("a")), 4.0);  // epochs
    view.setXAxis(RunComparison::XAxis::Step);
    QCOMPARE(view.lastX(dir.filePath("a")), 40.0);  // the last step of epoch 4
    view.setXAxis(RunComparison::XAxis::Time);
    QCOMPARE(view.lastX(dir.filePath("b")), 60.0);  // 3 epochs of 20 s
    view.setMetric("step_loss");
    QCOMPARE(view.points(dir.filePath("a")), 8);
    view.setMetric("val_accuracy");
    view.setXAxis(RunComparison::XAxis::Epoch);
    const QString read = view.hoverAt(2.1);
    QVERIFY2(read.contains("a: <b>60.00%</b>") && read.contains("b: <b>75.00%</b>"), qPrintable(read));
    view.setRunVisible(dir.filePath("b"), false);
    QCOMPARE(view.visibleGraphs(), 1);
    QCOMPARE(view.legendItems(), 1);
    QVERIFY(!view.hoverAt(2.0).contains("b:"));
    // The table: a row per run; unticking hides; sorting by best validation is numeric.
    QTableWidget* t = view.table();
    QCOMPARE(t->rowCount(), 2);
    int testColumn = -1, bestColumn = -1;
    for (int c = 0; c < t->columnCount(); ++c) {
      if (t->horizontalHeaderItem(c)->text() == "Test top-1") testColumn = c;
      if (t->horizontalHeaderItem(c)->text() == "Best val top-1") bestColumn = c;
    }
    QVERIFY(testColumn > 0 && bestColumn > 0);
    t->sortItems(bestColumn, Qt::DescendingOrder);
    QCOMPARE(t->item(0, 0)->text(), QString("b"));  // 85% (0.65 + 0.2) before a's 80% (0.5 + 0.3)
    t->sortItems(testColumn, Qt::DescendingOrder);
    QCOMPARE(t->item(0, 0)->text(), QString("a"));
    QCOMPARE(t->item(0, testColumn)->text(), QString("81.00%"));
    t->item(0, 0)->setCheckState(Qt::Unchecked);  // a
    QCOMPARE(view.visibleGraphs(), 0);
    QCOMPARE(RunComparison::runsIn(dir.path()).size(), 2);
  }

  void statusFormatsProgress() {
    QCOMPARE(TrainingStatus::formatDuration(3909), QString("1:05:09"));
    QCOMPARE(TrainingStatus::formatDuration(247), QString("4:07"));
    TrainingStatus status;
    status.setProgress(50, 200, 1, 4, 1234.4, 75);
    QCOMPARE(status.percent(), 25);
    QVERIFY(status.progressText().contains("epoch 2/4"));
    QVERIFY(status.progressText().contains("1234 img/s"));
    QVERIFY(status.progressText().contains("ETA 1:15"));
  }
};

QTEST_MAIN(TestUiWidgets)
#include "tst_ui_widgets.moc"
