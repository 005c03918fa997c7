// The ViT Studio window with a real TrainingSession: the summary follows edits, an invalid value
// disables Start, a short run on a tiny model fills the curves, stop and close mid-run leave a
// consistent run directory, and an earlier run (or one another process writes) reopens with its
// curves. Runs offscreen on a small image folder the test writes itself.
#include <QAction>
#include <QComboBox>
#include <QDir>
#include <QImage>
#include <QLineEdit>
#include <QRandomGenerator>
#include <QSettings>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QtTest>

#include "config_panel.h"
#include "curves_view.h"
#include "main_window.h"
#include "run_log.h"
#include "summary.h"
#include "summary_view.h"
#include "training_session.h"

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
    QVERIFY(progress.wait(60000));
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
    QVERIFY2(progress.wait(60000), qPrintable(w.lastMessage()));
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
    QVERIFY(progress.wait(60000));
    w.pauseAction()->trigger();
    QVERIFY(w.session()->isPaused());
    QCOMPARE(w.pauseAction()->text(), QString("&Resume"));
    QTest::qWait(300);  // a report already in flight may still arrive
    const int count = progress.count();
    QTest::qWait(700);
    QCOMPARE(progress.count(), count);
    w.pauseAction()->trigger();
    QVERIFY(!w.session()->isPaused());
    QVERIFY(progress.wait(30000));
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
    QVERIFY(progress.wait(60000));
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
