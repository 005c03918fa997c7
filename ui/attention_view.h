// The attention view: choose a block and a head (or fuse the heads: mean, max, min), or roll
// attention out across blocks (optionally gradient-weighted for a chosen class, with a discard
// ratio); the map is drawn over the model's input with a colour bar of the map's values and an
// opacity slider, beside the image as given, the top-5 prediction and the weights used; a grid
// below shows every head of the block at once. The image is the probe (a test image, stepped with
// the arrows, refreshed when new weights arrive) or one the user opened.
#pragma once

#include <QWidget>

#include "inspection_types.h"

class AttentionColorBar;
class PredictionBars;
class QCheckBox;
class QComboBox;
class QGridLayout;
class QLabel;
class QPushButton;
class QSlider;
class QSpinBox;

class AttentionView : public QWidget {
  Q_OBJECT

 public:
  explicit AttentionView(QWidget* parent = nullptr);

  void setModel(int depth, int heads, const QStringList& classes);
  // No weights to look with: the view says what to do instead of showing a stale map.
  void setNoModel(const QString& message);
  AttentionParams params() const;
  void setParams(const AttentionParams& params);
  void setSourceName(const QString& name);
  void showInspection(const Inspection& result);
  void showError(const QString& message);

  const Inspection& shown() const { return shown_; }
  int headTiles() const;  // tiles in the all-heads grid, for tests
  QString caption() const;      // what the map shows (or the error), for tests
  QString weightsText() const;  // the weights line
  QString colorBarText() const; // "0.012 .. 0.31": the colour bar's ends
  QComboBox* targetClassBox() const { return target_; }

 signals:
  void paramsChanged();
  void stepSource(int delta);  // previous / next test image
  void openImage();

 private:
  void updateEnabled();

  QLabel* source_;
  QPushButton *prev_, *next_, *open_;
  QSpinBox* layer_;
  QComboBox* head_;
  QCheckBox *rollout_, *gradient_;
  QComboBox* target_;
  QSlider *discard_, *opacity_;
  QLabel *discardLabel_, *opacityLabel_;
  QLabel* image_;
  AttentionColorBar* colorBar_;
  QLabel* original_;
  QLabel* originalCaption_;
  PredictionBars* bars_;
  QLabel* caption_;
  QLabel* weights_;
  QWidget* headsBox_;
  QGridLayout* headsGrid_;
  QStringList classes_;
  Inspection shown_;
  int depth_ = 0;
  bool updating_ = false;
};
