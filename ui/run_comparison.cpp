#include "run_comparison.h"

#include <qcustomplot.h>

#include <QComboBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QMenu>
#include <QPushButton>
#include <QSplitter>
#include <QTableWidget>
#include <QTimer>
#include <QToolButton>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>
#include <map>

#include "curves_view.h"
#include "run_dir.h"
#include "training_status.h"

namespace {

// Matplotlib's tab10, TensorBoard's run colours.
const QColor kPalette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                           {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};

enum Column { kRun, kData, kPatch, kDim, kDepth, kHeads, kLr, kBatch, kEpochs, kPrecision, kBestVal, kTest, kTime, kColumns };

// Sorts by the number behind the text (Qt::UserRole), not by the text.
class NumberItem : public QTableWidgetItem {
 public:
  NumberItem(const QString& text, double value) : QTableWidgetItem(text) {
    setData(Qt::UserRole, value);
    setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
  }
  bool operator<(const QTableWidgetItem& other) const override {
    return data(Qt::UserRole).toDouble() < other.data(Qt::UserRole).toDouble();
  }
};

qint64 logBytes(const QString& dir) {
  const vit::RunPaths paths(dir.toStdString());
  return QFileInfo(QString::fromStdString(paths.steps())).size() +
         QFileInfo(QString::fromStdString(paths.metrics())).size() +
         QFileInfo(QString::fromStdString(paths.test())).size();
}

QString dataName(const std::string& spec) {
  const QString s = QString::fromStdString(spec);
  const QString kind = s.section(':', 0, 0), dir = s.section(':', 1);
  if (dir.isEmpty()) return kind;
  return kind == "folder" ? QDir(dir).dirName() : kind + " " + QDir(dir).dirName();
}

QPixmap swatch(const QColor& c) {
  QPixmap p(12, 12);
  p.fill(c);
  return p;
}

}  // namespace

RunComparison::RunComparison(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  auto* controls = new QHBoxLayout;
  auto* addFolder = new QToolButton;
  addFolder->setText(tr("Add from runs folder"));
  addFolder->setPopupMode(QToolButton::InstantPopup);
  auto* folderMenu = new QMenu(addFolder);
  addFolder->setMenu(folderMenu);
  connect(folderMenu, &QMenu::aboutToShow, this, [this, folderMenu] {
    folderMenu->clear();
    const QStringList dirs = runsIn(runsRoot_);
    if (dirs.isEmpty()) folderMenu->addAction(tr("No runs in %1").arg(runsRoot_))->setEnabled(false);
    else
      folderMenu->addAction(tr("All %1 runs").arg(dirs.size()), this, [this, dirs] {
        for (const QString& d : dirs) addRun(d);
      });
    folderMenu->addSeparator();
    for (const QString& d : dirs) {
      QAction* a = folderMenu->addAction(QDir(d).dirName(), this, [this, d] { addRun(d); });
      a->setCheckable(true);
      a->setChecked(runs().contains(d));
    }
  });
  auto* addRecent = new QToolButton;
  addRecent->setText(tr("Add recent"));
  addRecent->setPopupMode(QToolButton::InstantPopup);
  auto* recentMenu = new QMenu(addRecent);
  addRecent->setMenu(recentMenu);
  connect(recentMenu, &QMenu::aboutToShow, this, [this, recentMenu] {
    recentMenu->clear();
    if (recent_.isEmpty()) recentMenu->addAction(tr("No recent runs"))->setEnabled(false);
    for (const QString& d : recent_) recentMenu->addAction(d, this, [this, d] { addRun(d); });
  });
  auto* addOther = new QPushButton(tr("Add run..."));
  connect(addOther, &QPushButton::clicked, this, [this] {
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Add a run to compare"), runsRoot_);
    if (dir.isEmpty()) return;
    if (const QString why = addRun(dir); !why.isEmpty()) empty_->setText(why);
  });
  auto* remove = new QPushButton(tr("Remove"));
  remove->setToolTip(tr("Remove the selected runs from the comparison"));
  connect(remove, &QPushButton::clicked, this, [this] {
    QStringList dirs;
    for (const auto& range : table_->selectedRanges())
      for (int r = range.topRow(); r <= range.bottomRow(); ++r) dirs << table_->item(r, kRun)->data(Qt::UserRole).toString();
    for (const QString& d : dirs) removeRun(d);
  });
  metricBox_ = new QComboBox;
  const QList<QPair<QString, QString>> metrics{
      {"val_accuracy", tr("Validation top-1")}, {"accuracy", tr("Training top-1")},
      {"val_top5_accuracy", tr("Validation top-5")}, {"val_loss", tr("Validation loss")},
      {"loss", tr("Training loss (per epoch)")}, {"step_loss", tr("Training loss (per step, smoothed)")},
      {"lr", tr("Learning rate")}};
  for (const auto& [key, name] : metrics) metricBox_->addItem(name, key);
  metricBox_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  metricBox_->setMinimumContentsLength(16);
  xBox_ = new QComboBox;
  xBox_->addItems({tr("epoch"), tr("step"), tr("training time")});
  xBox_->setToolTip(tr("Training time excludes pauses"));
  controls->addWidget(addFolder);
  controls->addWidget(addRecent);
  controls->addWidget(addOther);
  controls->addWidget(remove);
  controls->addStretch(1);
  controls->addWidget(new QLabel(tr("Plot")));
  controls->addWidget(metricBox_);
  controls->addWidget(new QLabel(tr("against")));
  controls->addWidget(xBox_);
  layout->addLayout(controls);

  auto* split = new QSplitter(Qt::Vertical);
  auto* top = new QWidget;
  auto* tv = new QVBoxLayout(top);
  tv->setContentsMargins(0, 0, 0, 0);
  plot_ = new QCustomPlot;
  plot_->setMinimumHeight(180);
  plot_->legend->setVisible(true);
  plot_->legend->setBrush(QColor(255, 255, 255, 210));
  plot_->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignBottom | Qt::AlignRight);
  plot_->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
  tracer_ = new QCPItemTracer(plot_);
  tracer_->setStyle(QCPItemTracer::tsCircle);
  tracer_->setSize(9);
  tracer_->setVisible(false);
  readout_ = new QLabel;
  readout_->setTextFormat(Qt::RichText);
  readout_->setWordWrap(true);
  readout_->setMinimumHeight(readout_->fontMetrics().height() * 2);
  empty_ = new QLabel(tr("Add runs to compare: from the runs folder, Open recent, or any folder."));
  empty_->setWordWrap(true);
  tv->addWidget(plot_, 1);
  tv->addWidget(readout_);
  tv->addWidget(empty_);
  table_ = new QTableWidget(0, kColumns);
  table_->setHorizontalHeaderLabels({tr("Run"), tr("Data"), tr("Patch"), tr("Dim"), tr("Depth"), tr("Heads"),
                                     tr("lr"), tr("Batch"), tr("Epochs"), tr("Precision"), tr("Best val top-1"),
                                     tr("Test top-1"), tr("Time")});
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  table_->horizontalHeader()->setSectionResizeMode(kRun, QHeaderView::Interactive);
  table_->horizontalHeader()->setStretchLastSection(true);
  table_->verticalHeader()->hide();
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setSortingEnabled(true);
  table_->setToolTip(tr("Click a header to sort; untick a run to hide its curve; double-click to open it"));
  split->addWidget(top);
  split->addWidget(table_);
  split->setStretchFactor(0, 3);
  split->setStretchFactor(1, 1);
  layout->addWidget(split, 1);

  connect(metricBox_, &QComboBox::currentIndexChanged, this, [this] { setMetric(metricBox_->currentData().toString()); });
  connect(xBox_, &QComboBox::currentIndexChanged, this, [this](int i) { setXAxis(XAxis(i)); });
  connect(table_, &QTableWidget::itemChanged, this, [this](QTableWidgetItem* item) {
    if (updatingTable_ || item->column() != kRun) return;
    setRunVisible(item->data(Qt::UserRole).toString(), item->checkState() == Qt::Checked);
  });
  connect(table_, &QTableWidget::cellDoubleClicked, this, [this](int row, int) {
    emit openRunRequested(table_->item(row, kRun)->data(Qt::UserRole).toString());
  });
  connect(plot_, &QCustomPlot::mouseMove, this, [this](QMouseEvent* e) { hoverAt(plot_->xAxis->pixelToCoord(e->position().x())); });
  reloadTimer_ = new QTimer(this);
  reloadTimer_->setInterval(2000);
  connect(reloadTimer_, &QTimer::timeout, this, &RunComparison::reload);
  redraw();
}

QStringList RunComparison::runsIn(const QString& root) {
  QStringList out;
  if (root.isEmpty()) return out;
  const auto entries = QDir(root).entryInfoList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Time);
  for (const QFileInfo& e : entries)
    if (vit::RunReader::is_run(e.absoluteFilePath().toStdString())) out << e.absoluteFilePath();
  return out;
}

QColor RunComparison::nextColor() const {
  // The first palette colour no shown run uses.
  for (const QColor& c : kPalette)
    if (std::none_of(runs_.begin(), runs_.end(), [&](const Run& r) { return r.color == c; })) return c;
  return kPalette[runs_.size() % std::size(kPalette)];
}

QString RunComparison::load(Run& run) const {
  try {
    const vit::RunReader reader(run.dir.toStdString());
    reader.info();  // config.json must parse
    run.epochs = reader.metrics();
    run.steps = reader.steps();
    run.bytes = logBytes(run.dir);
    return {};
  } catch (const std::exception& e) {
    return QString::fromUtf8(e.what());
  }
}

QString RunComparison::addRun(const QString& path) {
  const QString dir = QDir(path).absolutePath();
  if (runs().contains(dir)) return {};
  if (!vit::RunReader::is_run(dir.toStdString())) return tr("%1 is not a run directory (it has no config.json)").arg(dir);
  Run run;
  run.dir = dir;
  run.name = QDir(dir).dirName();
  run.color = nextColor();
  if (const QString why = load(run); !why.isEmpty()) return tr("Cannot compare %1: %2").arg(dir, why);
  run.graph = plot_->addGraph();
  run.graph->setName(run.name);
  run.graph->setPen(QPen(run.color, 2));
  run.graph->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, 4));
  runs_.push_back(std::move(run));
  reloadTimer_->start();
  rebuildTable();
  redraw();
  return {};
}

void RunComparison::removeRun(const QString& dir) {
  auto it = std::find_if(runs_.begin(), runs_.end(), [&](const Run& r) { return r.dir == dir; });
  if (it == runs_.end()) return;
  plot_->removeGraph(it->graph);
  runs_.erase(it);
  if (runs_.empty()) reloadTimer_->stop();
  rebuildTable();
  redraw();
}

void RunComparison::clear() {
  while (!runs_.empty()) removeRun(runs_.back().dir);
}

void RunComparison::setRunVisible(const QString& dir, bool visible) {
  for (auto& r : runs_)
    if (r.dir == dir) r.visible = visible;
  updatingTable_ = true;
  for (int row = 0; row < table_->rowCount(); ++row)
    if (table_->item(row, kRun)->data(Qt::UserRole).toString() == dir)
      table_->item(row, kRun)->setCheckState(visible ? Qt::Checked : Qt::Unchecked);
  updatingTable_ = false;
  redraw();
}

void RunComparison::setMetric(const QString& metric) {
  metric_ = metric;
  const int i = metricBox_->findData(metric);
  if (i >= 0 && i != metricBox_->currentIndex()) metricBox_->setCurrentIndex(i);
  redraw();
}

void RunComparison::setXAxis(XAxis axis) {
  x_ = axis;
  if (xBox_->currentIndex() != int(axis)) xBox_->setCurrentIndex(int(axis));
  redraw();
}

void RunComparison::reload() {
  bool changed = false;
  for (auto& r : runs_) {
    if (logBytes(r.dir) == r.bytes) continue;
    load(r);
    changed = true;
  }
  if (changed) {
    rebuildTable();
    redraw();
  }
}

QStringList RunComparison::runs() const {
  QStringList out;
  for (const auto& r : runs_) out << r.dir;
  return out;
}

// The run's points for the chosen metric and x axis. Per-epoch metrics sit at the epoch's end:
// epoch N, the last step logged in it, or the training time summed over epochs 1..N.
QVector<QPointF> RunComparison::series(const Run& run) const {
  QVector<QPointF> out;
  std::map<int, int64_t> lastStep;  // epoch -> last logged step in it
  for (const auto& s : run.steps) lastStep[s.epoch] = std::max(lastStep[s.epoch], s.step);
  const bool perStep = metric_ == "step_loss" || metric_ == "lr";
  if (perStep) {
    // Steps on an epoch axis: the epoch plus the share of it done, from the logged steps.
    int64_t perEpoch = 0;
    if (lastStep.size() >= 2) perEpoch = lastStep.begin()->second;
    else if (!run.steps.empty()) perEpoch = std::max<int64_t>(1, run.steps.back().step);
    std::vector<double> values;
    for (const auto& s : run.steps) values.push_back(metric_ == "lr" ? s.lr : s.loss);
    if (metric_ == "step_loss") values = CurvesView::smooth(values, 0.6);
    for (size_t i = 0; i < run.steps.size(); ++i) {
      const auto& s = run.steps[i];
      const double x = x_ == XAxis::Step ? double(s.step)
                       : x_ == XAxis::Time ? s.elapsed_seconds
                                           : (perEpoch > 0 ? double(s.step) / double(perEpoch) : s.epoch + 1.0);
      out.append({x, values[i]});
    }
    return out;
  }
  double seconds = 0;
  for (const auto& e : run.epochs) {
    seconds += e.seconds;
    double v = 0;
    if (metric_ == "val_accuracy") v = 100 * e.val_accuracy;
    else if (metric_ == "accuracy") v = 100 * e.accuracy;
    else if (metric_ == "val_top5_accuracy") v = 100 * e.val_top5_accuracy;
    else if (metric_ == "val_loss") v = e.val_loss;
    else v = e.loss;
    double x = e.epoch + 1.0;
    if (x_ == XAxis::Time) x = seconds;
    else if (x_ == XAxis::Step) {
      const auto it = lastStep.find(e.epoch);
      if (it == lastStep.end()) continue;  // no steps logged: no step to put it at
      x = double(it->second);
    }
    out.append({x, v});
  }
  return out;
}

QString RunComparison::xTitle() const {
  return x_ == XAxis::Epoch ? tr("epoch") : x_ == XAxis::Step ? tr("step") : tr("training time (s)");
}

void RunComparison::redraw() {
  tracer_->setGraph(nullptr);
  tracer_->setVisible(false);
  readout_->clear();
  for (auto& r : runs_) {
    QVector<double> x, y;
    for (const QPointF& p : series(r)) x << p.x(), y << p.y();
    r.graph->setData(x, y, true);
    r.graph->setVisible(r.visible);
    if (r.visible) r.graph->addToLegend();
    else r.graph->removeFromLegend();
  }
  plot_->legend->setVisible(plot_->legend->itemCount() > 0);
  plot_->xAxis->setLabel(xTitle());
  plot_->yAxis->setLabel(metricBox_->currentText());
  plot_->rescaleAxes(/*onlyVisiblePlottables=*/true);
  const QCPRange x = plot_->xAxis->range(), y = plot_->yAxis->range();
  plot_->xAxis->setRange(x.size() > 0 ? QCPRange(x.lower - 0.02 * x.size(), x.upper + 0.02 * x.size()) : QCPRange(x.lower - 1, x.upper + 1));
  plot_->yAxis->setRange(y.size() > 0 ? QCPRange(y.lower - 0.05 * y.size(), y.upper + 0.05 * y.size())
                                      : QCPRange(y.lower - 1, y.upper + 1));
  if (visibleGraphs() == 0) plot_->xAxis->setRange(0, 1), plot_->yAxis->setRange(0, 1);
  empty_->setVisible(runs_.empty());
  plot_->replot(QCustomPlot::rpQueuedReplot);
}

int RunComparison::visibleGraphs() const {
  return int(std::count_if(runs_.begin(), runs_.end(), [](const Run& r) { return r.visible && r.graph->dataCount() > 0; }));
}

int RunComparison::legendItems() const { return plot_->legend->itemCount(); }

int RunComparison::points(const QString& dir) const {
  for (const auto& r : runs_)
    if (r.dir == dir) return r.graph->dataCount();
  return -1;
}

double RunComparison::lastX(const QString& dir) const {
  for (const auto& r : runs_)
    if (r.dir == dir && r.graph->dataCount() > 0) return (r.graph->data()->constEnd() - 1)->key;
  return std::nan("");
}

QString RunComparison::readout() const { return readout_->text(); }

// Every shown run's value at the point nearest to x; the tracer marks the nearest of them.
QString RunComparison::hoverAt(double x) {
  QStringList parts;
  const Run* nearest = nullptr;
  double nearestDistance = 0, nearestKey = 0;
  for (const auto& r : runs_) {
    if (!r.visible || r.graph->dataCount() == 0) continue;
    auto it = r.graph->data()->findBegin(x, /*expandedRange=*/false);
    if (it == r.graph->data()->constEnd()) --it;
    if (it != r.graph->data()->constBegin()) {
      auto prev = it - 1;
      if (std::abs(prev->key - x) < std::abs(it->key - x)) it = prev;
    }
    const bool percent = metric_.endsWith("accuracy");
    parts << QString("<span style='color:%1'>■</span> %2: <b>%3</b> at %4 %5")
                 .arg(r.color.name(), r.name.toHtmlEscaped(),
                      percent ? QString::number(it->value, 'f', 2) + "%" : QString::number(it->value, 'g', 4),
                      xTitle(), QString::number(it->key, 'g', 6));
    const double d = std::abs(it->key - x);
    if (!nearest || d < nearestDistance) nearest = &r, nearestDistance = d, nearestKey = it->key;
  }
  if (nearest) {
    tracer_->setGraph(nearest->graph);
    tracer_->setGraphKey(nearestKey);
    tracer_->setPen(QPen(nearest->color, 2));
    tracer_->setVisible(true);
  } else {
    tracer_->setVisible(false);
  }
  readout_->setText(parts.join("<br>"));
  plot_->replot(QCustomPlot::rpQueuedReplot);
  return readout_->text();
}

void RunComparison::rebuildTable() {
  updatingTable_ = true;
  table_->setSortingEnabled(false);
  table_->setRowCount(int(runs_.size()));
  for (int row = 0; row < int(runs_.size()); ++row) {
    const Run& r = runs_[size_t(row)];
    vit::RunInfo info;
    std::optional<vit::RunState> state;
    std::optional<nlohmann::json> test;
    try {
      const vit::RunReader reader(r.dir.toStdString());
      info = reader.info();
      state = reader.state();
      test = reader.test();
    } catch (const std::exception&) {
    }
    auto* name = new QTableWidgetItem(QIcon(swatch(r.color)), r.name);
    name->setData(Qt::UserRole, r.dir);
    name->setFlags(name->flags() | Qt::ItemIsUserCheckable);
    name->setCheckState(r.visible ? Qt::Checked : Qt::Unchecked);
    name->setToolTip(r.dir);
    table_->setItem(row, kRun, name);
    table_->setItem(row, kData, new QTableWidgetItem(dataName(info.train.dataset)));
    auto number = [&](int column, double v, const QString& text) { table_->setItem(row, column, new NumberItem(text, v)); };
    number(kPatch, info.model.patch_size, QString::number(info.model.patch_size));
    number(kDim, info.model.dim, QString::number(info.model.dim));
    number(kDepth, info.model.depth, QString::number(info.model.depth));
    number(kHeads, info.model.heads, QString::number(info.model.heads));
    number(kLr, info.train.lr, QString::number(info.train.lr, 'g', 3));
    number(kBatch, info.train.batch_size, QString::number(info.train.batch_size));
    number(kEpochs, double(r.epochs.size()), QString("%1/%2").arg(r.epochs.size()).arg(info.train.epochs));
    table_->setItem(row, kPrecision, new QTableWidgetItem(QString::fromStdString(info.train.precision)));
    double best = -1, seconds = 0;
    for (const auto& e : r.epochs) best = std::max(best, e.val_accuracy), seconds += e.seconds;
    if (state && state->elapsed_seconds > 0) seconds = state->elapsed_seconds;
    number(kBestVal, best, best >= 0 ? QString::number(100 * best, 'f', 2) + "%" : QString("-"));
    const double testAcc = test && test->contains("accuracy") ? (*test)["accuracy"].get<double>() : -1;
    number(kTest, testAcc, testAcc >= 0 ? QString::number(100 * testAcc, 'f', 2) + "%" : QString("-"));
    number(kTime, seconds, TrainingStatus::formatDuration(seconds));
  }
  table_->setSortingEnabled(true);
  table_->resizeColumnToContents(kRun);
  updatingTable_ = false;
}
