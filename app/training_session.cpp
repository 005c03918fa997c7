// LibTorch headers first: Qt's `slots` macro breaks them when a Qt header comes before.
#include <ATen/Parallel.h>

#include "datasets.h"
#include "cpu_info.h"
#include "trainer.h"

#include "training_session.h"

#include <QThread>

#include <atomic>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace {

enum : int { kRun = 0, kPause = 1, kStop = 2 };

}  // namespace

struct TrainingSession::Impl {
  QThread* thread = nullptr;
  std::atomic<int> control{kRun};
  std::atomic<bool> active{false};  // from start() until just before finished() is emitted
  QString runDir;
};

TrainingSession::TrainingSession(QObject* parent) : QObject(parent), impl_(std::make_unique<Impl>()) {
  qRegisterMetaType<TrainingProgress>();
  qRegisterMetaType<TrainingOutcome>();
  qRegisterMetaType<vit::EpochRow>();
}

TrainingSession::~TrainingSession() {
  if (impl_->thread) {
    impl_->control = kStop;
    impl_->thread->wait();
    delete impl_->thread;
  }
}

bool TrainingSession::isRunning() const { return impl_->active; }
bool TrainingSession::isPaused() const { return isRunning() && impl_->control == kPause; }
QString TrainingSession::runDir() const { return impl_->runDir; }

bool TrainingSession::wait(int msecs) {
  return !impl_->thread || impl_->thread->wait(QDeadlineTimer(msecs));
}

void TrainingSession::pause() {
  int expected = kRun;
  if (isRunning() && impl_->control.compare_exchange_strong(expected, kPause)) emit pausedChanged(true);
}

void TrainingSession::resume() {
  int expected = kPause;
  if (impl_->control.compare_exchange_strong(expected, kRun)) emit pausedChanged(false);
}

void TrainingSession::stop() {
  const int was = impl_->control.exchange(kStop);
  if (was == kPause) emit pausedChanged(false);
}

bool TrainingSession::start(const Request& request) {
  if (isRunning()) return false;
  if (impl_->thread) {  // the previous run's thread has finished, or is returning
    impl_->thread->wait();
    delete impl_->thread;
    impl_->thread = nullptr;
  }
  impl_->control = kRun;
  impl_->active = true;
  impl_->runDir = QString::fromStdString(request.run.dir);

  // Runs on the worker thread. Everything it touches is its own copy, or the atomic.
  auto work = [this, request] {
    TrainingOutcome outcome;
    outcome.runDir = QString::fromStdString(request.run.dir);
    try {
      // A desktop app stays responsive: the trainer (and the OpenMP team this thread starts,
      // which inherits it) runs at a lower priority than the GUI thread.
      setpriority(PRIO_PROCESS, pid_t(syscall(SYS_gettid)), 5);
      // Intra-op threads are per calling thread in OpenMP builds: set them here, not in main().
      vit::PreparedRun run = request.run;
      at::set_num_threads(run.train.threads > 0 ? run.train.threads : vit::available_cores());
      emit message(tr("Loading %1...").arg(QString::fromStdString(run.train.dataset)));
      vit::DataSplits data = vit::load_dataset(run.train.dataset, run.model.image_size, run.model.in_channels);
      if (data.skipped_files > 0)
        emit message(tr("Skipped %1 unreadable file(s) in the data set.").arg(data.skipped_files));
      // Channels and classes follow the data (as `vit train` does unless told otherwise).
      vit::fit_to_data(run, request.given, int(data.train.images.size(1)), int(data.train.classes.size()));
      for (const auto& note : run.notes) emit message(QString::fromStdString(note));
      run.notes.clear();
      emit message(tr("Training on %1 images (%2 threads).")
                       .arg(data.train.images.size(0)).arg(at::get_num_threads()));

      vit::TrainCallbacks cb;
      cb.on_step = [this](const vit::StepStats& s) {
        TrainingProgress p;
        p.row = s;  // the steps.csv part
        p.totalSteps = s.total_steps;
        p.stepInEpoch = s.step_in_epoch;
        p.stepsPerEpoch = s.steps_per_epoch;
        p.etaSeconds = s.eta_seconds;
        p.epochs = s.steps_per_epoch > 0 ? int(s.total_steps / s.steps_per_epoch) : 0;
        emit progress(p);
      };
      cb.on_epoch = [this](const vit::EpochStats& e) { emit epochFinished(e, e.best); };
      cb.on_message = [this](const std::string& m) { emit message(QString::fromStdString(m)); };
      cb.on_ready = [this, dir = outcome.runDir] { emit started(dir); };
      cb.poll = [this] {
        const int c = impl_->control.load();
        return c == kStop ? vit::Control::Stop : c == kPause ? vit::Control::Pause : vit::Control::Continue;
      };
      const vit::TrainResult r = vit::train(run, data, cb);
      outcome.stopReason = QString::fromStdString(r.stop_reason);
      outcome.message = QString::fromStdString(r.message);
      outcome.epochs = r.epochs;
      outcome.steps = r.steps;
      outcome.imagesPerSecond = r.images_per_second;
      outcome.flopsPerSecond = r.flops_per_second;
      outcome.peakFlopsPerSecond = r.peak_flops_per_second;
      if (r.test) {
        outcome.hasTest = true;
        outcome.testAccuracy = r.test->accuracy;
        outcome.testTop5 = r.test->top5_accuracy;
        outcome.testLoss = r.test->loss;
      }
    } catch (const std::exception& e) {
      outcome.stopReason = "error";
      outcome.message = QString::fromUtf8(e.what());
    }
    impl_->active = false;
    emit finished(outcome);
  };
  impl_->thread = QThread::create(work);
  impl_->thread->setObjectName("training");
  impl_->thread->start();
  return true;
}
