// The ViT Studio window with a real TrainingSession: the summary follows edits, an invalid value
// disables Start, a short run on a tiny model fills the curves, stop and close mid-run leave a
// consistent run directory, and an earlier run (or one another process writes) reopens with its
// curves. Runs offscreen on a small image folder the test writes itself.
#include <QAction>
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QImage>
#include <QLineEdit>
#include <QMimeData>
#include <QPushButton>
#include <QTableWidget>
#include <QRandomGenerator>
#include <QSettings>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QtTest>

#include "attention_view.h"
#include "config_panel.h"
#include "evaluation_view.h"
#include "inspector.h"
#include "patch_view.h"
#include "predictions_view.h"
#include "curves_view.h"
#include "main_window.h"
#include "run_log.h"
#include "summary.h"
#include "summary_view.h"
#include "training_session.h"

// QSignalSpy::wait() only counts emissions that happen while it waits; signals emitted on a worker
// thread (session, inspector) can land before it starts, so wait on the count instead.
#define WAIT_FOR_COUNT(spy, n, ms) QTRY_VERIFY_WITH_TIMEOUT((spy).count() >= (n), ms)

namespace {

// Two classes of 8x8 images a tiny ViT separates in a few epochs: dark and bright noise.
void writeImages(const QString& root, int perClass) {
  QRandomGenerator rng(7);
  for (const QString& cls : {QString("dark"), QString("bright")}) {
    QDir(root).mkpath(cls);
    for (int i = 0; i < perClass; ++i) {
      QImage image(8, 8, QImage::Format_Grayscale8);
      for (int y = 0; y < 8; ++y)
        for (int x = 0; x < 8; ++x)
          image.scanLine(y)[x] = uchar((cls == "dark" ? 20 : 160) + rng.bounded(80));
      QVERIFY(image.save(QString("%1/%2/%3.png").arg(root, cls).arg(i)));
    }
  }
}

void setTiny(ConfigPanel* p, const QString& data, int epochs) {
  auto spin = [p](const char* name, int v) { qobject_cast<QSpinBox*>(p->field(name))->setValue(v); };
  spin("image_size", 8);
  spin("patch_size", 4);
  spin("dim", 16);
  spin("depth", 1);
  spin("heads", 2);
  spin("mlp_hidden", 32);
  spin("epochs", epochs);
  spin("batch_size", 8);
  spin("threads", 1);
  qobject_cast<QLineEdit*>(p->field("lr"))->setText("0.003");
  p->setImageFolder(data);
}

}  // namespace

class TestStudio : public QObject {
  Q_OBJECT

  QTemporaryDir tmp_;
  QString data_, runs_, finishedRun_;

 private slots:
  void initTestCase() {
    QVERIFY(tmp_.isValid());
    QSettings::setPath(QSettings::NativeFormat, QSettings::UserScope, tmp_.filePath("settings"));
    QCoreApplication::setOrganizationName("ViT Studio Test");
    QCoreApplication::setApplicationName("tst_studio");
    data_ = tmp_.filePath("data");
    runs_ = tmp_.filePath("runs");
    writeImages(data_, 80);
  }

  void editingAFieldUpdatesTheSummary() {
    MainWindow w;
    const qint64 before = w.summary()->params();
    QVERIFY(before > 0);
    qobject_cast<QSpinBox*>(w.panel()->field("depth"))->setValue(8);
    const qint64 after = w.summary()->params();
    QVERIFY(after > before);
    QCOMPARE(after, qint64(vit::summarize(w.panel()->modelConfig()).params));
  }

  void invalidValueShowsItsMessageAndDisablesStart() {
    MainWindow w;
    QVERIFY(w.startAction()->isEnabled());
    qobject_cast<QSpinBox*>(w.panel()->field("patch_size"))->setValue(5);  // 28 % 5 != 0
    QVERIFY(!w.startAction()->isEnabled());
    QVERIFY(w.panel()->errorFor("image_size").contains("not a multiple of patch_size 5"));
    QVERIFY(w.startAction()->toolTip().contains("patch_size 5"));
    w.startTraining();  // ignored: nothing starts
    QVERIFY(!w.session()->isRunning());
    qobject_cast<QSpinBox*>(w.panel()->field("patch_size"))->setValue(7);
    QVERIFY(w.startAction()->isEnabled());
  }

  void shortRunFillsTheCurves() {
    MainWindow w;
    w.setRunsRoot(runs_);
    setTiny(w.panel(), data_, 3);
    QVERIFY2(w.panel()->isValid(), qPrintable(w.panel()->errors().join("; ")));
    QSignalSpy progress(w.session(), &TrainingSession::progress);
    QSignalSpy epochs(w.session(), &TrainingSession::epochFinished);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    w.startTraining();
    QVERIFY(w.session()->isRunning());
    QVERIFY(!w.startAction()->isEnabled());
    QVERIFY(w.stopAction()->isEnabled());
    QVERIFY(finished.wait(120000));
    const auto outcome = finished.at(0).at(0).value<TrainingOutcome>();
    QCOMPARE(outcome.stopReason, QString("completed"));
    QCOMPARE(outcome.epochs, 3);
    QVERIFY(progress.count() >= 3);  // 18 steps an epoch, a report every 10 steps
    QCOMPARE(epochs.count(), 3);
    QTRY_COMPARE_WITH_TIMEOUT(w.curves()->drawnPoints("val_accuracy"), 3, 2000);
    QCOMPARE(w.curves()->drawnPoints("top5_accuracy"), 3);
    QCOMPARE(w.curves()->drawnPoints("val_top5_accuracy"), 3);
    QCOMPARE(w.curves()->drawnPoints("loss_ema"), progress.count());
    QCOMPARE(w.curves()->drawnPoints("lr"), progress.count());
    // The tiny model learns dark vs bright.
    QVERIFY(w.curves()->epochs().back().val_accuracy > 0.8);
    QVERIFY(w.startAction()->isEnabled());
    QVERIFY(!w.stopAction()->isEnabled());
    QVERIFY(w.lastMessage().contains("Finished 3 epoch(s)"));
    finishedRun_ = outcome.runDir;
    QVERIFY(finishedRun_.startsWith(runs_));
    QCOMPARE(vit::read_metrics_csv((finishedRun_ + "/metrics.csv").toStdString()).size(), size_t(3));
  }

  void reopeningARunRestoresItsCurves() {
    QVERIFY(!finishedRun_.isEmpty());
    MainWindow w;
    QVERIFY(w.openRun(finishedRun_));
    const auto steps = vit::read_steps_csv((finishedRun_ + "/steps.csv").toStdString());
    QCOMPARE(w.curves()->steps().size(), steps.size());
    QCOMPARE(w.curves()->epochs().size(), size_t(3));
    QTRY_COMPARE_WITH_TIMEOUT(w.curves()->drawnPoints("val_loss"), 3, 2000);
    QCOMPARE(w.panel()->modelConfig().dim, 16);  // the run's settings are back in the panel
    QCOMPARE(w.panel()->trainConfig().epochs, 3);
    QVERIFY(!w.openRun(tmp_.filePath("nope")));
    QVERIFY(w.lastMessage().contains("config.json"));
  }

  // Patches, attention, drag-and-drop classification and evaluation of a finished run.
  void inspectionViewsShowTheRun() {
    QVERIFY(!finishedRun_.isEmpty());
    MainWindow w;
    QSignalSpy loaded(w.inspector(), &Inspector::loaded);
    QVERIFY(w.openRun(finishedRun_));
    WAIT_FOR_COUNT(loaded, 1, 30000);
    const auto info = loaded.at(0).at(0).value<ModelInfo>();
    QCOMPARE(info.classes, QStringList({"bright", "dark"}));
    QCOMPARE(info.heads, 2);
    QCOMPARE(info.grid, 2);
    // The probe (test image 0) is analyzed: overlay, top classes, one tile per head.
    QTRY_VERIFY_WITH_TIMEOUT(!w.attentionView()->shown().overlay.isNull(), 30000);
    QCOMPARE(w.attentionView()->shown().top.size(), 2);  // top-5 clamps to the 2 classes
    QCOMPARE(w.attentionView()->headTiles(), 2);
    QTRY_COMPARE_WITH_TIMEOUT(w.patchView()->shown().grid, 2, 30000);
    // Clicking a patch asks for its position similarity.
    const int half = w.patchView()->gridWidget()->width() / 2;
    QTest::mouseClick(w.patchView()->gridWidget(), Qt::LeftButton, {}, QPoint(half + 3, half + 3));
    QTRY_COMPARE_WITH_TIMEOUT(w.patchView()->shown().patch, 3, 30000);
    QCOMPARE(w.patchView()->shown().values.size(), 4);
    QCOMPARE(w.patchView()->shown().values[3], 1.0f);  // a patch is most similar to itself

    // Dropping files: images are classified, the rest refused with a message.
    const QString text = tmp_.filePath("notes.txt");
    QFile(text).open(QIODevice::WriteOnly);
    const QString fake = tmp_.filePath("fake.png");  // an image by name only
    QFile f(fake);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("not a png");
    f.close();
    QMimeData mime;
    mime.setUrls({QUrl::fromLocalFile(data_ + "/dark/0.png"), QUrl::fromLocalFile(data_ + "/bright/1.png"),
                  QUrl::fromLocalFile(text), QUrl::fromLocalFile(fake)});
    QDragEnterEvent enter(QPoint(10, 10), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(&w, &enter);
    QVERIFY(enter.isAccepted());
    QDropEvent drop(QPointF(10, 10), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(&w, &drop);
    QTRY_COMPARE_WITH_TIMEOUT(w.predictionsView()->cards(), 2, 30000);
    QTRY_COMPARE_WITH_TIMEOUT(w.predictionsView()->refused().size(), 2, 30000);
    QVERIFY(w.predictionsView()->refused().contains(text));
    QVERIFY(w.predictionsView()->refused().contains(fake));

    // Evaluation: the confusion matrix counts every image once.
    QSignalSpy evaluated(w.inspector(), &Inspector::evaluated);
    w.evaluationView()->findChild<QPushButton*>()->click();
    WAIT_FOR_COUNT(evaluated, 1, 60000);
    const auto report = evaluated.at(0).at(0).value<EvaluationReport>();
    QVERIFY2(report.error.isEmpty(), qPrintable(report.error));
    qint64 total = 0;
    for (const auto& row : report.confusion)
      for (qint64 c : row) total += c;
    QCOMPARE(total, report.count);
    QCOMPARE(report.count, qint64(160));  // no test split: the training images
    QTRY_COMPARE_WITH_TIMEOUT(w.evaluationView()->matrix()->rowCount(), 2, 5000);  // the view gets it queued
    QSignalSpy cell(w.inspector(), &Inspector::cellReady);
    QCOMPARE(w.evaluationView()->matrix()->item(0, 1)->text(), QString::number(report.confusion[0][0]));
    w.evaluationView()->matrix()->cellClicked(0, 1);  // column 0 is the per-class accuracy
    WAIT_FOR_COUNT(cell, 1, 30000);
    QCOMPARE(qint64(cell.at(0).at(0).value<CellImages>().images.size()), std::min<qint64>(60, report.confusion[0][0]));
  }

  // Fine-tuning from the window: the architecture comes from the weights, a bigger image resizes
  // the position embeddings, and a frozen backbone trains only the head.
  void fineTuneFromAnEarlierRun() {
    QVERIFY(!finishedRun_.isEmpty());
    MainWindow w;
    w.setRunsRoot(runs_);
    setTiny(w.panel(), data_, 1);
    qobject_cast<QSpinBox*>(w.panel()->field("dim"))->setValue(32);  // the weights will say 16
    QSignalSpy described(w.inspector(), &Inspector::weightsDescribed);
    auto* init = qobject_cast<QLineEdit*>(w.panel()->field("init_weights"));
    init->setText(finishedRun_);
    emit init->editingFinished();
    WAIT_FOR_COUNT(described, 1, 30000);
    QVERIFY2(described.at(0).at(3).toString().isEmpty(), qPrintable(described.at(0).at(3).toString()));
    QTRY_COMPARE_WITH_TIMEOUT(w.panel()->modelConfig().dim, 16, 5000);
    qobject_cast<QSpinBox*>(w.panel()->field("image_size"))->setValue(16);  // grid 2 -> 4
    qobject_cast<QCheckBox*>(w.panel()->field("freeze_backbone"))->setChecked(true);
    QVERIFY2(w.panel()->isValid(), qPrintable(w.panel()->errors().join("; ")));
    QSignalSpy messages(w.session(), &TrainingSession::message);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    w.startTraining();
    QVERIFY(finished.wait(120000));
    const auto outcome = finished.at(0).at(0).value<TrainingOutcome>();
    QCOMPARE(outcome.stopReason, QString("completed"));
    QStringList said;
    for (const auto& m : messages) said << m.at(0).toString();
    QVERIFY2(said.join("\n").contains("backbone frozen"), qPrintable(said.join("\n")));
    QCOMPARE(vit::read_run(outcome.runDir.toStdString()).model.image_size, 16);

    // An unreadable file gets its message under the field and blocks Start.
    init->setText(tmp_.filePath("data/dark/0.png"));
    emit init->editingFinished();
    QTRY_VERIFY_WITH_TIMEOUT(!w.panel()->errorFor("init_weights").isEmpty(), 30000);
    QVERIFY(!w.startAction()->isEnabled());
  }

  void droppingWithoutAModelSaysSo() {
    MainWindow w;
    w.classifyFiles({data_ + "/dark/0.png"});
    QCOMPARE(w.predictionsView()->cards(), 0);
    QCOMPARE(w.predictionsView()->refused().size(), 1);
    QVERIFY(w.lastMessage().contains("No model"));
  }

  // A run another process is writing: new rows appear without reopening.
  void followsARunBeingWritten() {
    QVERIFY(!finishedRun_.isEmpty());
    const QString live = tmp_.filePath("live");
    QDir().mkpath(live);
    QVERIFY(QFile::copy(finishedRun_ + "/config.json", live + "/config.json"));
    QFile steps(live + "/steps.csv");
    QVERIFY(steps.open(QIODevice::WriteOnly));
    steps.write(QByteArray(vit::kStepsHeader) + "\n10,0,0.7,0.5,0.001,900,1\n");
    steps.flush();
    MainWindow w;
    QVERIFY(w.openRun(live));
    QCOMPARE(w.curves()->steps().size(), size_t(1));
    steps.write("20,0,0.6,0.6,0.001,900,2\n30,0,0.5");  // the last row is still being written
    steps.flush();
    QTRY_COMPARE_WITH_TIMEOUT(w.curves()->steps().size(), size_t(2), 5000);
  }

  void stopMidRunThenContinue() {
    MainWindow w;
    w.setRunsRoot(runs_);
    setTiny(w.panel(), data_, 300);
    QSignalSpy progress(w.session(), &TrainingSession::progress);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    w.startTraining();
    WAIT_FOR_COUNT(progress, 1, 60000);
    w.stopAction()->trigger();
    QVERIFY(finished.wait(30000));
    const auto outcome = finished.at(0).at(0).value<TrainingOutcome>();
    QCOMPARE(outcome.stopReason, QString("stopped"));
    QVERIFY(outcome.steps > 0 && outcome.steps < 300 * 18);
    QVERIFY(QFile::exists(outcome.runDir + "/checkpoints/last.safetensors"));
    QVERIFY(QFile::exists(outcome.runDir + "/state.json"));
    QVERIFY(w.lastMessage().contains("Stopped"));
    QVERIFY(w.startAction()->isEnabled());

    // Continue picks up after the stop, not from step 0.
    progress.clear();
    finished.clear();
    w.continueRun();
    QVERIFY(w.session()->isRunning());
    WAIT_FOR_COUNT(progress, 1, 60000);
    const auto first = progress.at(0).at(0).value<TrainingProgress>();
    QVERIFY2(first.row.step > outcome.steps, qPrintable(QString::number(first.row.step)));
    w.session()->stop();
    QVERIFY(finished.wait(30000));
  }

  void pauseHoldsTheTrainer() {
    MainWindow w;
    w.setRunsRoot(runs_);
    setTiny(w.panel(), data_, 300);
    QSignalSpy progress(w.session(), &TrainingSession::progress);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    w.startTraining();
    WAIT_FOR_COUNT(progress, 1, 60000);
    w.pauseAction()->trigger();
    QVERIFY(w.session()->isPaused());
    QCOMPARE(w.pauseAction()->text(), QString("&Resume"));
    QTest::qWait(300);  // a report already in flight may still arrive
    const int count = progress.count();
    QTest::qWait(700);
    QCOMPARE(progress.count(), count);
    w.pauseAction()->trigger();
    QVERIFY(!w.session()->isPaused());
    WAIT_FOR_COUNT(progress, count + 1, 30000);
    w.session()->stop();
    QVERIFY(finished.wait(30000));
  }

  void closeMidRunStopsCleanly() {
    auto* w = new MainWindow;
    w->setAttribute(Qt::WA_DeleteOnClose, false);
    w->setRunsRoot(runs_);
    setTiny(w->panel(), data_, 300);
    w->show();
    QSignalSpy progress(w->session(), &TrainingSession::progress);
    QSignalSpy finished(w, &MainWindow::runFinished);
    w->startTraining();
    const QString dir = w->session()->runDir();
    WAIT_FOR_COUNT(progress, 1, 60000);
    QVERIFY(!w->close());  // not yet: the trainer stops first
    QVERIFY(w->isVisible());
    QVERIFY(finished.wait(30000));
    QTRY_VERIFY_WITH_TIMEOUT(!w->isVisible(), 5000);  // then the window closes by itself
    QCOMPARE(finished.at(0).at(0).value<TrainingOutcome>().stopReason, QString("stopped"));
    delete w;
    // The run directory is consistent: every file parses.
    const vit::RunInfo info = vit::read_run(dir.toStdString());
    QCOMPARE(info.model.dim, 16);
    vit::read_metrics_csv((dir + "/metrics.csv").toStdString());
    QVERIFY(!vit::read_steps_csv((dir + "/steps.csv").toStdString()).empty());
    QVERIFY(QFile::exists(dir + "/checkpoints/last.safetensors"));
    const auto leftovers = QDir(dir + "/checkpoints").entryList({"*.tmp*"}, QDir::Files);
    QVERIFY2(leftovers.isEmpty(), qPrintable(leftovers.join(", ")));
  }

  void settingsPersist() {
    {
      MainWindow w;
      qobject_cast<QSpinBox*>(w.panel()->field("depth"))->setValue(7);
      w.setRunsRoot(runs_);
      QVERIFY(w.close());
    }
    MainWindow w;
    QCOMPARE(w.panel()->modelConfig().depth, 7);
    QCOMPARE(w.runsRoot(), runs_);
  }
};

QTEST_MAIN(TestStudio)
#include "tst_studio.moc"
