#include "main_window.h"

#include <QAction>
#include <QClipboard>
#include <QGuiApplication>
#include <QCloseEvent>
#include <QDateTime>
#include <QDir>
#include <QDockWidget>
#include <QFileDialog>
#include <QFileInfo>
#include <QLabel>
#include <QMenuBar>
#include <QMimeData>
#include <QPlainTextEdit>
#include <QScreen>
#include <QScrollArea>
#include <QSettings>
#include <QStatusBar>
#include <QStyle>
#include <QTabWidget>
#include <QTimer>
#include <QToolBar>
#include <QVBoxLayout>

#include <algorithm>

#include "attention_view.h"
#include "config_panel.h"
#include "evaluation_view.h"
#include "inspector.h"
#include "patch_view.h"
#include "predictions_view.h"
#include "curves_view.h"
#include "run_comparison.h"
#include "run_dir.h"
#include "summary_view.h"
#include "training_session.h"
#include "training_status.h"

namespace {

qint64 logBytes(const QString& dir) {
  const vit::RunPaths paths(dir.toStdString());
  return QFileInfo(QString::fromStdString(paths.steps())).size() +
         QFileInfo(QString::fromStdString(paths.metrics())).size();
}

// The run's weights for the inspection views ("" when it has none yet).
QString runWeights(const QString& dir, vit::Weights which = vit::Weights::Best) {
  try {
    return QString::fromStdString(vit::RunReader(dir.toStdString()).weights(which));
  } catch (const std::exception&) {
    return {};
  }
}

const char* kNoWeights = QT_TRANSLATE_NOOP("MainWindow",
    "No weights yet. Press Start to train a model (the views fill in after its first epoch), or "
    "open a run with File > Open run.");

}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  setWindowTitle(tr("ViT Studio"));
  setAcceptDrops(true);
  session_ = new TrainingSession(this);

  panel_ = new ConfigPanel;
  auto* scroll = new QScrollArea;
  scroll->setWidget(panel_);
  scroll->setWidgetResizable(true);
  scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  scroll->setMinimumWidth(panel_->sizeHint().width() + 24);
  auto* dock = new QDockWidget(tr("Settings"));
  dock->setObjectName("settingsDock");
  dock->setWidget(scroll);
  dock->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable);
  addDockWidget(Qt::LeftDockWidgetArea, dock);

  curves_ = new CurvesView;
  summary_ = new SummaryView;
  log_ = new QPlainTextEdit;
  log_->setReadOnly(true);
  log_->setMaximumBlockCount(5000);
  compare_ = new RunComparison;
  curvesTabs_ = new QTabWidget;
  curvesTabs_->setDocumentMode(true);
  curvesTabs_->addTab(curves_, tr("This run"));
  curvesTabs_->addTab(compare_, tr("Compare runs"));
  tabs_ = new QTabWidget;
  tabs_->setObjectName("mainTabs");
  tabs_->addTab(curvesTabs_, tr("Curves"));
  tabs_->addTab(summary_, tr("Summary"));
  patches_ = new PatchView;
  attention_ = new AttentionView;
  predictions_ = new PredictionsView;
  evaluation_ = new EvaluationView;
  evaluation_->setEnabledForModel(false);
  tabs_->addTab(patches_, tr("Patches"));
  tabs_->addTab(attention_, tr("Attention"));
  tabs_->addTab(predictions_, tr("Predict"));
  tabs_->addTab(evaluation_, tr("Evaluation"));
  tabs_->addTab(log_, tr("Log"));
  inspector_ = new Inspector(this);
  probe_.testIndex = 0;

  messageBar_ = new QLabel;
  messageBar_->setWordWrap(true);
  messageBar_->setTextInteractionFlags(Qt::TextBrowserInteraction);
  messageBar_->hide();
  connect(messageBar_, &QLabel::linkActivated, this, [this](const QString& link) {
    if (link == "continue") continueInterrupted();
    else if (link == "show") {
      const QString dir = interrupted_;
      interrupted_.clear();
      QSettings().remove("session/activeRun");
      openRun(dir);
    } else if (link == "dismiss") {
      interrupted_.clear();
      QSettings().remove("session/activeRun");
      messageBar_->hide();
    }
  });
  auto* central = new QWidget;
  auto* layout = new QVBoxLayout(central);
  layout->setContentsMargins(4, 4, 4, 0);
  layout->addWidget(messageBar_);
  layout->addWidget(tabs_, 1);
  setCentralWidget(central);

  status_ = new TrainingStatus;
  statusBar()->addWidget(status_, 1);
  statusBar()->setSizeGripEnabled(true);

  followTimer_ = new QTimer(this);
  followTimer_->setInterval(1000);
  connect(followTimer_, &QTimer::timeout, this, &MainWindow::followShownRun);
  // Without weights the patch view cuts with the panel's model: after edits settle.
  patchTimer_ = new QTimer(this);
  patchTimer_->setSingleShot(true);
  patchTimer_->setInterval(300);
  connect(patchTimer_, &QTimer::timeout, this, &MainWindow::refreshPatches);
  connect(tabs_, &QTabWidget::currentChanged, this, [this] {
    if (tabs_->currentWidget() == patches_ && !inspector_->hasModel()) refreshPatches();
  });
  connect(status_, &TrainingStatus::openFailed, this, [this](const QString& m) { showMessage(m, false); });

  buildActions();

  connect(panel_, &ConfigPanel::configChanged, this, [this] {
    summary_->setConfig(panel_->modelConfig());
    inspector_->setUntrainedModel(panel_->modelConfig(), panel_->datasetSpec());
    if (!inspector_->hasModel()) patchTimer_->start();
    updateActions();
  });
  connect(panel_, &ConfigPanel::dropRefused, this, [this](const QString& why) { showMessage(why, true); });
  connect(panel_, &ConfigPanel::validityChanged, this, &MainWindow::updateActions);
  connect(session_, &TrainingSession::message, this, &MainWindow::log);
  // The run becomes the shown one (and enters Open recent) only once its directory exists: a
  // start that fails before (an unreadable data set) leaves the shown run as it was.
  connect(session_, &TrainingSession::started, this, [this](const QString& dir) {
    runStarted_ = true;
    if (!resuming_) {
      shownRun_ = dir;
      curves_->clear();
      curves_->setRunName(QDir(dir).dirName());
      status_->setRunDir(dir);
      inspector_->unload();  // the new run's weights come with its first epoch
    }
    addRecent(dir);
    QSettings().setValue("session/activeRun", dir);
    interrupted_.clear();
    status_->setState(tr("Training"));
    log(tr("Run directory: %1").arg(dir));
  });
  connect(session_, &TrainingSession::progress, this, &MainWindow::onProgress);
  connect(session_, &TrainingSession::epochFinished, this, &MainWindow::onEpoch);
  connect(session_, &TrainingSession::finished, this, &MainWindow::onFinished);
  connect(session_, &TrainingSession::pausedChanged, this, [this](bool paused) {
    status_->setState(paused ? tr("Paused") : tr("Training"));
    updateActions();
  });

  // Inspection: the model shown (a finished run, an opened one, or the latest epoch of ours).
  connect(inspector_, &Inspector::loaded, this, [this](const ModelInfo& info) {
    weights_ = info;
    attention_->setModel(info.depth, info.heads, info.classes);
    evaluation_->setEnabledForModel(true);
    evaluation_->setCurrentWeights(info.generation, info.label);
    predictions_->setCurrentWeights(info.generation, info.label);
    log(tr("Inspecting with %1").arg(info.label));
    if (!info.note.isEmpty()) log(info.note);
    refreshProbe();
  });
  connect(inspector_, &Inspector::unloaded, this, [this] {
    weights_ = ModelInfo{};
    const QString why = session_->isRunning()
                            ? tr("Training: the views fill in with the run's weights after its first epoch.")
                            : !shownRun_.isEmpty() ? tr("%1 has no weights yet (no epoch finished). %2")
                                                         .arg(QDir(shownRun_).dirName(), tr(kNoWeights))
                                                   : tr(kNoWeights);
    attention_->setNoModel(why);
    evaluation_->setEnabledForModel(false);
    evaluation_->setCurrentWeights(-1, QString());
    predictions_->setCurrentWeights(-1, QString());
    refreshPatches();
  });
  connect(inspector_, &Inspector::loadFailed, this, [this](const QString& e) {
    log(tr("Cannot load the model to inspect: %1").arg(e));
  });
  connect(inspector_, &Inspector::inspected, attention_, &AttentionView::showInspection);
  connect(inspector_, &Inspector::patchesReady, patches_, &PatchView::showPatches);
  connect(inspector_, &Inspector::predicted, predictions_, &PredictionsView::addResult);
  connect(inspector_, &Inspector::evaluationProgress, evaluation_, &EvaluationView::setProgress);
  connect(inspector_, &Inspector::evaluated, evaluation_, &EvaluationView::showReport);
  connect(inspector_, &Inspector::cellReady, evaluation_, &EvaluationView::showCell);
  connect(attention_, &AttentionView::paramsChanged, this, [this] {
    if (inspector_->hasModel()) inspector_->inspect(probe_, attention_->params());
  });
  connect(attention_, &AttentionView::stepSource, this, [this](int delta) {
    ImageSource s;
    s.testIndex = std::max(0, (probe_.testIndex < 0 ? 0 : probe_.testIndex) + delta);
    setProbe(s);
  });
  connect(attention_, &AttentionView::openImage, this, [this] {
    const QString f = QFileDialog::getOpenFileName(this, tr("Image to inspect"), QString(),
                                                   tr("Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff *.pgm *.ppm)"));
    if (f.isEmpty()) return;
    ImageSource s;
    s.path = f;
    setProbe(s);
  });
  connect(patches_, &PatchView::patchClicked, this, [this](int n) {
    probePatch_ = n;
    inspector_->patches(probe_, n);
  });
  connect(predictions_, &PredictionsView::openImages, this, [this] {
    const QStringList files = QFileDialog::getOpenFileNames(this, tr("Images to classify"), QString(),
                                                            tr("Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff *.pgm *.ppm);;All files (*)"));
    if (!files.isEmpty()) classifyFiles(files);
  });
  connect(evaluation_, &EvaluationView::evaluateRequested, inspector_, &Inspector::evaluate);
  connect(evaluation_, &EvaluationView::cancelRequested, inspector_, &Inspector::cancelEvaluation);
  connect(evaluation_, &EvaluationView::openInAttention, this, [this](qint64 index) {
    ImageSource s;
    s.testIndex = int(index);
    setProbe(s);
    showTab("attention");
  });
  connect(predictions_, &PredictionsView::cleared, this, [this] { classified_.clear(); });
  connect(predictions_, &PredictionsView::refreshRequested, this, [this] {
    const auto again = classified_;
    predictions_->clear();
    for (const auto& c : again) {
      if (c.image.isNull()) classifyFiles({c.path});
      else {
        classified_.append(c);
        inspector_->predictImage(c.image, c.name);
      }
    }
  });
  connect(compare_, &RunComparison::openRunRequested, this, [this](const QString& dir) {
    if (openRun(dir)) curvesTabs_->setCurrentWidget(curves_);
  });
  // Fine-tuning: the architecture comes from the chosen weights.
  connect(panel_, &ConfigPanel::initWeightsChanged, this, [this](const QString& path) {
    if (path.isEmpty()) return;
    log(tr("Reading %1...").arg(path));
    inspector_->describeWeights(path);
  });
  connect(inspector_, &Inspector::weightsDescribed, this,
          [this](const QString& path, const vit::ViTConfig& config, const QString& summary, const QString& error) {
            if (path != panel_->trainConfig().init_weights.c_str()) return;  // chosen again since
            if (!error.isEmpty()) {
              panel_->setInitWeightsError(error);
              return;
            }
            panel_->setPretrainedArchitecture(config);
            log(tr("Fine-tuning from %1").arg(summary));
          });
  connect(evaluation_, &EvaluationView::cellClicked, inspector_, &Inspector::cell);
  auto* paste = new QAction(tr("Paste image"), this);
  paste->setShortcut(QKeySequence::Paste);
  paste->setShortcutContext(Qt::WindowShortcut);
  connect(paste, &QAction::triggered, this, &MainWindow::pasteImage);
  addAction(paste);

  runsRoot_ = QDir::homePath() + "/vit-runs";
  loadSettings();
  summary_->setConfig(panel_->modelConfig());
  inspector_->setUntrainedModel(panel_->modelConfig(), panel_->datasetSpec());
  compare_->setRunsRoot(runsRoot_);
  updateActions();
  offerInterruptedRun();
}

MainWindow::~MainWindow() = default;

void MainWindow::buildActions() {
  start_ = new QAction(style()->standardIcon(QStyle::SP_MediaPlay), tr("&Start"), this);
  start_->setShortcut(QKeySequence("Ctrl+Return"));
  start_->setToolTip(tr("Train a new model with these settings (Ctrl+Enter)"));
  pause_ = new QAction(style()->standardIcon(QStyle::SP_MediaPause), tr("&Pause"), this);
  pause_->setShortcut(QKeySequence("Ctrl+P"));
  stop_ = new QAction(style()->standardIcon(QStyle::SP_MediaStop), tr("S&top"), this);
  stop_->setShortcut(QKeySequence("Ctrl+."));
  stop_->setToolTip(tr("Stop after the current step; the run directory stays consistent and can be continued"));
  open_ = new QAction(style()->standardIcon(QStyle::SP_DialogOpenButton), tr("&Open run..."), this);
  open_->setShortcut(QKeySequence::Open);
  open_->setToolTip(tr("Show an earlier run, or one `vit train` is writing"));
  continue_ = new QAction(style()->standardIcon(QStyle::SP_MediaSeekForward), tr("&Continue run"), this);
  continue_->setToolTip(tr("Resume the shown run where it stopped, with its own settings"));
  auto* runsFolder = new QAction(tr("Runs &folder..."), this);
  auto* quit = new QAction(tr("&Quit"), this);
  quit->setShortcut(QKeySequence::Quit);

  connect(start_, &QAction::triggered, this, &MainWindow::startTraining);
  connect(pause_, &QAction::triggered, this, [this] {
    session_->isPaused() ? session_->resume() : session_->pause();
  });
  connect(stop_, &QAction::triggered, this, [this] {
    session_->stop();
    status_->setState(tr("Stopping..."));
    stop_->setEnabled(false);
  });
  connect(open_, &QAction::triggered, this, [this] {
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Open a run directory"), runsRoot_);
    if (!dir.isEmpty()) openRun(dir);
  });
  connect(continue_, &QAction::triggered, this, &MainWindow::continueRun);
  connect(runsFolder, &QAction::triggered, this, [this] {
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Folder for new runs"), runsRoot_);
    if (!dir.isEmpty()) setRunsRoot(dir);
  });
  connect(quit, &QAction::triggered, this, &QWidget::close);

  auto* toolbar = addToolBar(tr("Training"));
  toolbar->setObjectName("trainingToolbar");
  toolbar->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
  toolbar->addActions({start_, pause_, stop_});
  toolbar->addSeparator();
  toolbar->addActions({open_, continue_});

  auto* file = menuBar()->addMenu(tr("&File"));
  file->addAction(open_);
  recentMenu_ = file->addMenu(tr("Open &recent"));
  file->addAction(runsFolder);
  file->addSeparator();
  file->addAction(quit);
  auto* train = menuBar()->addMenu(tr("&Training"));
  train->addActions({start_, pause_, stop_, continue_});
}

void MainWindow::updateActions() {
  const bool running = session_->isRunning();
  start_->setEnabled(!running && panel_->isValid());
  start_->setToolTip(panel_->isValid() ? tr("Train a new model with these settings (Ctrl+Enter)")
                                       : panel_->errors().join("\n"));
  pause_->setEnabled(running);
  pause_->setText(session_->isPaused() ? tr("&Resume") : tr("&Pause"));
  pause_->setIcon(style()->standardIcon(session_->isPaused() ? QStyle::SP_MediaPlay : QStyle::SP_MediaPause));
  stop_->setEnabled(running);
  open_->setEnabled(!running);
  // Continue: the shown run stopped before its last epoch, nobody else is writing it, and the
  // panel's settings (whose resumable fields a continued run takes) are valid.
  bool canContinue = false;
  QString continueTip = tr("Resume the shown run where it stopped; epochs, threads, precision and "
                           "the data set folder may be changed first");
  if (!running && !shownRun_.isEmpty() && panel_->isValid()) {
    try {
      const vit::RunReader reader(shownRun_.toStdString());
      const auto state = reader.state();
      if (const auto holder = vit::run_lock_holder(shownRun_.toStdString())) {
        continueTip = tr("%1 is being written by %2").arg(shownRun_, QString::fromStdString(holder->describe()));
      } else if (state && (!state->finished || panel_->trainConfig().epochs > state->epoch)) {
        canContinue = true;
      }
    } catch (const std::exception& e) {
      continueTip = QString::fromUtf8(e.what());
    }
  }
  continue_->setToolTip(continueTip);
  continue_->setEnabled(canContinue);
  panel_->setLocked(running);
}

void MainWindow::setRunsRoot(const QString& dir) {
  runsRoot_ = dir;
  compare_->setRunsRoot(dir);
}

void MainWindow::startTraining() {
  if (session_->isRunning() || !panel_->isValid()) return;
  if (!QDir().mkpath(runsRoot_)) {
    showMessage(tr("Cannot create %1: choose another folder with File > Runs folder.").arg(runsRoot_), true);
    return;
  }
  vit::RunRequest request;
  request.model = panel_->modelConfig();
  request.train = panel_->trainConfig();
  request.runs_root = runsRoot_.toStdString();
  request.name = (panel_->presetName().isEmpty() ? QString("custom") : panel_->presetName()).toStdString();
  TrainingSession::Request run;
  try {
    run.run = vit::prepare_run(request);
  } catch (const std::exception& e) {
    showMessage(tr("Cannot start: %1").arg(QString::fromUtf8(e.what())), true);
    return;
  }
  followTimer_->stop();
  curves_->setPlannedEpochs(run.run.train.epochs);
  status_->reset();
  status_->setState(tr("Starting..."));
  messageBar_->hide();
  log_->clear();
  runStarted_ = false;
  resuming_ = false;
  lastStep_ = lastTotalSteps_ = 0;
  session_->start(run);
  updateActions();
}

void MainWindow::continueRun() {
  if (session_->isRunning() || shownRun_.isEmpty()) return;
  // The panel shows the run's settings (openRun); what was edited since reaches the run when the
  // core allows it (resumable fields), and anything else is refused with the field's name.
  vit::RunRequest request;
  request.resume_dir = shownRun_.toStdString();
  request.model = panel_->modelConfig();
  request.train = panel_->trainConfig();
  for (const auto& f : vit::vit_schema())
    if (f.spec.group != vit::FieldGroup::None) request.given.insert(f.spec.name);
  for (const auto& f : vit::train_schema())
    if (f.spec.group != vit::FieldGroup::None || f.spec.name == "dataset") request.given.insert(f.spec.name);
  TrainingSession::Request run;
  try {
    run.run = vit::prepare_run(request);
  } catch (const std::exception& e) {
    showMessage(tr("Cannot continue: %1").arg(QString::fromUtf8(e.what())), true);
    return;
  }
  followTimer_->stop();
  curves_->setPlannedEpochs(run.run.train.epochs);
  status_->setState(tr("Resuming..."));
  messageBar_->hide();
  runStarted_ = false;
  resuming_ = true;
  lastStep_ = lastTotalSteps_ = 0;
  session_->start(run);
  updateActions();
}

void MainWindow::onProgress(const TrainingProgress& p) {
  lastStep_ = p.row.step;
  lastTotalSteps_ = p.totalSteps;
  curves_->addStep(p.row);
  status_->setProgress(p.row.step, p.totalSteps, p.row.epoch, p.epochs, p.row.images_per_second, p.etaSeconds);
}

void MainWindow::onEpoch(const vit::EpochRow& e, bool best) {
  curves_->addEpoch(e);
  // The probe's attention and prediction follow training: the trainer has just written the
  // epoch's weights (atomically) to last.safetensors.
  const QString last = runWeights(session_->runDir(), vit::Weights::Last);
  if (!last.isEmpty()) inspector_->load(last);
  log(tr("Epoch %1: loss %2, val loss %3, val top-1 %4%, top-5 %5%%6")
          .arg(e.epoch + 1)
          .arg(e.loss, 0, 'f', 4)
          .arg(e.val_loss, 0, 'f', 4)
          .arg(100 * e.val_accuracy, 0, 'f', 2)
          .arg(100 * e.val_top5_accuracy, 0, 'f', 2)
          .arg(best ? tr(" (best so far, saved)") : QString()));
}

// " Test set (best weights): top-1 ..%, top-5 ..%." from a run's test.json, naming the weights the
// trainer tested (best, the moving average where no best was kept, or the last); "" without one.
QString MainWindow::testSummary(const QString& runDir) {
  if (runDir.isEmpty()) return {};
  const auto test = vit::RunReader(runDir.toStdString()).test();
  if (!test || !test->contains("accuracy") || !(*test)["accuracy"].is_number()) return {};
  const std::string weights = test->value("weights", std::string("best"));
  const QString which = weights == "ema"    ? tr("the moving average of the weights")
                        : weights == "last" ? tr("last weights")
                                            : tr("best weights");
  QString text = tr(" Test set (%1): top-1 %2%").arg(which).arg(100 * (*test)["accuracy"].get<double>(), 0, 'f', 2);
  if (test->contains("top5_accuracy") && (*test)["top5_accuracy"].is_number())
    text += tr(", top-5 %1%").arg(100 * (*test)["top5_accuracy"].get<double>(), 0, 'f', 2);
  return text + ".";
}

void MainWindow::onFinished(const TrainingOutcome& o) {
  QString text;
  bool error = false;
  if (o.stopReason == "error") {
    text = tr("Training failed: %1").arg(o.message);
    error = true;
  } else if (o.stopReason == "nan") {
    text = o.message;
    error = true;
  } else if (o.stopReason == "stopped") {
    text = tr("Stopped after %1 step(s); Continue run picks it up from the last checkpoint.").arg(o.steps);
  } else {
    text = tr("Finished %1 epoch(s) at %2 images/s").arg(o.epochs).arg(o.imagesPerSecond, 0, 'f', 0);
    if (o.flopsPerSecond > 0 && o.peakFlopsPerSecond > 0)
      text += tr(" (%1 GFLOP/s, %2% of the CPU's float FMA peak)")
                  .arg(o.flopsPerSecond / 1e9, 0, 'f', 1)
                  .arg(100 * o.flopsPerSecond / o.peakFlopsPerSecond, 0, 'f', 0);
    else if (o.flopsPerSecond > 0)
      text += tr(" (%1 GFLOP/s)").arg(o.flopsPerSecond / 1e9, 0, 'f', 1);
    text += ".";
  }
  if (o.hasTest) {
    const QString tested = testSummary(o.runDir);
    text += tested.isEmpty() ? tr(" Test set: top-1 %1%, top-5 %2%.")
                                   .arg(100 * o.testAccuracy, 0, 'f', 2)
                                   .arg(100 * o.testTop5, 0, 'f', 2)
                             : tested;
  }
  if (runStarted_ && !runWeights(o.runDir).isEmpty()) inspector_->load(o.runDir);
  status_->setState(error ? tr("Failed") : o.stopReason == "stopped" ? tr("Stopped") : tr("Finished"));
  // No speed or ETA once training ends: how far the run got.
  if (runStarted_) {
    showRunProgress(o.runDir);
  } else {
    status_->reset();
    status_->setState(tr("Failed to start"));
    if (!shownRun_.isEmpty()) showRunProgress(shownRun_);
  }
  if (!closeWhenStopped_) QSettings().remove("session/activeRun");  // closing keeps the offer
  if (!shownRun_.isEmpty()) {  // ours, or (a start that failed) the one shown before
    if (runStarted_) {
      followedBytes_ = logBytes(shownRun_);
      followedCheckpoint_ = runWeights(shownRun_);  // loaded just above
    }
    followTimer_->start();
  }
  showMessage(text, error);
  log(text);
  updateActions();
  emit runFinished(o);
  if (closeWhenStopped_) close();
}

void MainWindow::log(const QString& text) {
  log_->appendPlainText(QTime::currentTime().toString("HH:mm:ss  ") + text);
}

void MainWindow::showMessage(const QString& text, bool error) {
  messageBar_->setText(text);
  messageBar_->setStyleSheet(error ? "background: #fdecea; color: #8a1f11; padding: 6px; border-radius: 3px;"
                                   : "background: #e8f4ea; color: #1e5631; padding: 6px; border-radius: 3px;");
  messageBar_->show();
}

QString MainWindow::lastMessage() const { return messageBar_->isHidden() ? QString() : messageBar_->text(); }

bool MainWindow::openRun(const QString& dir) {
  if (session_->isRunning()) {
    showMessage(tr("Stop the current run before opening another."), true);
    return false;
  }
  try {
    const vit::RunReader reader(dir.toStdString());
    const vit::RunInfo info = reader.info();
    const auto steps = reader.steps();
    const auto epochs = reader.metrics();
    panel_->setConfigs(info.model, info.train);
    curves_->setPlannedEpochs(info.train.epochs);
    curves_->setHistory(steps, epochs);
    shownRun_ = QDir(dir).absolutePath();
    curves_->setRunName(QDir(shownRun_).dirName());
    followedBytes_ = logBytes(shownRun_);
    followTimer_->start();
    status_->reset();
    status_->setRunDir(shownRun_);
    const auto holder = vit::run_lock_holder(shownRun_.toStdString());
    status_->setState(holder ? tr("Following run (%1)").arg(QString::fromStdString(holder->program)) : tr("Viewing run"));
    showRunProgress(shownRun_);
    if (!epochs.empty()) {
      QString text = tr("%1: %2 of %3 epoch(s)").arg(QDir(shownRun_).dirName()).arg(epochs.size()).arg(info.train.epochs);
      // The trainer holds out a validation split exactly when val_fraction > 0; without one it
      // keeps its best by training accuracy.
      const bool validated = info.train.val_fraction > 0;
      const auto state = reader.state();
      if (state && state->best_epoch >= 0 && state->best_val_accuracy >= 0)
        text += (validated ? tr(", best val top-1 %1% (epoch %2)") : tr(", best training top-1 %1% (epoch %2; no validation split)"))
                    .arg(100 * state->best_val_accuracy, 0, 'f', 2)
                    .arg(state->best_epoch + 1);
      else if (validated)
        text += tr(", last val top-1 %1%").arg(100 * epochs.back().val_accuracy, 0, 'f', 2);
      showMessage(text + "." + testSummary(shownRun_), false);
    } else {
      messageBar_->hide();
    }
    addRecent(shownRun_);
    // Every inspection view switches to this run: its weights, or none.
    followedCheckpoint_.clear();
    loadShownWeights();
    updateActions();
    return true;
  } catch (const std::exception& e) {
    showMessage(tr("Cannot open %1: %2").arg(dir, QString::fromUtf8(e.what())), true);
    return false;
  }
}

// A run someone else writes (a headless `vit train`): reread its logs when they grow.
void MainWindow::followShownRun() {
  if (session_->isRunning() || shownRun_.isEmpty()) return;
  loadShownWeights();  // a new checkpoint reaches the inspection views too
  updateActions();     // Continue follows the run's lock and state
  const qint64 bytes = logBytes(shownRun_);
  if (bytes == followedBytes_) return;
  followedBytes_ = bytes;
  try {
    const vit::RunReader reader(shownRun_.toStdString());
    curves_->setHistory(reader.steps(), reader.metrics());
    showRunProgress(shownRun_);
    updateActions();
  } catch (const std::exception& e) {
    log(QString::fromUtf8(e.what()));
  }
}

// The shown run's weights for the inspection views: the best of a run nobody writes (what it is
// for), the newest of one being written (attention can be watched forming); none when it has no
// checkpoint yet. Loads only when the committed checkpoint changed.
void MainWindow::loadShownWeights() {
  const bool live = vit::run_lock_holder(shownRun_.toStdString()).has_value();
  const QString file = runWeights(shownRun_, live ? vit::Weights::Last : vit::Weights::Best);
  const QString key = file.isEmpty() ? QString("none") : file;
  if (key == followedCheckpoint_) return;
  followedCheckpoint_ = key;
  if (file.isEmpty()) inspector_->unload();
  else inspector_->load(file);
}

void MainWindow::showRunProgress(const QString& dir) {
  try {
    const vit::RunReader reader(dir.toStdString());
    const auto state = reader.state();
    const int planned = reader.info().train.epochs;
    if (!state) {
      status_->setDone(0, 0, 0, planned);
      return;
    }
    const qint64 total = dir == session_->runDir() && lastTotalSteps_ > 0 ? lastTotalSteps_ : 0;
    status_->setDone(state->global_step, total, state->finished ? std::max(planned, state->epoch) : state->epoch, planned);
  } catch (const std::exception&) {
  }
}

void MainWindow::setProbe(const ImageSource& source) {
  probe_ = source;
  attention_->setSourceName(source.name());
  refreshProbe();
}

void MainWindow::refreshProbe() {
  if (!inspector_->hasModel()) {
    refreshPatches();
    return;
  }
  inspector_->inspect(probe_, attention_->params());
  inspector_->patches(probe_, probePatch_);
}

// Cutting into patches needs no weights: without them, the panel's model and data set.
void MainWindow::refreshPatches() {
  if (inspector_->hasModel()) {
    inspector_->patches(probe_, probePatch_);
    return;
  }
  if (!panel_->isValid()) {
    patches_->setEmpty(tr("Fix the settings marked in red to see how their model cuts an image."));
    return;
  }
  // Loading a data set costs a moment: only for the tab on screen (or when asked by a test).
  if (tabs_->currentWidget() != patches_ && probe_.path.isEmpty() && probe_.image.isNull()) return;
  inspector_->patches(probe_, probePatch_);
}

void MainWindow::classifyFiles(const QStringList& paths) {
  QStringList images;
  for (const QString& path : paths) {
    const QFileInfo fi(path);
    if (fi.isDir()) {
      const auto entries = QDir(path).entryInfoList(QDir::Files, QDir::Name);
      for (const QFileInfo& e : entries) {
        if (Inspector::looksLikeImage(e.filePath())) images << e.filePath();
        else predictions_->addRefused(e.filePath(), tr("not an image file (%1 work)").arg(Inspector::imageFormats()));
      }
    } else if (Inspector::looksLikeImage(path)) {
      images << path;
    } else {
      predictions_->addRefused(path, fi.exists() ? tr("not an image file (%1 work)").arg(Inspector::imageFormats())
                                                 : tr("no such file"));
    }
  }
  if (images.size() > 500) {
    predictions_->addRefused(tr("%1 more images").arg(images.size() - 500), tr("at most 500 at a time"));
    images = images.mid(0, 500);
  }
  tabs_->setCurrentWidget(predictions_);
  for (const QString& f : images) classified_.append({f, QImage(), QString()});
  if (!inspector_->hasModel()) {
    showMessage(tr("No model to classify with yet: train one, or open a run (File > Open run)."), true);
    for (const QString& f : images) predictions_->addRefused(f, tr("no model loaded"));
    return;
  }
  inspector_->predict(images);
}

void MainWindow::pasteImage() {
  const QMimeData* mime = QGuiApplication::clipboard()->mimeData();
  if (!mime) return;
  if (mime->hasImage()) {
    const QImage image = qvariant_cast<QImage>(mime->imageData());
    if (!image.isNull() && inspector_->hasModel()) {
      tabs_->setCurrentWidget(predictions_);
      classified_.append({QString(), image, tr("pasted image")});
      inspector_->predictImage(image, tr("pasted image"));
      return;
    }
  }
  QStringList files;
  for (const QUrl& url : mime->urls())
    if (url.isLocalFile()) files << url.toLocalFile();
  if (!files.isEmpty()) classifyFiles(files);
  else if (!inspector_->hasModel()) showMessage(tr("No model to classify with yet: train one, or open a run."), true);
}

void MainWindow::showTab(const QString& name) {
  const QString n = name.toLower();
  if (n == "compare") {
    tabs_->setCurrentWidget(curvesTabs_);
    curvesTabs_->setCurrentWidget(compare_);
    return;
  }
  if (n == "curves") curvesTabs_->setCurrentWidget(curves_);
  const QStringList names{"curves", "summary", "patches", "attention", "predict", "evaluation", "log"};
  if (const int i = int(names.indexOf(n)); i >= 0) tabs_->setCurrentIndex(i);
}

void MainWindow::addRecent(const QString& dir) {
  recent_.removeAll(dir);
  recent_.prepend(dir);
  while (recent_.size() > 10) recent_.removeLast();
  rebuildRecentMenu();
  QSettings().setValue("recentRuns", recent_);
}

void MainWindow::rebuildRecentMenu() {
  recentMenu_->clear();
  for (const QString& dir : recent_) recentMenu_->addAction(dir, this, [this, dir] { openRun(dir); });
  recentMenu_->setEnabled(!recent_.isEmpty());
  compare_->setRecentRuns(recent_);
}

void MainWindow::saveSettings() const {
  QSettings s;
  s.setValue("window/geometry", saveGeometry());
  s.setValue("window/state", saveState());
  s.setValue("window/tab", tabs_->currentIndex());
  s.setValue("panel", panel_->saveState());
  s.setValue("runsRoot", runsRoot_);
  s.setValue("recentRuns", recent_);
  s.setValue("curves/smoothing", curves_->smoothing());
}

void MainWindow::loadSettings() {
  QSettings s;
  if (s.contains("window/geometry")) restoreGeometry(s.value("window/geometry").toByteArray());
  else resize(1360, 860);
  fitToScreen();
  restoreState(s.value("window/state").toByteArray());
  tabs_->setCurrentIndex(s.value("window/tab", 0).toInt());
  if (s.contains("panel")) panel_->restoreState(s.value("panel").toByteArray());
  runsRoot_ = s.value("runsRoot", runsRoot_).toString();
  recent_ = s.value("recentRuns").toStringList();
  curves_->setSmoothing(s.value("curves/smoothing", curves_->smoothing()).toDouble());
  rebuildRecentMenu();
}

// A geometry saved on a larger screen (or the default size) is brought within this one.
void MainWindow::fitToScreen() {
  if (isMaximized() || isFullScreen()) return;
  const QScreen* screen = this->screen() ? this->screen() : QGuiApplication::primaryScreen();
  if (!screen) return;
  const QRect available = screen->availableGeometry();
  // The frame (title bar, borders) counts once the window is shown.
  const int frameW = frameGeometry().width() - width(), frameH = frameGeometry().height() - height();
  resize(std::min(width(), available.width() - frameW), std::min(height(), available.height() - frameH));
  const QRect f = frameGeometry();  // move() places the frame
  move(std::clamp(f.left(), available.left(), std::max(available.left(), available.right() + 1 - f.width())),
       std::clamp(f.top(), available.top(), std::max(available.top(), available.bottom() + 1 - f.height())));
}

// A run the window was training when it last closed (or when it was killed) and that nobody has
// continued since: offered in the message bar.
void MainWindow::offerInterruptedRun() {
  const QString dir = QSettings().value("session/activeRun").toString();
  if (dir.isEmpty()) return;
  try {
    const vit::RunReader reader(dir.toStdString());
    const auto state = reader.state();
    if (!state || state->finished || vit::run_lock_holder(dir.toStdString())) {
      QSettings().remove("session/activeRun");
      return;
    }
    interrupted_ = dir;
    showMessage(tr("%1 was interrupted when the window closed, at epoch %2 of %3 (step %4). "
                   "<a href=\"continue\">Continue it</a> · <a href=\"show\">Show it</a> · "
                   "<a href=\"dismiss\">Dismiss</a>")
                    .arg(QDir(dir).dirName().toHtmlEscaped())
                    .arg(state->epoch + 1)
                    .arg(reader.info().train.epochs)
                    .arg(state->global_step),
                false);
  } catch (const std::exception&) {
    QSettings().remove("session/activeRun");
  }
}

void MainWindow::continueInterrupted() {
  const QString dir = interrupted_;
  if (dir.isEmpty()) return;
  interrupted_.clear();
  QSettings().remove("session/activeRun");
  if (openRun(dir)) continueRun();
}

void MainWindow::showEvent(QShowEvent* event) {
  QMainWindow::showEvent(event);
  if (fitted_) return;
  fitted_ = true;
  fitToScreen();  // now with the frame
  QTimer::singleShot(0, this, &MainWindow::fitToScreen);  // window managers add theirs a moment later
}

void MainWindow::closeEvent(QCloseEvent* event) {
  if (session_->isRunning()) {
    // Stop cleanly first: the trainer finishes its step and writes a consistent run directory;
    // the window closes when finished() arrives, and stays responsive meanwhile.
    closeWhenStopped_ = true;
    session_->stop();
    status_->setState(tr("Stopping before closing..."));
    event->ignore();
    return;
  }
  saveSettings();
  event->accept();
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
  if (event->mimeData()->hasUrls() || event->mimeData()->hasImage()) event->acceptProposedAction();
}

// A dropped folder with a config.json is a run directory to show; a folder with class
// sub-folders (and no images of its own) is an image-folder data set; images, and folders of
// images, are classified.
void MainWindow::dropEvent(QDropEvent* event) {
  QStringList paths;
  for (const QUrl& url : event->mimeData()->urls())
    if (url.isLocalFile()) paths << url.toLocalFile();
  if (paths.isEmpty() && event->mimeData()->hasImage()) {
    const QImage image = qvariant_cast<QImage>(event->mimeData()->imageData());
    if (!image.isNull() && inspector_->hasModel()) inspector_->predictImage(image, tr("dropped image"));
    return;
  }
  if (paths.size() == 1 && QFileInfo(paths[0]).isDir()) {
    const QString dir = paths[0];
    if (vit::RunReader::is_run(dir.toStdString())) {
      openRun(dir);
      return;
    }
    const QFileInfoList files = QDir(dir).entryInfoList(QDir::Files);
    const bool hasImages = std::any_of(files.cbegin(), files.cend(), [](const QFileInfo& f) {
      return Inspector::looksLikeImage(f.filePath());
    });
    if (!hasImages) {
      // A data set folder becomes the data set; anything else is refused with the reason
      // (an empty folder used to switch the data set silently).
      if (session_->isRunning()) showMessage(tr("Stop training before choosing another data set."), true);
      else if (const QString why = panel_->setDatasetFolder(dir); !why.isEmpty()) showMessage(why, true);
      else showMessage(tr("Data set: %1").arg(panel_->datasetSpec()), false);
      return;
    }
  }
  classifyFiles(paths);
}
