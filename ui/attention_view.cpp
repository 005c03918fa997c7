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

// OpenCV's COLORMAP_JET (what the overlays use), low to high, labelled with the map's values at
// its ends and middle (the overlay scales the map's minimum to blue and its maximum to red).
class AttentionColorBar : public QWidget {
 public:
  AttentionColorBar() { setFixedWidth(24 + fontMetrics().horizontalAdvance("0.00000")); }
  void setRange(double lo, double hi, bool known) {
    lo_ = lo, hi_ = hi, known_ = known;
    update();
  }
  QString text() const { return known_ ? number(lo_) + " .. " + number(hi_) : QString(); }
  static QString number(double v) { return QString::number(v, 'g', 2); }

 protected:
  void paintEvent(QPaintEvent*) override {
    QPainter p(this);
    const int half = fontMetrics().height() / 2;
    const int top = half + 2, bottom = height() - half - 2;
    QLinearGradient g(0, bottom, 0, top);
    const QColor jet[] = {{0, 0, 128}, {0, 0, 255}, {0, 255, 255}, {255, 255, 0}, {255, 0, 0}, {128, 0, 0}};
    const double at[] = {0.0, 0.125, 0.375, 0.625, 0.875, 1.0};
    for (int i = 0; i < 6; ++i) g.setColorAt(at[i], jet[i]);
    const QRect bar(2, top, 14, bottom - top);
    p.fillRect(bar, g);
    p.setPen(palette().color(QPalette::WindowText));
    p.drawRect(bar);
    const int x = bar.right() + 4;
    auto label = [&](int y, const QString& t) {
      p.drawLine(bar.right(), y, bar.right() + 2, y);
      p.drawText(QRect(x, y - half - 1, width() - x, 2 * half + 2), Qt::AlignLeft | Qt::AlignVCenter, t);
    };
    if (known_) {
      label(top, number(hi_));
      label((top + bottom) / 2, number((lo_ + hi_) / 2));
      label(bottom, number(lo_));
    } else {
      label(top, tr("high"));
      label(bottom, tr("low"));
    }
  }

 private:
  double lo_ = 0, hi_ = 1;
  bool known_ = false;
};

namespace {

QPixmap scaled(const QImage& image, int side) {
  return QPixmap::fromImage(image.scaled(side, side, Qt::KeepAspectRatio, Qt::FastTransformation));
}

}  // namespace

AttentionView::AttentionView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  // Two rows of controls, so the view fits beside the settings on a 1280-pixel screen.
  auto* row1 = new QHBoxLayout;
  prev_ = new QPushButton("<");
  next_ = new QPushButton(">");
  prev_->setToolTip(tr("Previous test image"));
  next_->setToolTip(tr("Next test image"));
  for (auto* b : {prev_, next_}) b->setMaximumWidth(32);
  open_ = new QPushButton(tr("Open image..."));
  source_ = new QLabel;
  source_->setMinimumWidth(60);
  opacity_ = new QSlider(Qt::Horizontal);
  opacity_->setRange(0, 100);
  opacity_->setValue(50);
  opacity_->setMaximumWidth(100);
  opacity_->setToolTip(tr("How strongly the map covers the image"));
  opacityLabel_ = new QLabel;
  opacityLabel_->setMinimumWidth(opacityLabel_->fontMetrics().horizontalAdvance("100%"));
  row1->addWidget(prev_);
  row1->addWidget(next_);
  row1->addWidget(open_);
  row1->addWidget(source_, 1);
  row1->addWidget(new QLabel(tr("Opacity")));
  row1->addWidget(opacity_);
  row1->addWidget(opacityLabel_);
  layout->addLayout(row1);

  auto* row2 = new QHBoxLayout;
  layer_ = new QSpinBox;
  layer_->setToolTip(tr("Block (blocks.N, 0-based); with rollout: roll out blocks 0..N"));
  head_ = new QComboBox;
  head_->setToolTip(tr("One head, or the heads fused per entry by their mean, max or min"));
  rollout_ = new QCheckBox(tr("Rollout"));
  rollout_->setToolTip(tr("Attention rollout (Abnar & Zuidema 2020): (A + I) / 2, rows renormalized, "
                          "multiplied across blocks 0..N"));
  gradient_ = new QCheckBox(tr("Gradient"));
  gradient_->setToolTip(tr("Gradient-weighted rollout: heads weighted by the gradient of the chosen "
                           "class's score (jacobgil's grad rollout)"));
  target_ = new QComboBox;
  target_->setToolTip(tr("Gradient rollout explains this class's score"));
  target_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  target_->setMinimumContentsLength(12);
  discard_ = new QSlider(Qt::Horizontal);
  discard_->setRange(0, 95);
  discard_->setMaximumWidth(100);
  discard_->setToolTip(tr("Rollout: share of the lowest attentions set to 0 (never the class token's)"));
  discardLabel_ = new QLabel;
  discardLabel_->setMinimumWidth(discardLabel_->fontMetrics().horizontalAdvance("0.00"));
  row2->addWidget(new QLabel(tr("Block")));
  row2->addWidget(layer_);
  row2->addWidget(head_);
  row2->addWidget(rollout_);
  row2->addWidget(gradient_);
  row2->addWidget(target_);
  row2->addWidget(new QLabel(tr("Discard")));
  row2->addWidget(discard_);
  row2->addWidget(discardLabel_);
  row2->addStretch(1);
  layout->addLayout(row2);

  auto* main = new QHBoxLayout;
  image_ = new QLabel;
  image_->setFixedSize(336, 336);
  image_->setAlignment(Qt::AlignCenter);
  image_->setFrameShape(QFrame::StyledPanel);
  image_->setWordWrap(true);
  image_->setToolTip(tr("The attention map over the model's input"));
  colorBar_ = new AttentionColorBar;
  colorBar_->setFixedHeight(336);
  colorBar_->setToolTip(tr("The map's values: the overlay stretches its minimum to blue and its maximum to red"));
  auto* right = new QVBoxLayout;
  caption_ = new QLabel;
  caption_->setWordWrap(true);
  weights_ = new QLabel;
  weights_->setWordWrap(true);
  weights_->setStyleSheet("color: palette(mid);");
  bars_ = new PredictionBars;
  original_ = new QLabel;
  original_->setAlignment(Qt::AlignLeft | Qt::AlignTop);
  originalCaption_ = new QLabel;
  originalCaption_->setWordWrap(true);
  right->addWidget(caption_);
  right->addWidget(bars_);
  right->addWidget(weights_);
  right->addSpacing(6);
  right->addWidget(originalCaption_);
  right->addWidget(original_);
  right->addStretch(1);
  main->addWidget(image_);
  main->addWidget(colorBar_);
  main->addSpacing(8);
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
  connect(target_, &QComboBox::currentIndexChanged, this, changed);
  connect(discard_, &QSlider::valueChanged, this, changed);
  connect(opacity_, &QSlider::valueChanged, this, changed);
  connect(prev_, &QPushButton::clicked, this, [this] { emit stepSource(-1); });
  connect(next_, &QPushButton::clicked, this, [this] { emit stepSource(+1); });
  connect(open_, &QPushButton::clicked, this, &AttentionView::openImage);
  setModel(1, 1, {});
  depth_ = 0;
  setNoModel(tr("No weights yet. Press Start to train a model (the map appears after its first epoch), "
                "or open a run with File > Open run."));
}

void AttentionView::setModel(int depth, int heads, const QStringList& classes) {
  updating_ = true;
  const AttentionParams keep = params();
  const bool sameClasses = classes == classes_;
  classes_ = classes;
  layer_->setRange(0, std::max(0, depth - 1));
  head_->clear();
  head_->addItems({tr("mean of heads"), tr("max of heads"), tr("min of heads")});
  for (int h = 0; h < heads; ++h) head_->addItem(tr("head %1").arg(h));
  target_->clear();
  target_->addItem(tr("predicted class"));
  target_->addItems(classes);
  updating_ = false;
  AttentionParams p = keep;
  // A new architecture starts on its last block (what the head reads); the same one keeps the
  // user's choice across epochs.
  if (depth != depth_ || p.layer < 0 || p.layer >= depth) p.layer = depth - 1;
  depth_ = depth;
  if (p.head >= heads) p.head = -1;
  if (!sameClasses || p.targetClass >= classes.size()) p.targetClass = -1;
  setParams(p);
}

void AttentionView::setNoModel(const QString& message) {
  shown_ = Inspection{};
  image_->setPixmap(QPixmap());
  image_->setText(message);
  colorBar_->setRange(0, 1, false);
  bars_->setPredictions({});
  caption_->clear();
  weights_->clear();
  original_->clear();
  originalCaption_->clear();
  while (QLayoutItem* item = headsGrid_->takeAt(0)) {
    delete item->widget();
    delete item;
  }
}

AttentionParams AttentionView::params() const {
  AttentionParams p;
  p.layer = layer_->value();
  const int h = head_->currentIndex();
  p.head = h >= 3 ? h - 3 : -1;
  p.fusion = h == 1 ? "max" : h == 2 ? "min" : "mean";
  p.rollout = rollout_->isChecked();
  p.gradient = gradient_->isChecked();
  p.targetClass = target_->currentIndex() - 1;
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
  target_->setCurrentIndex(std::clamp(p.targetClass + 1, 0, std::max(0, target_->count() - 1)));
  discard_->setValue(int(p.discard * 100));
  opacity_->setValue(int(p.opacity * 100));
  updating_ = false;
  updateEnabled();
}

void AttentionView::updateEnabled() {
  const bool rollout = rollout_->isChecked() || gradient_->isChecked();
  discard_->setEnabled(rollout);
  head_->setEnabled(!gradient_->isChecked());
  target_->setEnabled(gradient_->isChecked());
  discardLabel_->setText(QString::number(discard_->value() / 100.0, 'f', 2));
  opacityLabel_->setText(QString::number(opacity_->value()) + "%");
}

void AttentionView::setSourceName(const QString& name) { source_->setText(name); }

void AttentionView::showError(const QString& message) {
  caption_->setText("<span style='color:#c0392b'>" + message.toHtmlEscaped() + "</span>");
}

QString AttentionView::caption() const { return caption_->text(); }
QString AttentionView::weightsText() const { return weights_->text(); }
QString AttentionView::colorBarText() const { return colorBar_->text(); }

void AttentionView::showInspection(const Inspection& r) {
  if (!r.error.isEmpty()) {
    showError(r.error);
    return;
  }
  shown_ = r;
  source_->setText(r.source);
  image_->setText(QString());
  image_->setPixmap(scaled(r.overlay, 336));
  colorBar_->setRange(r.mapMin, r.mapMax, true);
  const AttentionParams p = params();
  auto className = [this](int i) { return i >= 0 && i < classes_.size() ? classes_[i].toHtmlEscaped() : QString::number(i); };
  QString what = p.gradient ? tr("Gradient-weighted rollout of blocks 0..%1 for <b>%2</b>%3")
                                  .arg(r.layer)
                                  .arg(className(r.targetClass))
                                  .arg(p.targetClass < 0 ? tr(" (the predicted class)") : QString())
                 : p.rollout ? tr("Rollout of blocks 0..%1 (%2)").arg(r.layer).arg(head_->currentText())
                             : tr("Block %1, %2").arg(r.layer).arg(head_->currentText());
  if (r.trueLabel >= 0 && r.trueLabel < classes_.size())
    what += tr("<br>True class: <b>%1</b>").arg(className(r.trueLabel));
  caption_->setText(what);
  bars_->setPredictions(r.top, r.trueLabel);
  weights_->setText(tr("Weights: %1").arg(r.weights));
  originalCaption_->setText(tr("The image (%1); the model reads it as %2, shown enlarged on the left.")
                                .arg(r.originalSize, r.inputSize));
  original_->setPixmap(QPixmap::fromImage(r.original));

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
    headsGrid_->addWidget(tile, h / 6, h % 6);
  }
}

int AttentionView::headTiles() const { return headsGrid_->count(); }
