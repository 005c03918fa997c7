#include "evaluation_view.h"

#include <QGridLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QListWidget>
#include <QPainter>
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
  item->setToolTip(QObject::tr("test image %1: true %2, predicted %3 with %4%. Double-click to see its attention.")
                       .arg(w.index).arg(name(w.trueLabel), name(w.predicted))
                       .arg(100.0 * w.probability, 0, 'f', 1));
  item->setData(Qt::UserRole, qlonglong(w.index));
  return item;
}

// A column header that fits a narrow column: long names break at spaces and slashes.
QString wrapped(const QString& name) {
  if (name.size() <= 8) return name;
  QString out = name;
  out.replace(' ', '\n');
  out.replace('/', "/\n");
  return out;
}

// The matrix's vertical axis title, written bottom to top.
class VerticalLabel : public QWidget {
 public:
  explicit VerticalLabel(const QString& text) : text_(text) {
    setFixedWidth(fontMetrics().height() + 6);
  }

 protected:
  void paintEvent(QPaintEvent*) override {
    QPainter p(this);
    p.setPen(palette().color(QPalette::WindowText));
    QFont f = font();
    f.setBold(true);
    p.setFont(f);
    p.translate(0, height());
    p.rotate(-90);
    p.drawText(QRect(0, 0, height(), width()), Qt::AlignCenter, text_);
  }

 private:
  QString text_;
};

}  // namespace

EvaluationView::EvaluationView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  auto* top = new QHBoxLayout;
  evaluate_ = new QPushButton(tr("Evaluate on the test set"));
  cancel_ = new QPushButton(tr("Cancel"));
  cancel_->setToolTip(tr("Stop the evaluation after the current batch"));
  cancel_->hide();
  progress_ = new QProgressBar;
  progress_->setMaximumWidth(160);
  progress_->hide();
  summary_ = new QLabel(tr("Evaluate the shown model to see where it goes wrong."));
  summary_->setWordWrap(true);
  top->addWidget(evaluate_);
  top->addWidget(cancel_);
  top->addWidget(progress_);
  top->addWidget(summary_, 1);
  layout->addLayout(top);
  stale_ = new QLabel;
  stale_->setWordWrap(true);
  stale_->setStyleSheet("background: #fff4d6; color: #6b4e00; padding: 4px; border-radius: 3px;");
  stale_->hide();
  layout->addWidget(stale_);

  auto* split = new QSplitter(Qt::Horizontal);
  matrix_ = new QTableWidget;
  matrix_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  matrix_->setSelectionMode(QAbstractItemView::SingleSelection);
  // Columns share the pane's width (names wrap in the header), so the matrix fits its pane.
  matrix_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
  matrix_->horizontalHeader()->setMinimumSectionSize(30);
  matrix_->horizontalHeader()->setDefaultAlignment(Qt::AlignCenter);
  matrix_->verticalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  matrix_->setHorizontalScrollBarPolicy(Qt::ScrollBarAsNeeded);
  matrix_->setMinimumWidth(240);
  matrix_->setToolTip(tr("Rows: true class, with its accuracy first. Columns: predicted class. "
                         "Click a cell to see its images."));
  auto* matrixPane = new QWidget;
  auto* mg = new QGridLayout(matrixPane);
  mg->setContentsMargins(0, 0, 0, 0);
  mg->setSpacing(2);
  auto* predictedTitle = new QLabel(tr("<b>Predicted class →</b>"));
  predictedTitle->setAlignment(Qt::AlignCenter);
  mg->addWidget(predictedTitle, 0, 1);
  mg->addWidget(new VerticalLabel(tr("True class →")), 1, 0);
  mg->addWidget(matrix_, 1, 1);

  auto* right = new QWidget;
  auto* rv = new QVBoxLayout(right);
  rv->setContentsMargins(0, 0, 0, 0);
  galleryTitle_ = new QLabel(tr("<b>Most confidently wrong</b>"));
  galleryTitle_->setWordWrap(true);
  gallery_ = new QListWidget;
  gallery_->setViewMode(QListView::IconMode);
  gallery_->setIconSize(QSize(84, 84));
  gallery_->setGridSize(QSize(110, 128));
  gallery_->setResizeMode(QListView::Adjust);
  gallery_->setMovement(QListView::Static);
  gallery_->setMinimumWidth(130);
  gallery_->setToolTip(tr("Double-click an image to see its attention"));
  rv->addWidget(galleryTitle_);
  rv->addWidget(gallery_, 1);
  split->addWidget(matrixPane);
  split->addWidget(right);
  split->setStretchFactor(0, 3);
  split->setStretchFactor(1, 1);
  split->setChildrenCollapsible(false);
  layout->addWidget(split, 1);

  connect(evaluate_, &QPushButton::clicked, this, &EvaluationView::startEvaluation);
  connect(cancel_, &QPushButton::clicked, this, [this] {
    cancel_->setEnabled(false);
    summary_->setText(tr("Cancelling..."));
    emit cancelRequested();
  });
  connect(stale_, &QLabel::linkActivated, this, &EvaluationView::startEvaluation);
  connect(matrix_, &QTableWidget::cellClicked, this, [this](int row, int col) {
    const int n = int(report_.classes.size());  // column 0 is the class's accuracy
    if (row < n && col >= 1 && col <= n) emit cellClicked(row, col - 1);
  });
  connect(gallery_, &QListWidget::itemDoubleClicked, this, [this](QListWidgetItem* item) {
    emit openInAttention(item->data(Qt::UserRole).toLongLong());
  });
}

void EvaluationView::startEvaluation() {
  evaluate_->setEnabled(false);
  cancel_->setEnabled(true);
  cancel_->show();
  stale_->hide();
  progress_->setValue(0);
  progress_->show();
  summary_->setText(tr("Evaluating %1...").arg(currentWeights_.toHtmlEscaped()));
  emit evaluateRequested();
}

void EvaluationView::setEnabledForModel(bool hasModel) {
  evaluate_->setEnabled(hasModel);
  if (!hasModel && report_.classes.isEmpty())
    summary_->setText(tr("No weights to evaluate yet: train a model (Start) or open a run (File > Open run)."));
}

void EvaluationView::setCurrentWeights(int generation, const QString& label) {
  currentGeneration_ = generation;
  currentWeights_ = label;
  if (!report_.classes.isEmpty() && isStale()) {
    stale_->setText(label.isEmpty()
                        ? tr("This evaluation used %1; those weights are no longer loaded.").arg(report_.weights.toHtmlEscaped())
                        : tr("This evaluation used %1; newer weights are loaded (%2). <a href=\"#\">Evaluate again</a>")
                              .arg(report_.weights.toHtmlEscaped(), label.toHtmlEscaped()));
    stale_->show();
  } else {
    stale_->hide();
  }
}

bool EvaluationView::isStale() const {
  return !report_.classes.isEmpty() && report_.generation != currentGeneration_;
}

QString EvaluationView::summaryText() const { return summary_->text(); }
QString EvaluationView::galleryTitle() const { return galleryTitle_->text(); }

void EvaluationView::setProgress(qint64 done, qint64 total) {
  progress_->setRange(0, int(std::max<qint64>(1, total)));
  progress_->setValue(int(done));
}

void EvaluationView::showReport(const EvaluationReport& r) {
  evaluate_->setEnabled(true);
  cancel_->hide();
  progress_->hide();
  if (!r.error.isEmpty()) {
    summary_->setText("<span style='color:#c0392b'>" + r.error.toHtmlEscaped() + "</span>");
    setCurrentWeights(currentGeneration_, currentWeights_);  // the earlier report, if any, stays
    return;
  }
  report_ = r;
  summary_->setText(tr("%1: %2 images, top-1 <b>%3%</b>, top-5 %4%. Weights: %5.")
                        .arg(r.dataset.toHtmlEscaped()).arg(r.count)
                        .arg(100 * r.accuracy, 0, 'f', 2).arg(100 * r.top5, 0, 'f', 2)
                        .arg(r.weights.toHtmlEscaped()));
  const int n = int(r.classes.size());
  matrix_->clear();
  matrix_->setRowCount(n);
  matrix_->setColumnCount(n + 1);
  // "top-1", not "accuracy": the matrix shares its pane's width, and the longer word was clipped.
  QStringList columns{tr("top-1")};
  for (const QString& c : r.classes) columns << wrapped(c);
  matrix_->setHorizontalHeaderLabels(columns);
  matrix_->horizontalHeaderItem(0)->setToolTip(tr("accuracy of each true class (its row)"));
  for (int p = 0; p < n; ++p) matrix_->horizontalHeaderItem(p + 1)->setToolTip(tr("predicted %1").arg(r.classes[p]));
  matrix_->setVerticalHeaderLabels(r.classes);
  for (int t = 0; t < n; ++t) {
    const qint64 rowTotal = r.classCount.value(t);
    for (int p = 0; p < n; ++p) {
      const qint64 c = r.confusion.value(t).value(p);
      auto* item = new QTableWidgetItem(QString::number(c));
      item->setTextAlignment(Qt::AlignCenter);
      item->setToolTip(tr("true %1, predicted %2: %3 image(s)").arg(r.classes[t], r.classes[p]).arg(c));
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
  setCurrentWeights(currentGeneration_, currentWeights_);
}

void EvaluationView::showCell(const CellImages& c) {
  auto name = [&](int i) { return i >= 0 && i < report_.classes.size() ? report_.classes[i] : QString::number(i); };
  const QString count = c.total > c.images.size() ? tr("%1 of %2 shown").arg(c.images.size()).arg(c.total)
                                                  : tr("%n image(s)", "", int(c.images.size()));
  galleryTitle_->setText(tr("<b>True %1, predicted %2</b> (%3, most confident first)")
                             .arg(name(c.trueLabel).toHtmlEscaped(), name(c.predicted).toHtmlEscaped(), count));
  gallery_->clear();
  for (const auto& w : c.images) gallery_->addItem(tile(w, report_.classes));
}
