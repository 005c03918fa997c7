// The progress line under the window: a bar over the whole run, epoch and step, images/s, ETA,
// and the run directory (click to open it in the file manager).
#pragma once

#include <QWidget>

class QLabel;
class QProgressBar;

class TrainingStatus : public QWidget {
  Q_OBJECT

 public:
  explicit TrainingStatus(QWidget* parent = nullptr);

  void setProgress(qint64 step, qint64 totalSteps, int epoch, int epochs, double imagesPerSecond,
                   double etaSeconds);
  void setState(const QString& text);   // "Loading Fashion-MNIST...", "Paused", "Finished: ..."
  void setRunDir(const QString& dir);
  void reset();

  QString progressText() const;
  QString stateText() const;
  int percent() const;

  static QString formatDuration(double seconds);  // "1:05:09", "4:07", "0:03"

 private:
  QProgressBar* bar_;
  QLabel* progress_;
  QLabel* state_;
  QLabel* runDir_;
};
