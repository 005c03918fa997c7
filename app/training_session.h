// The GUI's training session: runs the core trainer (vit::train) on a worker QThread and turns its
// callbacks into signals carrying small value types. Torch-free header (pimpl), so widgets and
// moc never see LibTorch.
//
// Thread contract: every public method is called on the thread that owns the session (the GUI
// thread); the signals are emitted on the worker thread and reach GUI-thread receivers queued.
// Pause and stop reach the worker through an atomic the trainer polls between steps (its event
// loop is busy training, so queued slots would never run). Destruction stops and waits.
#pragma once

#include <QMetaType>
#include <QObject>
#include <QString>

#include <memory>

#include <set>
#include <string>

#include "run_dir.h"
#include "run_log.h"
#include "train_config.h"
#include "vit_config.h"

struct TrainingProgress {
  vit::StepRow row;            // step, epoch, loss, accuracy, lr, images/s, elapsed
  qint64 totalSteps = 0;       // planned optimizer steps of the whole run
  qint64 stepInEpoch = 0, stepsPerEpoch = 0;
  int epochs = 0;
  double etaSeconds = 0;
};

struct TrainingOutcome {
  QString runDir;
  QString stopReason;  // "completed", "stopped", "max_steps", "nan", "error"
  QString message;     // what happened and, for failures, what to change
  int epochs = 0;      // completed epochs
  qint64 steps = 0;
  bool hasTest = false;
  double testAccuracy = 0, testTop5 = 0, testLoss = 0;
  double imagesPerSecond = 0;
  // Model FLOPs per second of the training steps and the float FMA peak of the cores they ran on
  // (vit::TrainResult; the peak is 0 where not known).
  double flopsPerSecond = 0, peakFlopsPerSecond = 0;
};

Q_DECLARE_METATYPE(TrainingProgress)
Q_DECLARE_METATYPE(TrainingOutcome)
Q_DECLARE_METATYPE(vit::EpochRow)

class TrainingSession : public QObject {
  Q_OBJECT

 public:
  struct Request {
    vit::PreparedRun run;  // what to train and where (vit::prepare_run)
    // Fields the user fixed: never fitted to the data (the window lets channels and classes
    // follow the data, so usually none).
    std::set<std::string> given;
  };

  explicit TrainingSession(QObject* parent = nullptr);
  ~TrainingSession() override;  // stops a run in progress and waits for it

  // Starts a run on the worker thread; false (and nothing happens) when one is running.
  bool start(const Request& request);
  void pause();
  void resume();
  void stop();  // the trainer stops within one step and leaves a consistent run directory
  bool isRunning() const;
  bool isPaused() const;
  bool wait(int msecs);  // for shutdown paths and tests; the GUI listens to finished()
  QString runDir() const;

 signals:
  void started(const QString& runDir);  // the run directory exists and training begins
  void message(const QString& text);
  void progress(const TrainingProgress& progress);
  void epochFinished(const vit::EpochRow& epoch, bool best);
  void pausedChanged(bool paused);
  void finished(const TrainingOutcome& outcome);  // always comes, also after stop or failure

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};
