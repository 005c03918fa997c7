#include "prediction_bars.h"

#include <QPainter>

PredictionBars::PredictionBars(QWidget* parent) : QWidget(parent) {
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
}

void PredictionBars::setPredictions(const QVector<PredictionItem>& top, int trueLabel) {
  top_ = top;
  trueLabel_ = trueLabel;
  updateGeometry();
  update();
}

QSize PredictionBars::sizeHint() const {
  return {240, std::max(1, int(top_.size())) * (fontMetrics().height() + 6)};
}

void PredictionBars::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.setRenderHint(QPainter::Antialiasing);
  const int row = fontMetrics().height() + 6;
  QFont bold = font();
  bold.setBold(true);
  const QFontMetrics boldMetrics(bold);
  int labelWidth = 0;
  for (const auto& t : top_) labelWidth = std::max(labelWidth, boldMetrics.horizontalAdvance(t.label));
  labelWidth = std::min(labelWidth + 8, width() / 2);
  const int percentWidth = fontMetrics().horizontalAdvance("100.0%") + 6;
  const int barWidth = std::max(10, width() - labelWidth - percentWidth);
  for (int i = 0; i < top_.size(); ++i) {
    const auto& t = top_[i];
    const int y = i * row;
    const bool correct = trueLabel_ >= 0 && t.index == trueLabel_;
    QFont f = font();
    f.setBold(i == 0);
    p.setFont(f);
    p.setPen(palette().color(QPalette::WindowText));
    p.drawText(QRect(0, y, labelWidth - 4, row), Qt::AlignVCenter | Qt::AlignRight,
               QFontMetrics(f).elidedText(t.label, Qt::ElideRight, labelWidth - 4));
    const QRect track(labelWidth, y + 3, barWidth, row - 6);
    p.fillRect(track, palette().color(QPalette::AlternateBase));
    QColor c = correct ? QColor(44, 160, 44) : i == 0 ? QColor(31, 119, 180) : QColor(120, 160, 200);
    p.fillRect(QRect(track.left(), track.top(), int(track.width() * t.probability), track.height()), c);
    p.drawText(QRect(labelWidth + barWidth + 4, y, percentWidth, row), Qt::AlignVCenter | Qt::AlignLeft,
               QString::number(100.0 * t.probability, 'f', 1) + "%");
  }
}
