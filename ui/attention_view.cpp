#include "attention_view.h"

#include <QCheckBox>
#include <QComboBox>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLinearGradient>
#include <QPainter>
#include <QPushButton>
#include <QScrollArea>
#include <QSlider>
#include <QSpinBox>
#include <QVBoxLayout>

#include "prediction_bars.h"

namespace {

// OpenCV's COLORMAP_JET (what the overlays use), low to high, with "low" / "high" ends.
class ColorBar : public QWidget {
 public:
  ColorBar() { setFixedWidth(54); }

 protected:
  void paintEvent(QPaintEvent*) override {
    QPainter p(this);
    const int top = fontMetrics().height() + 4, bottom = height() - fontMetrics().height() - 4;
    QLinearGradient g(0, bottom, 0, top);
    const QColor jet[] = {{0, 0, 128}, {0, 0, 255}, {0, 255, 255}, {255, 255, 0}, {255, 0, 0}, {128, 0, 0}};
    const double at[] = {0.0, 0.125, 0.375, 0.625, 0.875, 1.0};
    for (int i = 0; i < 6; ++i) g.setColorAt(at[i], jet[i]);
    p.fillRect(QRect(8, top, 18, bottom - top), g);
    p.setPen(palette().color(QPalette::WindowText));
    p.drawRect(QRect(8, top, 18, bottom - top));
    p.drawText(QRect(0, 0, width(), top), Qt::AlignLeft | Qt::AlignVCenter, tr("high"));
    p.drawText(QRect(0, bottom + 2, width(), height() - bottom), Qt::AlignLeft | Qt::AlignVCenter, tr("low"));
  }
};

QPixmap scaled(const QImage& image, int side) {
  return QPixmap::fromImage(image.scaled(side, side, Qt::KeepAspectRatio, Qt::FastTransformation));
}

}  // namespace

AttentionView::AttentionView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  auto* controls = new QHBoxLayout;
  prev_ = new QPushButton("<");
  next_ = new QPushButton(">");
  prev_->setToolTip(tr("Previous test image"));
  next_->setToolTip(tr("Next test image"));
  for (auto* b : {prev_, next_}) b->setMaximumWidth(32);
  open_ = new QPushButton(tr("Open image..."));
  source_ = new QLabel;
  layer_ = new QSpinBox;
  layer_->setToolTip(tr("Block (blocks.N, 0-based); with rollout: roll out blocks 0..N"));
  head_ = new QComboBox;
  head_->setToolTip(tr("One head, or the heads fused per entry by their mean, max or min"));
  rollout_ = new QCheckBox(tr("Rollout"));
  rollout_->setToolTip(tr("Attention rollout (Abnar & Zuidema 2020): (A + I) / 2, rows renormalized, "
                          "multiplied across blocks 0..N"));
  gradient_ = new QCheckBox(tr("Gradient-weighted"));
  gradient_->setToolTip(tr("Rollout with heads weighted by the gradient of the predicted class's score"));
  discard_ = new QSlider(Qt::Horizontal);
  discard_->setRange(0, 95);
  discard_->setMaximumWidth(110);
  discard_->setToolTip(tr("Rollout: share of the lowest attentions set to 0 (never the class token's)"));
  discardLabel_ = new QLabel;
  opacity_ = new QSlider(Qt::Horizontal);
  opacity_->setRange(0, 100);
  opacity_->setValue(50);
  opacity_->setMaximumWidth(110);
  opacityLabel_ = new QLabel;
  controls->addWidget(prev_);
  controls->addWidget(next_);
  controls->addWidget(open_);
  controls->addWidget(source_);
  controls->addStretch(1);
  controls->addWidget(new QLabel(tr("Block")));
  controls->addWidget(layer_);
  controls->addWidget(head_);
  controls->addWidget(rollout_);
  controls->addWidget(gradient_);
  controls->addWidget(new QLabel(tr("Discard")));
  controls->addWidget(discard_);
  controls->addWidget(discardLabel_);
  controls->addWidget(new QLabel(tr("Opacity")));
  controls->addWidget(opacity_);
  controls->addWidget(opacityLabel_);
  layout->addLayout(controls);

  auto* main = new QHBoxLayout;
  image_ = new QLabel;
  image_->setFixedSize(336, 336);
  image_->setAlignment(Qt::AlignCenter);
  image_->setFrameShape(QFrame::StyledPanel);
  colorBar_ = new ColorBar;
  colorBar_->setFixedHeight(336);
  auto* right = new QVBoxLayout;
  caption_ = new QLabel;
  caption_->setWordWrap(true);
  bars_ = new PredictionBars;
  right->addWidget(caption_);
  right->addWidget(bars_);
  right->addStretch(1);
  main->addWidget(image_);
  main->addWidget(colorBar_);
  main->addSpacing(12);
  main->addLayout(right, 1);
  layout->addLayout(main);

  headsBox_ = new QGroupBox(tr("Every head of this block"));
  headsGrid_ = new QGridLayout(headsBox_);
  headsGrid_->setAlignment(Qt::AlignTop | Qt::AlignLeft);
  auto* scroll = new QScrollArea;
  scroll->setWidget(headsBox_);
  scroll->setWidgetResizable(true);
  layout->addWidget(scroll, 1);

  auto changed = [this] {
    updateEnabled();
    if (!updating_) emit paramsChanged();
  };
  connect(layer_, &QSpinBox::valueChanged, this, changed);
  connect(head_, &QComboBox::currentIndexChanged, this, changed);
  connect(rollout_, &QCheckBox::toggled, this, changed);
  connect(gradient_, &QCheckBox::toggled, this, changed);
  connect(discard_, &QSlider::valueChanged, this, changed);
  connect(opacity_, &QSlider::valueChanged, this, changed);
  connect(prev_, &QPushButton::clicked, this, [this] { emit stepSource(-1); });
  connect(next_, &QPushButton::clicked, this, [this] { emit stepSource(+1); });
  connect(open_, &QPushButton::clicked, this, &AttentionView::openImage);
  setModel(1, 1, {});
  depth_ = 0;
  updateEnabled();
}

void AttentionView::setModel(int depth, int heads, const QStringList& classes) {
  updating_ = true;
  const AttentionParams keep = params();
  classes_ = classes;
  layer_->setRange(0, std::max(0, depth - 1));
  head_->clear();
  head_->addItems({tr("mean of heads"), tr("max of heads"), tr("min of heads")});
  for (int h = 0; h < heads; ++h) head_->addItem(tr("head %1").arg(h));
  updating_ = false;
  AttentionParams p = keep;
  // A new architecture starts on its last block (what the head reads); the same one keeps the
  // user's choice across epochs.
  if (depth != depth_ || p.layer < 0 || p.layer >= depth) p.layer = depth - 1;
  depth_ = depth;
  if (p.head >= heads) p.head = -1;
  setParams(p);
}

AttentionParams AttentionView::params() const {
  AttentionParams p;
  p.layer = layer_->value();
  const int h = head_->currentIndex();
  p.head = h >= 3 ? h - 3 : -1;
  p.fusion = h == 1 ? "max" : h == 2 ? "min" : "mean";
  p.rollout = rollout_->isChecked();
  p.gradient = gradient_->isChecked();
  p.discard = discard_->value() / 100.0;
  p.opacity = opacity_->value() / 100.0;
  p.allHeads = true;
  return p;
}

void AttentionView::setParams(const AttentionParams& p) {
  updating_ = true;
  layer_->setValue(p.layer < 0 ? layer_->maximum() : p.layer);
  head_->setCurrentIndex(p.head >= 0 ? p.head + 3 : p.fusion == "max" ? 1 : p.fusion == "min" ? 2 : 0);
  rollout_->setChecked(p.rollout);
  gradient_->setChecked(p.gradient);
  discard_->setValue(int(p.discard * 100));
  opacity_->setValue(int(p.opacity * 100));
  updating_ = false;
  updateEnabled();
}

void AttentionView::updateEnabled() {
  const bool rollout = rollout_->isChecked() || gradient_->isChecked();
  discard_->setEnabled(rollout);
  head_->setEnabled(!gradient_->isChecked());
  discardLabel_->setText(QString::number(discard_->value() / 100.0, 'f', 2));
  opacityLabel_->setText(QString::number(opacity_->value()) + "%");
}

void AttentionView::setSourceName(const QString& name) { source_->setText(name); }

void AttentionView::showError(const QString& message) {
  caption_->setText("<span style='color:#c0392b'>" + message.toHtmlEscaped() + "</span>");
}

void AttentionView::showInspection(const Inspection& r) {
  if (!r.error.isEmpty()) {
    showError(r.error);
    return;
  }
  shown_ = r;
  source_->setText(r.source);
  image_->setPixmap(scaled(r.overlay, 336));
  const AttentionParams p = params();
  QString what = p.gradient ? tr("Gradient-weighted rollout of blocks 0..%1").arg(r.layer)
                 : p.rollout ? tr("Rollout of blocks 0..%1 (%2)").arg(r.layer).arg(head_->currentText())
                             : tr("Block %1, %2").arg(r.layer).arg(head_->currentText());
  if (r.trueLabel >= 0 && r.trueLabel < classes_.size())
    what += tr("<br>True class: <b>%1</b>").arg(classes_[r.trueLabel].toHtmlEscaped());
  caption_->setText(what);
  bars_->setPredictions(r.top, r.trueLabel);

  while (QLayoutItem* item = headsGrid_->takeAt(0)) {
    delete item->widget();
    delete item;
  }
  for (int h = 0; h < r.heads.size(); ++h) {
    auto* tile = new QWidget;
    auto* v = new QVBoxLayout(tile);
    v->setContentsMargins(2, 2, 2, 2);
    auto* img = new QLabel;
    img->setPixmap(scaled(r.heads[h], 112));
    auto* label = new QLabel(tr("head %1").arg(h));
    label->setAlignment(Qt::AlignCenter);
    v->addWidget(img);
    v->addWidget(label);
    headsGrid_->addWidget(tile, h / 8, h % 8);
  }
}

int AttentionView::headTiles() const { return headsGrid_->count(); }
