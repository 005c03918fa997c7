// Widgets of ui/: the hyperparameter panel validates with the core's rules and shows each message
// under its field; the curves smooth like TensorBoard, batch redraws and export what they show;
// the summary view follows the config. Runs offscreen.
#include <QCheckBox>
#include <QComboBox>
#include <QLineEdit>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QtTest>

#include "config_panel.h"
#include "curves_view.h"
#include "run_log.h"
#include "summary_view.h"
#include "training_status.h"

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
