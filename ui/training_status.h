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
  // A run that is not training (stopped, finished, opened): how far it got, without speed or ETA.
  void setDone(qint64 step, qint64 totalSteps, int epochsDone, int epochs);
  void setState(const QString& text);   // "Loading Fashion-MNIST...", "Paused", "Finished: ..."
  void setRunDir(const QString& dir);
  void reset();
  // What clicking the run link does: opens the folder in the file manager; where none is set up,
  // copies the path to the clipboard and says so through openFailed().
  void openRunDir();

  QString progressText() const;
  QString stateText() const;
  int percent() const;

  static QString formatDuration(double seconds);  // "1:05:09", "4:07", "0:03"

 signals:
  void openFailed(const QString& message);

 private:
  QString dir_;
  QProgressBar* bar_;
  QLabel* progress_;
  QLabel* state_;
  QLabel* runDir_;
};
