// Top-k classes as horizontal probability bars (label, bar, percentage); the true class, when
// known, is marked.
#pragma once

#include <QWidget>

#include "inspection_types.h"

class PredictionBars : public QWidget {
  Q_OBJECT

 public:
  explicit PredictionBars(QWidget* parent = nullptr);
  void setPredictions(const QVector<PredictionItem>& top, int trueLabel = -1);
  const QVector<PredictionItem>& predictions() const { return top_; }
  QSize sizeHint() const override;

 protected:
  void paintEvent(QPaintEvent*) override;

 private:
  QVector<PredictionItem> top_;
  int trueLabel_ = -1;
};
