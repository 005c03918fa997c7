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
                        "with Ctrl+V: each is classified by the weights shown, with its attention rollout. "
                        "Without weights yet: train a model (Start) or open a run."));
  hint_->setWordWrap(true);
  auto* open = new QPushButton(tr("Open images..."));
  auto* clearButton = new QPushButton(tr("Clear"));
  top->addWidget(hint_, 1);
  top->addWidget(open);
  top->addWidget(clearButton);
  layout->addLayout(top);
  banner_ = new QLabel;
  banner_->setWordWrap(true);
  banner_->setStyleSheet("background: #fff4d6; color: #6b4e00; padding: 4px; border-radius: 3px;");
  banner_->hide();
  connect(banner_, &QLabel::linkActivated, this, &PredictionsView::refreshRequested);
  layout->addWidget(banner_);
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
  card->setProperty("generation", r.generation);
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
  auto* sizes = new QLabel(tr("%1, read by the model as %2").arg(r.originalSize, r.inputSize));
  sizes->setStyleSheet("color: palette(mid);");
  auto* weights = new QLabel(tr("Weights: %1").arg(r.weights));
  weights->setObjectName("weights");
  weights->setWordWrap(true);
  weights->setStyleSheet("color: palette(mid);");
  right->addWidget(name);
  right->addWidget(bars);
  right->addWidget(sizes);
  right->addWidget(weights);
  right->addStretch(1);
  h->addWidget(image);
  h->addWidget(overlay);
  h->addLayout(right, 1);
  list_->insertWidget(list_->count() - 1, card);
  ++cards_;
  updateStale();
}

void PredictionsView::setCurrentWeights(int generation, const QString& label) {
  currentGeneration_ = generation;
  currentWeights_ = label;
  updateStale();
}

void PredictionsView::updateStale() {
  int stale = 0;
  for (int i = 0; i < list_->count(); ++i) {
    QWidget* card = list_->itemAt(i)->widget();
    if (!card) continue;
    const bool old = card->property("generation").toInt() != currentGeneration_;
    stale += old;
    card->setStyleSheet(old ? "QFrame { background: #fbf7ec; }" : QString());
  }
  if (stale == 0) {
    banner_->hide();
    return;
  }
  banner_->setText(currentWeights_.isEmpty()
                       ? tr("%n card(s) were classified with weights that are no longer loaded.", "", stale)
                       : tr("%n card(s) were classified with other weights than those loaded now (%1). "
                            "<a href=\"#\">Classify again</a>", "", stale).arg(currentWeights_.toHtmlEscaped()));
  banner_->show();
}

int PredictionsView::staleCards() const {
  int stale = 0;
  for (int i = 0; i < list_->count(); ++i)
    if (QWidget* card = list_->itemAt(i)->widget())
      stale += card->property("generation").toInt() != currentGeneration_;
  return stale;
}

QString PredictionsView::bannerText() const { return banner_->isHidden() ? QString() : banner_->text(); }

QStringList PredictionsView::cardWeights() const {
  QStringList out;
  for (int i = 0; i < list_->count(); ++i)
    if (QWidget* card = list_->itemAt(i)->widget())
      if (auto* l = card->findChild<QLabel*>("weights")) out << l->text();
  return out;
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
  banner_->hide();
  emit cleared();
}
