// The model summary tab: the core's per-layer table (name, type, output shape, params, MACs) and
// the totals, computed from the config alone so it follows every edit before any training.
#pragma once

#include <QWidget>

#include "vit_config.h"

class QLabel;
class QTableWidget;

class SummaryView : public QWidget {
  Q_OBJECT

 public:
  explicit SummaryView(QWidget* parent = nullptr);

  // Recomputes the table; an invalid config shows its first problem instead.
  void setConfig(const vit::ViTConfig& config);

  QTableWidget* table() const { return table_; }
  QString totals() const;  // the totals line as shown
  qint64 params() const { return params_; }

 private:
  QTableWidget* table_;
  QLabel* totals_;
  QLabel* error_;
  qint64 params_ = 0;
};
