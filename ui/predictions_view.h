// Classify by drag and drop: each dropped (or pasted) image gets a card with the image, its
// attention rollout overlay and its top-5 probability bars. Files that are not images are refused
// with a message naming them.
#pragma once

#include <QWidget>

#include "inspection_types.h"

class QLabel;
class QVBoxLayout;

class PredictionsView : public QWidget {
  Q_OBJECT

 public:
  explicit PredictionsView(QWidget* parent = nullptr);

  void addResult(const Inspection& result);     // a card, or a refusal when result.error is set
  void addRefused(const QString& file, const QString& why);
  void clear();

  int cards() const { return cards_; }
  QStringList refused() const { return refused_; }

 signals:
  void openImages();

 private:
  QVBoxLayout* list_;
  QLabel* hint_;
  QLabel* refusedLabel_;
  QStringList refused_;
  int cards_ = 0;
};
