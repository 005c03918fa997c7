#include "training_status.h"

#include <QClipboard>
#include <QDesktopServices>
#include <QDir>
#include <QGuiApplication>
#include <QHBoxLayout>
#include <QLabel>
#include <QProgressBar>
#include <QUrl>

#include <algorithm>
#include <cmath>

TrainingStatus::TrainingStatus(QWidget* parent) : QWidget(parent) {
  auto* layout = new QHBoxLayout(this);
  layout->setContentsMargins(4, 0, 4, 0);
  state_ = new QLabel;
  bar_ = new QProgressBar;
  bar_->setRange(0, 1000);
  bar_->setTextVisible(true);
  bar_->setMaximumWidth(220);
  progress_ = new QLabel;
  runDir_ = new QLabel;
  runDir_->setTextInteractionFlags(Qt::TextBrowserInteraction);
  connect(runDir_, &QLabel::linkActivated, this, &TrainingStatus::openRunDir);
  layout->addWidget(state_);
  layout->addWidget(bar_);
  layout->addWidget(progress_);
  layout->addStretch(1);
  layout->addWidget(runDir_);
  reset();
}

QString TrainingStatus::formatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const qint64 s = qint64(std::llround(seconds));
  const qint64 h = s / 3600, m = (s / 60) % 60, sec = s % 60;
  if (h > 0) return QString("%1:%2:%3").arg(h).arg(m, 2, 10, QChar('0')).arg(sec, 2, 10, QChar('0'));
  return QString("%1:%2").arg(m).arg(sec, 2, 10, QChar('0'));
}

void TrainingStatus::setProgress(qint64 step, qint64 totalSteps, int epoch, int epochs,
                                 double imagesPerSecond, double etaSeconds) {
  const double frac = totalSteps > 0 ? double(step) / double(totalSteps) : 0.0;
  bar_->setValue(int(std::lround(1000 * std::clamp(frac, 0.0, 1.0))));
  bar_->setFormat(QString("%1%").arg(100.0 * frac, 0, 'f', 1));
  progress_->setText(tr("epoch %1/%2 · step %3/%4 · %5 img/s · ETA %6")
                         .arg(epoch + 1)
                         .arg(epochs)
                         .arg(step)
                         .arg(totalSteps)
                         .arg(imagesPerSecond, 0, 'f', 0)
                         .arg(formatDuration(etaSeconds)));
}

void TrainingStatus::setDone(qint64 step, qint64 totalSteps, int epochsDone, int epochs) {
  const double frac = totalSteps > 0 ? double(step) / double(totalSteps)
                      : epochs > 0   ? double(epochsDone) / epochs : 0.0;
  bar_->setValue(int(std::lround(1000 * std::clamp(frac, 0.0, 1.0))));
  bar_->setFormat(QString("%1%").arg(100.0 * std::clamp(frac, 0.0, 1.0), 0, 'f', frac >= 1.0 ? 0 : 1));
  QString text = tr("%1 of %2 epoch(s)").arg(epochsDone).arg(epochs);
  if (step > 0) text += tr(" · step %1").arg(step) + (totalSteps > 0 ? QString("/%1").arg(totalSteps) : QString());
  progress_->setText(text);
}

void TrainingStatus::setState(const QString& text) { state_->setText(text); }

void TrainingStatus::openRunDir() {
  if (dir_.isEmpty()) return;
  if (QDesktopServices::openUrl(QUrl::fromLocalFile(dir_))) return;
  QGuiApplication::clipboard()->setText(dir_);
  emit openFailed(tr("No file manager is set up to open folders here (xdg-open); the run's path is "
                     "copied to the clipboard: %1").arg(QDir::toNativeSeparators(dir_)));
}

void TrainingStatus::setRunDir(const QString& dir) {
  dir_ = dir;
  if (dir.isEmpty()) {
    runDir_->clear();
    return;
  }
  runDir_->setText(tr("Run: <a href=\"%1\">%2</a>")
                       .arg(QUrl::fromLocalFile(dir).toString(), QDir::toNativeSeparators(dir).toHtmlEscaped()));
  runDir_->setToolTip(tr("Open the run directory"));
}

void TrainingStatus::reset() {
  bar_->setValue(0);
  bar_->setFormat("%p%");
  progress_->clear();
  state_->setText(tr("Ready"));
}

QString TrainingStatus::progressText() const { return progress_->text(); }
QString TrainingStatus::stateText() const { return state_->text(); }
int TrainingStatus::percent() const { return bar_->value() / 10; }
