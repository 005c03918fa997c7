// The ViT Studio window: the hyperparameter panel (left), tabs with the live curves, the model
// summary and the log (centre), a progress line (bottom), and Start / Pause / Stop / Open run.
// It wires the widgets of ui/ to the TrainingSession; torch never appears here.
#pragma once

#include <QMainWindow>
#include <QImage>
#include <QStringList>
#include <QVector>

#include "inspection_types.h"

class AttentionView;
class ConfigPanel;
class CurvesView;
class EvaluationView;
class Inspector;
class PatchView;
class PredictionsView;
class QAction;
class RunComparison;
class QLabel;
class QMenu;
class QPlainTextEdit;
class QTabWidget;
class QTimer;
class SummaryView;
class TrainingSession;
class TrainingStatus;
struct TrainingOutcome;
struct TrainingProgress;
namespace vit {
struct EpochRow;
}

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  // Where new runs go: <root>/<preset>-<date>-<time>. Persisted in QSettings.
  void setRunsRoot(const QString& dir);
  QString runsRoot() const { return runsRoot_; }

  // Shows a run directory: its settings in the panel, its curves; follows it while a headless
  // `vit train` keeps writing. Returns false (and says why in the message bar) when it can't.
  bool openRun(const QString& dir);
  void startTraining();
  void continueRun();  // resume the shown run where it stopped
  // "curves", "compare", "summary", "patches", "attention", "predict", "evaluation", "log"
  void showTab(const QString& name);
  // Classifies image files (folders: the images directly inside); other files are refused with
  // a message. What dropping files on the window does.
  void classifyFiles(const QStringList& paths);
  void pasteImage();  // an image or image files from the clipboard
  void setProbe(const ImageSource& source);  // the image of the patch and attention views

  ConfigPanel* panel() const { return panel_; }
  SummaryView* summary() const { return summary_; }
  CurvesView* curves() const { return curves_; }
  TrainingStatus* status() const { return status_; }
  TrainingSession* session() const { return session_; }
  Inspector* inspector() const { return inspector_; }
  AttentionView* attentionView() const { return attention_; }
  PatchView* patchView() const { return patches_; }
  PredictionsView* predictionsView() const { return predictions_; }
  EvaluationView* evaluationView() const { return evaluation_; }
  RunComparison* comparison() const { return compare_; }
  QAction* continueAction() const { return continue_; }
  QStringList recentRuns() const { return recent_; }
  // The weights every inspection view uses now (label "" when none), as the inspector reported.
  const ModelInfo& shownWeights() const { return weights_; }
  // A run the window was training when it closed (or crashed), offered for continuing; "" none.
  QString interruptedRun() const { return interrupted_; }
  void continueInterrupted();  // opens the interrupted run and continues it
  QAction* startAction() const { return start_; }
  QAction* pauseAction() const { return pause_; }
  QAction* stopAction() const { return stop_; }
  QString shownRun() const { return shownRun_; }
  QString lastMessage() const;  // the message bar's text ("" when hidden)

 signals:
  void runFinished(const TrainingOutcome& outcome);  // after the window has shown the outcome

 protected:
  void closeEvent(QCloseEvent* event) override;
  void showEvent(QShowEvent* event) override;
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;

 private:
  void buildActions();
  void updateActions();
  void onProgress(const TrainingProgress& p);
  void onEpoch(const vit::EpochRow& e, bool best);
  void onFinished(const TrainingOutcome& outcome);
  static QString testSummary(const QString& runDir);
  void log(const QString& text);
  void showMessage(const QString& text, bool error);
  void followShownRun();
  void loadShownWeights();  // the shown run's current checkpoint into the inspector, or none
  void refreshPatches();
  void showRunProgress(const QString& dir);  // the status line for a run that is not training
  void offerInterruptedRun();
  void fitToScreen();
  void addRecent(const QString& dir);
  void rebuildRecentMenu();
  void refreshProbe();
  void saveSettings() const;
  void loadSettings();

  ConfigPanel* panel_;
  SummaryView* summary_;
  PatchView* patches_;
  AttentionView* attention_;
  PredictionsView* predictions_;
  EvaluationView* evaluation_;
  Inspector* inspector_;
  ImageSource probe_;
  int probePatch_ = 0;
  CurvesView* curves_;
  QPlainTextEdit* log_;
  QTabWidget* tabs_;
  QTabWidget* curvesTabs_;
  RunComparison* compare_;
  TrainingStatus* status_;
  TrainingSession* session_;
  QLabel* messageBar_;
  QAction *start_, *pause_, *stop_, *open_, *continue_;
  QMenu* recentMenu_;
  QTimer* followTimer_;
  QString runsRoot_;
  QString shownRun_;        // run whose curves are shown (ours or opened)
  qint64 followedBytes_ = -1;  // size of the followed run's logs at the last read
  QString followedCheckpoint_;  // the followed run's committed weights at the last look
  ModelInfo weights_;           // what the inspector has loaded
  bool runStarted_ = false;     // our session's run has its directory (started() came)
  bool resuming_ = false;
  qint64 lastStep_ = 0, lastTotalSteps_ = 0;  // the latest progress report
  QString interrupted_;
  struct Classified {
    QString path;
    QImage image;
    QString name;
  };
  QVector<Classified> classified_;  // the Predict cards' images, to classify again
  QTimer* patchTimer_;
  QStringList recent_;
  bool closeWhenStopped_ = false;
  bool fitted_ = false;  // brought within the screen once its frame is known
};
