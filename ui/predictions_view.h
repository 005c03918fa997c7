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
  // The weights now loaded: cards made with others say so, and the banner offers to classify
  // them again.
  void setCurrentWeights(int generation, const QString& label);

  int cards() const { return cards_; }
  int staleCards() const;
  QStringList refused() const { return refused_; }
  QString bannerText() const;  // "" when hidden
  QStringList cardWeights() const;  // each card's weights line, for tests

 signals:
  void openImages();
  void refreshRequested();  // classify the cards' images again with the current weights
  void cleared();

 private:
  void updateStale();

  QVBoxLayout* list_;
  QLabel* hint_;
  QLabel* banner_;
  QLabel* refusedLabel_;
  QStringList refused_;
  int cards_ = 0;
  int currentGeneration_ = 0;
  QString currentWeights_;
};
