#include "main_window.h"

#include <QAction>
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
#include <QScrollArea>
#include <QSettings>
#include <QStatusBar>
#include <QStyle>
#include <QTabWidget>
#include <QTimer>
#include <QToolBar>
#include <QVBoxLayout>

#include "config_panel.h"
#include "curves_view.h"
#include "run_log.h"
#include "summary_view.h"
#include "training_session.h"
#include "training_status.h"

namespace {

qint64 logBytes(const QString& dir) {
  return QFileInfo(dir + "/steps.csv").size() + QFileInfo(dir + "/metrics.csv").size();
}

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
  tabs_ = new QTabWidget;
  tabs_->addTab(curves_, tr("Curves"));
  tabs_->addTab(summary_, tr("Summary"));
  tabs_->addTab(log_, tr("Log"));

  messageBar_ = new QLabel;
  messageBar_->setWordWrap(true);
  messageBar_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  messageBar_->hide();
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

  buildActions();

  connect(panel_, &ConfigPanel::configChanged, this, [this] {
    summary_->setConfig(panel_->modelConfig());
    updateActions();
  });
  connect(panel_, &ConfigPanel::validityChanged, this, &MainWindow::updateActions);
  connect(session_, &TrainingSession::message, this, &MainWindow::log);
  connect(session_, &TrainingSession::started, this, [this](const QString& dir) {
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

  runsRoot_ = QDir::homePath() + "/vit-runs";
  loadSettings();
  summary_->setConfig(panel_->modelConfig());
  updateActions();
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
  bool canContinue = false;
  if (!running && !shownRun_.isEmpty() && QFileInfo::exists(shownRun_ + "/state.json") &&
      !QFileInfo::exists(shownRun_ + "/test.json")) {
    try {
      const auto info = vit::read_run(shownRun_.toStdString());
      canContinue = int(vit::read_metrics_csv((shownRun_ + "/metrics.csv").toStdString()).size()) < info.train.epochs;
    } catch (const std::exception&) {
    }
  }
  continue_->setEnabled(canContinue);
  panel_->setLocked(running);
}

void MainWindow::setRunsRoot(const QString& dir) { runsRoot_ = dir; }

void MainWindow::startTraining() {
  if (session_->isRunning() || !panel_->isValid()) return;
  const QString name = (panel_->presetName().isEmpty() ? QString("custom") : panel_->presetName()) +
                       "-" + QDateTime::currentDateTime().toString("yyyyMMdd-HHmmss");
  QString dir = QDir(runsRoot_).filePath(name);
  for (int n = 2; QFileInfo::exists(dir); ++n) dir = QDir(runsRoot_).filePath(name + "-" + QString::number(n));
  if (!QDir().mkpath(dir)) {
    showMessage(tr("Cannot create %1: choose another folder with File > Runs folder.").arg(dir), true);
    return;
  }
  TrainingSession::Request request;
  request.model = panel_->modelConfig();
  request.train = panel_->trainConfig();
  request.runDir = dir;
  request.threads = panel_->threads();
  followTimer_->stop();
  shownRun_ = dir;
  curves_->clear();
  curves_->setPlannedEpochs(request.train.epochs);
  status_->reset();
  status_->setState(tr("Starting..."));
  status_->setRunDir(dir);
  messageBar_->hide();
  log_->clear();
  session_->start(request);
  addRecent(dir);
  updateActions();
}

void MainWindow::continueRun() {
  if (session_->isRunning() || shownRun_.isEmpty()) return;
  TrainingSession::Request request;
  request.runDir = shownRun_;
  request.resume = true;
  request.threads = panel_->threads();
  followTimer_->stop();
  status_->setState(tr("Resuming..."));
  messageBar_->hide();
  session_->start(request);
  updateActions();
}

void MainWindow::onProgress(const TrainingProgress& p) {
  curves_->addStep(p.row);
  status_->setProgress(p.row.step, p.totalSteps, p.row.epoch, p.epochs, p.row.images_per_second, p.etaSeconds);
}

void MainWindow::onEpoch(const vit::EpochRow& e, bool best) {
  curves_->addEpoch(e);
  log(tr("Epoch %1: loss %2, val loss %3, val top-1 %4%, top-5 %5%%6")
          .arg(e.epoch + 1)
          .arg(e.loss, 0, 'f', 4)
          .arg(e.val_loss, 0, 'f', 4)
          .arg(100 * e.val_accuracy, 0, 'f', 2)
          .arg(100 * e.val_top5_accuracy, 0, 'f', 2)
          .arg(best ? tr(" (best so far, saved)") : QString()));
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
    text = tr("Finished %1 epoch(s) at %2 images/s.").arg(o.epochs).arg(o.imagesPerSecond, 0, 'f', 0);
  }
  if (o.hasTest)
    text += tr(" Test set (best weights): top-1 %1%, top-5 %2%.")
                .arg(100 * o.testAccuracy, 0, 'f', 2)
                .arg(100 * o.testTop5, 0, 'f', 2);
  status_->setState(error ? tr("Failed") : o.stopReason == "stopped" ? tr("Stopped") : tr("Finished"));
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
    const vit::RunInfo info = vit::read_run(dir.toStdString());
    const auto steps = vit::read_steps_csv((dir + "/steps.csv").toStdString());
    const auto epochs = vit::read_metrics_csv((dir + "/metrics.csv").toStdString());
    panel_->setConfigs(info.model, info.train);
    curves_->setPlannedEpochs(info.train.epochs);
    curves_->setHistory(steps, epochs);
    shownRun_ = QDir(dir).absolutePath();
    followedBytes_ = logBytes(shownRun_);
    followTimer_->start();
    status_->reset();
    status_->setRunDir(shownRun_);
    status_->setState(tr("Viewing run"));
    if (!epochs.empty()) {
      const auto& last = epochs.back();
      showMessage(tr("%1: %2 of %3 epoch(s), last val top-1 %4%.")
                      .arg(QDir(shownRun_).dirName())
                      .arg(epochs.size())
                      .arg(info.train.epochs)
                      .arg(100 * last.val_accuracy, 0, 'f', 2),
                  false);
    } else {
      messageBar_->hide();
    }
    addRecent(shownRun_);
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
  const qint64 bytes = logBytes(shownRun_);
  if (bytes == followedBytes_) return;
  followedBytes_ = bytes;
  try {
    curves_->setHistory(vit::read_steps_csv((shownRun_ + "/steps.csv").toStdString()),
                        vit::read_metrics_csv((shownRun_ + "/metrics.csv").toStdString()));
    updateActions();
  } catch (const std::exception& e) {
    log(QString::fromUtf8(e.what()));
  }
}

void MainWindow::showTab(const QString& name) {
  const QStringList names{"curves", "summary", "log"};
  if (const int i = int(names.indexOf(name.toLower())); i >= 0) tabs_->setCurrentIndex(i);
}

void MainWindow::addRecent(const QString& dir) {
  recent_.removeAll(dir);
  recent_.prepend(dir);
  while (recent_.size() > 10) recent_.removeLast();
  rebuildRecentMenu();
}

void MainWindow::rebuildRecentMenu() {
  recentMenu_->clear();
  for (const QString& dir : recent_) recentMenu_->addAction(dir, this, [this, dir] { openRun(dir); });
  recentMenu_->setEnabled(!recent_.isEmpty());
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
  restoreState(s.value("window/state").toByteArray());
  tabs_->setCurrentIndex(s.value("window/tab", 0).toInt());
  if (s.contains("panel")) panel_->restoreState(s.value("panel").toByteArray());
  runsRoot_ = s.value("runsRoot", runsRoot_).toString();
  recent_ = s.value("recentRuns").toStringList();
  curves_->setSmoothing(s.value("curves/smoothing", curves_->smoothing()).toDouble());
  rebuildRecentMenu();
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
  const auto urls = event->mimeData()->urls();
  if (!session_->isRunning() && urls.size() == 1 && QFileInfo(urls.first().toLocalFile()).isDir())
    event->acceptProposedAction();
}

// A dropped folder is a run directory when it has a config.json, else an image-folder data set.
void MainWindow::dropEvent(QDropEvent* event) {
  const QString dir = event->mimeData()->urls().value(0).toLocalFile();
  if (QFileInfo::exists(dir + "/config.json")) openRun(dir);
  else panel_->setImageFolder(dir);
}
