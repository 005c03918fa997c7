#include "patch_view.h"

#include <QGridLayout>
#include <QLabel>
#include <QMouseEvent>
#include <QPainter>
#include <QVBoxLayout>

namespace {

constexpr int kSide = 336;  // drawn size of the image and of the similarity map

// A widget that paints through a function, so the three drawings stay next to their data.
class Canvas : public QWidget {
 public:
  std::function<void(QPainter&)> paint;
  std::function<void(QPoint)> click;

 protected:
  void paintEvent(QPaintEvent*) override {
    QPainter p(this);
    if (paint) paint(p);
  }
  void mousePressEvent(QMouseEvent* e) override {
    if (click) click(e->position().toPoint());
  }
};

}  // namespace

PatchView::PatchView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QGridLayout(this);
  auto* grid = new Canvas;
  auto* similarity = new Canvas;
  auto* sequence = new Canvas;
  grid_ = grid, similarity_ = similarity, sequence_ = sequence;
  grid->setFixedSize(kSide, kSide);
  empty_ = tr("Choose a data set in the settings (its first test image is shown), or open a run.");
  grid->setCursor(Qt::PointingHandCursor);
  grid->setToolTip(tr("Click a patch to see how similar its position embedding is to the others"));
  similarity->setFixedSize(kSide + 60, kSide);
  sequence->setMinimumHeight(120);
  caption_ = new QLabel;
  caption_->setWordWrap(true);
  weights_ = new QLabel;
  weights_->setWordWrap(true);
  weights_->setStyleSheet("color: palette(mid);");
  auto* gridTitle = new QLabel(tr("<b>Patches</b> (the model's input, cut into a grid)"));
  auto* simTitle = new QLabel(tr("<b>Position embedding similarity</b> to the selected patch"));
  auto* seqTitle = new QLabel(tr("<b>Token sequence</b>: what the transformer reads, in order"));
  layout->addWidget(gridTitle, 0, 0);
  layout->addWidget(simTitle, 0, 1);
  layout->addWidget(grid, 1, 0);
  layout->addWidget(similarity, 1, 1);
  layout->addWidget(caption_, 2, 0, 1, 2);
  layout->addWidget(weights_, 3, 0, 1, 2);
  layout->addWidget(seqTitle, 4, 0, 1, 2);
  layout->addWidget(sequence, 5, 0, 1, 2);
  layout->setRowStretch(5, 1);
  layout->setColumnStretch(2, 1);

  grid->paint = [this](QPainter& p) {
    const auto& s = shown_;
    if (s.image.isNull() || s.grid <= 0) {
      p.setPen(palette().color(QPalette::WindowText));
      p.drawRect(QRect(0, 0, kSide - 1, kSide - 1));
      p.drawText(QRect(12, 12, kSide - 24, kSide - 24), Qt::AlignCenter | Qt::TextWordWrap, empty_);
      return;
    }
    p.drawImage(QRect(0, 0, kSide, kSide), s.image);
    const double cell = double(kSide) / s.grid;
    p.setPen(QPen(QColor(255, 255, 255, 200), 1));
    for (int i = 1; i < s.grid; ++i) {
      p.drawLine(QPointF(i * cell, 0), QPointF(i * cell, kSide));
      p.drawLine(QPointF(0, i * cell), QPointF(kSide, i * cell));
    }
    if (cell >= 18) {  // indices only where they fit
      QFont f = p.font();
      f.setPixelSize(std::max(8, int(cell / 3.5)));
      p.setFont(f);
      for (int n = 0; n < s.grid * s.grid; ++n) {
        const QRectF r((n % s.grid) * cell + 2, (n / s.grid) * cell + 1, cell, cell);
        p.setPen(Qt::black);
        p.drawText(r.translated(1, 1), Qt::AlignLeft | Qt::AlignTop, QString::number(n));
        p.setPen(Qt::yellow);
        p.drawText(r, Qt::AlignLeft | Qt::AlignTop, QString::number(n));
      }
    }
    p.setPen(QPen(QColor(255, 60, 60), 3));
    p.drawRect(QRectF((s.patch % s.grid) * cell, (s.patch / s.grid) * cell, cell, cell));
  };
  grid->click = [this](QPoint pt) {
    const int n = patchAt(pt);
    if (n >= 0) emit patchClicked(n);
  };

  similarity->paint = [this](QPainter& p) {
    const auto& s = shown_;
    if (s.similarity.isNull() || s.grid <= 0) {
      // Position embeddings are learned: before training there is nothing to compare.
      p.setPen(palette().color(QPalette::Mid));
      p.drawRect(QRect(0, 0, kSide - 1, kSide - 1));
      p.setPen(palette().color(QPalette::WindowText));
      p.drawText(QRect(12, 12, kSide - 24, kSide - 24), Qt::AlignCenter | Qt::TextWordWrap,
                 tr("Position embeddings are learned: train a model (Start) or open a run to see "
                    "how similar they are."));
      return;
    }
    p.drawImage(QRect(0, 0, kSide, kSide), s.similarity);
    const double cell = double(kSide) / s.grid;
    p.setPen(QPen(QColor(255, 60, 60), 3));
    p.drawRect(QRectF((s.patch % s.grid) * cell, (s.patch / s.grid) * cell, cell, cell));
    // Colour bar: viridis from -1 to 1, sampled from the map's own colouring would be uneven,
    // so draw the canonical ends and middle.
    QLinearGradient g(0, kSide - 10, 0, 10);
    g.setColorAt(0.0, QColor(68, 1, 84));
    g.setColorAt(0.25, QColor(59, 82, 139));
    g.setColorAt(0.5, QColor(33, 145, 140));
    g.setColorAt(0.75, QColor(94, 201, 98));
    g.setColorAt(1.0, QColor(253, 231, 37));
    p.fillRect(QRect(kSide + 10, 10, 14, kSide - 20), g);
    p.setPen(palette().color(QPalette::WindowText));
    p.drawText(QPoint(kSide + 28, 20), "1");
    p.drawText(QPoint(kSide + 28, kSide / 2 + 4), "0");
    p.drawText(QPoint(kSide + 28, kSide - 10), "-1");
  };

  sequence->paint = [this](QPainter& p) {
    const auto& s = shown_;
    if (s.image.isNull() || s.grid <= 0) return;
    const int tile = 30, gap = 4, perRow = std::max(1, (sequence_->width() - 8) / (tile + gap));
    int slot = 0;
    auto place = [&](int k) { return QRect(4 + (k % perRow) * (tile + gap), 4 + (k / perRow) * (tile + gap + 12), tile, tile); };
    QFont f = p.font();
    f.setPixelSize(10);
    p.setFont(f);
    if (s.classToken) {
      const QRect r = place(slot++);
      p.fillRect(r, QColor(255, 127, 14));
      p.setPen(Qt::white);
      p.drawText(r, Qt::AlignCenter, "CLS");
    }
    const int patches = s.grid * s.grid;
    const int maxSlots = perRow * std::max(1, (sequence_->height() - 4) / (tile + gap + 12));
    const double src = double(s.image.width()) / s.grid;
    for (int n = 0; n < patches && slot < maxSlots; ++n) {
      const QRect r = place(slot++);
      if (slot == maxSlots && n < patches - 1) {
        p.setPen(palette().color(QPalette::WindowText));
        p.drawText(r, Qt::AlignCenter, QString("+%1").arg(patches - n));
        break;
      }
      p.drawImage(r, s.image, QRectF((n % s.grid) * src, (n / s.grid) * src, src, src));
      p.setPen(n == s.patch ? QColor(255, 60, 60) : palette().color(QPalette::Mid));
      p.drawRect(r.adjusted(0, 0, -1, -1));
      p.setPen(palette().color(QPalette::WindowText));
      p.drawText(QRect(r.left(), r.bottom() + 1, tile, 12), Qt::AlignCenter, QString::number(n));
    }
  };
}

int PatchView::patchAt(const QPoint& pt) const {
  const auto& s = shown_;
  if (s.grid <= 0 || pt.x() < 0 || pt.y() < 0 || pt.x() >= kSide || pt.y() >= kSide) return -1;
  const int col = pt.x() * s.grid / kSide, row = pt.y() * s.grid / kSide;
  return row * s.grid + col;
}

void PatchView::setEmpty(const QString& message) {
  empty_ = message;
  shown_ = PatchInspection{};
  caption_->clear();
  weights_->clear();
  update();
  grid_->update();
  similarity_->update();
  sequence_->update();
}

QString PatchView::caption() const { return caption_->text(); }

void PatchView::showPatches(const PatchInspection& r) {
  if (!r.error.isEmpty()) {
    caption_->setText("<span style='color:#c0392b'>" + r.error.toHtmlEscaped() + "</span>");
    return;
  }
  shown_ = r;
  weights_->setText(r.weights.isEmpty()
                        ? tr("Cut with the settings' model (patch size %1); no weights loaded yet.").arg(r.patchSize)
                        : tr("Weights: %1").arg(r.weights));
  const int n = r.grid * r.grid;
  caption_->setText(tr("%1x%1 px input, %2x%2 patches of %3x%3 px = %4 patches; with the class token "
                       "the transformer reads %5 tokens. Selected: patch %6 (row %7, column %8).")
                        .arg(r.image.width()).arg(r.grid).arg(r.patchSize).arg(n)
                        .arg(n + (r.classToken ? 1 : 0)).arg(r.patch).arg(r.patch / r.grid).arg(r.patch % r.grid));
  grid_->update();
  similarity_->update();
  sequence_->update();
}
