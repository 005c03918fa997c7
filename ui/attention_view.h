// The attention view: choose a block and a head (or fuse the heads: mean, max, min), or roll
// attention out across blocks (optionally gradient-weighted, with a discard ratio); the map is
// drawn over the image with a colour bar and an opacity slider, beside the top-5 prediction, and a
// grid below shows every head of the block at once. The image is the probe (a test image, stepped
// with the arrows, refreshed after every epoch while a run trains) or one the user opened.
#pragma once

#include <QWidget>

#include "inspection_types.h"

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
  AttentionParams params() const;
  void setParams(const AttentionParams& params);
  void setSourceName(const QString& name);
  void showInspection(const Inspection& result);
  void showError(const QString& message);

  const Inspection& shown() const { return shown_; }
  int headTiles() const;  // tiles in the all-heads grid, for tests

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
  QSlider *discard_, *opacity_;
  QLabel *discardLabel_, *opacityLabel_;
  QLabel* image_;
  QWidget* colorBar_;
  PredictionBars* bars_;
  QLabel* caption_;
  QWidget* headsBox_;
  QGridLayout* headsGrid_;
  QStringList classes_;
  Inspection shown_;
  int depth_ = 0;
  bool updating_ = false;
};
