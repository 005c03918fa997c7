#include "summary_view.h"

#include <QHeaderView>
#include <QLabel>
#include <QTableWidget>
#include <QVBoxLayout>

#include "summary.h"

namespace {

QString shape(const std::vector<int64_t>& s) {
  QStringList parts;
  for (int64_t d : s) parts << QString::number(d);
  return "(" + parts.join(", ") + ")";
}

// Numbers right-aligned with thousands separators, sortable by value.
QTableWidgetItem* count(int64_t value) {
  auto* item = new QTableWidgetItem(QString::fromStdString(vit::with_commas(value)));
  item->setData(Qt::UserRole, qlonglong(value));
  item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
  return item;
}

}  // namespace

SummaryView::SummaryView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  totals_ = new QLabel;
  totals_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  totals_->setWordWrap(true);
  error_ = new QLabel;
  error_->setWordWrap(true);
  error_->setStyleSheet("color: #c0392b;");
  error_->hide();
  table_ = new QTableWidget(0, 5);
  table_->setHorizontalHeaderLabels({tr("Layer"), tr("Type"), tr("Output shape"), tr("Params"), tr("MACs")});
  table_->horizontalHeader()->setSectionResizeMode(0, QHeaderView::Stretch);
  for (int c = 1; c < 5; ++c) table_->horizontalHeader()->setSectionResizeMode(c, QHeaderView::ResizeToContents);
  table_->verticalHeader()->hide();
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setAlternatingRowColors(true);
  table_->setToolTip(tr("Per image. MACs follow fvcore's convention (timm's GMAC figures): "
                        "Linear/Conv, the QK^T and AV matmuls, LayerNorm at 5 per element."));
  layout->addWidget(totals_);
  layout->addWidget(error_);
  layout->addWidget(table_, 1);
}

void SummaryView::setConfig(const vit::ViTConfig& config) {
  vit::ModelSummary s;
  try {
    s = vit::summarize(config);
  } catch (const std::exception& e) {
    error_->setText(tr("No summary: %1").arg(QString::fromUtf8(e.what())));
    error_->show();
    table_->setEnabled(false);
    return;
  }
  error_->hide();
  table_->setEnabled(true);
  table_->setUpdatesEnabled(false);
  table_->setRowCount(int(s.layers.size()));
  for (int r = 0; r < int(s.layers.size()); ++r) {
    const auto& l = s.layers[size_t(r)];
    table_->setItem(r, 0, new QTableWidgetItem(QString::fromStdString(l.name)));
    table_->setItem(r, 1, new QTableWidgetItem(QString::fromStdString(l.type)));
    table_->setItem(r, 2, new QTableWidgetItem(shape(l.output_shape)));
    table_->setItem(r, 3, count(l.params));
    table_->setItem(r, 4, count(l.macs));
  }
  table_->setUpdatesEnabled(true);
  params_ = s.params;
  totals_->setText(tr("<b>%1</b> parameters (%2 trainable), <b>%3</b> MACs = %4 FLOPs per image, "
                      "%5 MiB of fp32 weights; %6 tokens of dim %7 (%8x%8 patches of %9 px).")
                       .arg(QString::fromStdString(vit::with_commas(s.params)),
                            QString::fromStdString(vit::with_commas(s.trainable_params)),
                            QString::fromStdString(vit::si(double(s.macs))),
                            QString::fromStdString(vit::si(double(s.flops))),
                            QString::number(s.weight_mib, 'f', 2))
                       .arg(config.num_tokens())
                       .arg(config.dim)
                       .arg(config.grid())
                       .arg(config.patch_size));
  if (config.training_patches() < config.num_patches())
    totals_->setText(totals_->text() + tr(" Training steps keep %1 of the %2 patches (patch dropout %3).")
                                           .arg(config.training_patches())
                                           .arg(config.num_patches())
                                           .arg(config.patch_drop));
}

QString SummaryView::totals() const { return totals_->text(); }
