#include "predictions_view.h"

#include <QFrame>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QScrollArea>
#include <QVBoxLayout>

#include "prediction_bars.h"

PredictionsView::PredictionsView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  auto* top = new QHBoxLayout;
  hint_ = new QLabel(tr("Drop images (or a folder of images) anywhere on the window, or paste one "
                        "with Ctrl+V: each is classified by the model shown, with its attention rollout."));
  hint_->setWordWrap(true);
  auto* open = new QPushButton(tr("Open images..."));
  auto* clearButton = new QPushButton(tr("Clear"));
  top->addWidget(hint_, 1);
  top->addWidget(open);
  top->addWidget(clearButton);
  layout->addLayout(top);
  refusedLabel_ = new QLabel;
  refusedLabel_->setWordWrap(true);
  refusedLabel_->setStyleSheet("color: #8a1f11;");
  refusedLabel_->hide();
  layout->addWidget(refusedLabel_);
  auto* content = new QWidget;
  list_ = new QVBoxLayout(content);
  list_->addStretch(1);
  auto* scroll = new QScrollArea;
  scroll->setWidget(content);
  scroll->setWidgetResizable(true);
  layout->addWidget(scroll, 1);
  connect(open, &QPushButton::clicked, this, &PredictionsView::openImages);
  connect(clearButton, &QPushButton::clicked, this, &PredictionsView::clear);
}

void PredictionsView::addResult(const Inspection& r) {
  if (!r.error.isEmpty()) {
    addRefused(r.source, r.error);
    return;
  }
  auto* card = new QFrame;
  card->setFrameShape(QFrame::StyledPanel);
  auto* h = new QHBoxLayout(card);
  auto* image = new QLabel;
  image->setPixmap(QPixmap::fromImage(r.image.scaled(160, 160, Qt::KeepAspectRatio)));
  auto* overlay = new QLabel;
  overlay->setPixmap(QPixmap::fromImage(r.overlay.scaled(160, 160, Qt::KeepAspectRatio)));
  overlay->setToolTip(tr("Attention rollout (mean of heads)"));
  auto* right = new QVBoxLayout;
  auto* name = new QLabel("<b>" + r.source.section('/', -1).toHtmlEscaped() + "</b>");
  name->setToolTip(r.source);
  auto* bars = new PredictionBars;
  bars->setPredictions(r.top);
  right->addWidget(name);
  right->addWidget(bars);
  right->addStretch(1);
  h->addWidget(image);
  h->addWidget(overlay);
  h->addLayout(right, 1);
  list_->insertWidget(list_->count() - 1, card);
  ++cards_;
}

void PredictionsView::addRefused(const QString& file, const QString& why) {
  refused_ << file;
  QString text = refusedLabel_->text();
  if (!text.isEmpty()) text += "\n";
  refusedLabel_->setText(text + tr("Refused %1: %2").arg(file.section('/', -1), why));
  refusedLabel_->show();
}

void PredictionsView::clear() {
  while (list_->count() > 1) {
    QLayoutItem* item = list_->takeAt(0);
    delete item->widget();
    delete item;
  }
  cards_ = 0;
  refused_.clear();
  refusedLabel_->clear();
  refusedLabel_->hide();
}
