// How the model sees an image: the image at model resolution with the patch grid and patch
// indices over it; the token sequence (class token, then the flattened patches in row-major
// order) as the transformer reads it; and, for the patch the user clicks, the cosine similarity of
// its learned position embedding to every other patch's (the ViT paper's figure 7).
#pragma once

#include <QWidget>

#include "inspection_types.h"

class QLabel;

class PatchView : public QWidget {
  Q_OBJECT

 public:
  explicit PatchView(QWidget* parent = nullptr);
  void showPatches(const PatchInspection& result);
  // Nothing to cut yet (no data set image): what to do instead.
  void setEmpty(const QString& message);
  const PatchInspection& shown() const { return shown_; }
  QString caption() const;  // the caption or the error, for tests
  // The patch under a point of the grid image (widget coordinates of gridWidget()), or -1.
  int patchAt(const QPoint& point) const;
  QWidget* gridWidget() const { return grid_; }

 signals:
  void patchClicked(int patch);

 private:
  QWidget* grid_;
  QWidget* similarity_;
  QWidget* sequence_;
  QLabel* caption_;
  QLabel* weights_;
  QString empty_;
  PatchInspection shown_;
};
