#include "evaluation_view.h"

#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QListWidget>
#include <QProgressBar>
#include <QPushButton>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

namespace {

QListWidgetItem* tile(const WrongExample& w, const QStringList& classes) {
  auto name = [&](int i) { return i >= 0 && i < classes.size() ? classes[i] : QString::number(i); };
  auto* item = new QListWidgetItem(QIcon(QPixmap::fromImage(w.image)),
                                   QString("%1\n→ %2 %3%").arg(name(w.trueLabel), name(w.predicted))
                                       .arg(100.0 * w.probability, 0, 'f', 0));
  item->setToolTip(QObject::tr("test image %1: true %2, predicted %3 with %4%")
                       .arg(w.index).arg(name(w.trueLabel), name(w.predicted))
                       .arg(100.0 * w.probability, 0, 'f', 1));
  return item;
}

}  // namespace

EvaluationView::EvaluationView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  auto* top = new QHBoxLayout;
  evaluate_ = new QPushButton(tr("Evaluate on the test set"));
  progress_ = new QProgressBar;
  progress_->setMaximumWidth(200);
  progress_->hide();
  summary_ = new QLabel(tr("Evaluate the shown model to see where it goes wrong."));
  summary_->setWordWrap(true);
  top->addWidget(evaluate_);
  top->addWidget(progress_);
  top->addWidget(summary_, 1);
  layout->addLayout(top);

  auto* split = new QSplitter(Qt::Horizontal);
  matrix_ = new QTableWidget;
  matrix_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  matrix_->setSelectionMode(QAbstractItemView::SingleSelection);
  matrix_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  matrix_->verticalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  matrix_->setToolTip(tr("Rows: true class, with its accuracy first. Columns: predicted class. "
                         "Click a cell to see its images."));
  auto* right = new QWidget;
  auto* rv = new QVBoxLayout(right);
  galleryTitle_ = new QLabel(tr("<b>Most confidently wrong</b>"));
  gallery_ = new QListWidget;
  gallery_->setViewMode(QListView::IconMode);
  gallery_->setIconSize(QSize(84, 84));
  gallery_->setGridSize(QSize(120, 128));
  gallery_->setResizeMode(QListView::Adjust);
  gallery_->setMovement(QListView::Static);
  rv->addWidget(galleryTitle_);
  rv->addWidget(gallery_, 1);
  split->addWidget(matrix_);
  split->addWidget(right);
  split->setStretchFactor(0, 1);
  split->setStretchFactor(1, 0);
  split->setSizes({900, 280});  // the matrix needs the room; the gallery shows two columns
  layout->addWidget(split, 1);

  connect(evaluate_, &QPushButton::clicked, this, [this] {
    evaluate_->setEnabled(false);
    progress_->setValue(0);
    progress_->show();
    summary_->setText(tr("Evaluating..."));
    emit evaluateRequested();
  });
  connect(matrix_, &QTableWidget::cellClicked, this, [this](int row, int col) {
    const int n = int(report_.classes.size());  // column 0 is the class's accuracy
    if (row < n && col >= 1 && col <= n) emit cellClicked(row, col - 1);
  });
}

void EvaluationView::setEnabledForModel(bool hasModel) { evaluate_->setEnabled(hasModel); }

void EvaluationView::setProgress(qint64 done, qint64 total) {
  progress_->setRange(0, int(std::max<qint64>(1, total)));
  progress_->setValue(int(done));
}

void EvaluationView::showReport(const EvaluationReport& r) {
  evaluate_->setEnabled(true);
  progress_->hide();
  if (!r.error.isEmpty()) {
    summary_->setText("<span style='color:#c0392b'>" + r.error.toHtmlEscaped() + "</span>");
    return;
  }
  report_ = r;
  summary_->setText(tr("%1: %2 images, top-1 <b>%3%</b>, top-5 %4%.")
                        .arg(r.dataset.toHtmlEscaped()).arg(r.count)
                        .arg(100 * r.accuracy, 0, 'f', 2).arg(100 * r.top5, 0, 'f', 2));
  const int n = int(r.classes.size());
  matrix_->clear();
  matrix_->setRowCount(n);
  matrix_->setColumnCount(n + 1);
  QStringList columns{tr("accuracy")};
  columns << r.classes;
  matrix_->setHorizontalHeaderLabels(columns);
  matrix_->setVerticalHeaderLabels(r.classes);
  for (int t = 0; t < n; ++t) {
    const qint64 rowTotal = r.classCount.value(t);
    for (int p = 0; p < n; ++p) {
      const qint64 c = r.confusion.value(t).value(p);
      auto* item = new QTableWidgetItem(QString::number(c));
      item->setTextAlignment(Qt::AlignCenter);
      const double share = rowTotal > 0 ? double(c) / double(rowTotal) : 0.0;
      // Diagonal in blue, mistakes in red, shaded by the share of the true class.
      const QColor base = t == p ? QColor(31, 119, 180) : QColor(214, 39, 40);
      QColor bg = base;
      bg.setAlphaF(std::min(1.0, share * (t == p ? 1.0 : 3.0)));
      item->setBackground(bg);
      if (share > 0.5) item->setForeground(Qt::white);
      matrix_->setItem(t, p + 1, item);
    }
    auto* acc = new QTableWidgetItem(QString::number(100.0 * r.classAccuracy.value(t), 'f', 1) + "%");
    acc->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    acc->setFont([&] { QFont f = acc->font(); f.setBold(true); return f; }());
    matrix_->setItem(t, 0, acc);
  }
  galleryTitle_->setText(tr("<b>Most confidently wrong</b> (%1)").arg(r.wrong.size()));
  gallery_->clear();
  for (const auto& w : r.wrong) gallery_->addItem(tile(w, r.classes));
}

void EvaluationView::showCell(const CellImages& c) {
  auto name = [&](int i) { return i >= 0 && i < report_.classes.size() ? report_.classes[i] : QString::number(i); };
  galleryTitle_->setText(tr("<b>True %1, predicted %2</b> (%3 shown, most confident first)")
                             .arg(name(c.trueLabel), name(c.predicted)).arg(c.images.size()));
  gallery_->clear();
  for (const auto& w : c.images) gallery_->addItem(tile(w, report_.classes));
}
