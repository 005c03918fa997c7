#include "curves_view.h"

#include <qcustomplot.h>

#include <QCheckBox>
#include <QFile>
#include <QFileDialog>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QMenu>
#include <QMessageBox>
#include <QPdfWriter>
#include <QPushButton>
#include <QSlider>
#include <QTextStream>
#include <QTimer>
#include <QVBoxLayout>

#include <cmath>

namespace {

const QColor kTrain(31, 119, 180);   // matplotlib/TensorBoard blue
const QColor kVal(255, 127, 14);     // orange
const QColor kTop5(44, 160, 44);     // green
const QColor kLr(148, 103, 189);     // purple

QCPGraph* addGraph(QCustomPlot* plot, const QString& name, const QColor& color, bool dots,
                   int width = 2) {
  QCPGraph* g = plot->addGraph();
  g->setName(name);
  g->setPen(QPen(color, width));
  if (dots) g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, 5));
  return g;
}

}  // namespace

CurvesView::CurvesView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  auto* controls = new QHBoxLayout;
  smoothingSlider_ = new QSlider(Qt::Horizontal);
  smoothingSlider_->setRange(0, 99);
  smoothingSlider_->setMaximumWidth(200);
  smoothingSlider_->setToolTip(tr("TensorBoard-style exponential moving average of the step loss"));
  smoothingLabel_ = new QLabel;
  logLoss_ = new QCheckBox(tr("Log scale loss"));
  auto* fitButton = new QPushButton(tr("Fit"));
  fitButton->setToolTip(tr("Show all points again (also: double-click a plot)"));
  auto* exportButton = new QPushButton(tr("Export"));
  auto* menu = new QMenu(exportButton);
  menu->addAction(tr("Image (PNG)..."), this, [this] {
    const QString f = QFileDialog::getSaveFileName(this, tr("Save curves"), "curves.png", "PNG (*.png)");
    if (!f.isEmpty()) {
      if (const QString e = saveImage(f); !e.isEmpty()) QMessageBox::warning(this, tr("Export"), e);
    }
  });
  menu->addAction(tr("Vector (PDF)..."), this, [this] {
    const QString f = QFileDialog::getSaveFileName(this, tr("Save curves"), "curves.pdf", "PDF (*.pdf)");
    if (!f.isEmpty()) {
      if (const QString e = savePdf(f); !e.isEmpty()) QMessageBox::warning(this, tr("Export"), e);
    }
  });
  menu->addAction(tr("Data (CSV)..."), this, [this] {
    const QString f = QFileDialog::getSaveFileName(this, tr("Save the per-step data; per-epoch data goes next to it"),
                                                   "steps.csv", "CSV (*.csv)");
    if (f.isEmpty()) return;
    if (const QString e = saveCsv(f, epochsCsvPath(f)); !e.isEmpty()) QMessageBox::warning(this, tr("Export"), e);
  });
  exportButton->setMenu(menu);
  controls->addWidget(new QLabel(tr("Smoothing")));
  controls->addWidget(smoothingSlider_);
  controls->addWidget(smoothingLabel_);
  controls->addSpacing(12);
  controls->addWidget(logLoss_);
  controls->addStretch(1);
  controls->addWidget(fitButton);
  controls->addWidget(exportButton);
  layout->addLayout(controls);

  plotArea_ = new QWidget;
  auto* grid = new QGridLayout(plotArea_);
  grid->setContentsMargins(0, 0, 0, 0);
  stepLoss_ = makePlot(tr("Training loss per step"), tr("step"), tr("loss"));
  epochLoss_ = makePlot(tr("Loss per epoch"), tr("epoch"), tr("loss"));
  accuracy_ = makePlot(tr("Accuracy per epoch"), tr("epoch"), tr("accuracy (%)"));
  lr_ = makePlot(tr("Learning rate"), tr("step"), tr("lr"));
  grid->addWidget(stepLoss_, 0, 0);
  grid->addWidget(epochLoss_, 0, 1);
  grid->addWidget(accuracy_, 1, 0);
  grid->addWidget(lr_, 1, 1);
  layout->addWidget(plotArea_, 1);

  QColor faint = kTrain;
  faint.setAlpha(70);
  graphs_["loss"] = addGraph(stepLoss_, tr("loss"), faint, false, 1);
  graphs_["loss_ema"] = addGraph(stepLoss_, tr("smoothed"), kTrain, false);
  graphs_["epoch_loss"] = addGraph(epochLoss_, tr("train"), kTrain, true);
  graphs_["val_loss"] = addGraph(epochLoss_, tr("validation"), kVal, true);
  graphs_["accuracy"] = addGraph(accuracy_, tr("train top-1"), kTrain, true);
  graphs_["val_accuracy"] = addGraph(accuracy_, tr("val top-1"), kVal, true);
  QColor trainTop5 = kTop5;
  trainTop5.setAlpha(110);
  graphs_["top5_accuracy"] = addGraph(accuracy_, tr("train top-5"), trainTop5, true);
  graphs_["val_top5_accuracy"] = addGraph(accuracy_, tr("val top-5"), kTop5, true);
  graphs_["lr"] = addGraph(lr_, tr("lr"), kLr, false);
  for (QCustomPlot* p : {epochLoss_, accuracy_}) {
    QSharedPointer<QCPAxisTickerFixed> ticker(new QCPAxisTickerFixed);
    ticker->setTickStep(1.0);
    ticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);  // whole epochs only
    p->xAxis->setTicker(ticker);
  }
  lr_->legend->setVisible(false);
  lr_->yAxis->setNumberFormat("gb");
  accuracy_->legend->setVisible(true);
  accuracy_->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignBottom | Qt::AlignRight);

  redrawTimer_ = new QTimer(this);
  redrawTimer_->setSingleShot(true);
  redrawTimer_->setInterval(kRedrawMs);
  connect(redrawTimer_, &QTimer::timeout, this, &CurvesView::redraw);
  connect(smoothingSlider_, &QSlider::valueChanged, this, [this](int v) { setSmoothing(v / 100.0); });
  connect(logLoss_, &QCheckBox::toggled, this, &CurvesView::setLogLoss);
  connect(fitButton, &QPushButton::clicked, this, &CurvesView::fit);
  setSmoothing(smoothing_);
}

QCustomPlot* CurvesView::makePlot(const QString& title, const QString& xLabel, const QString& yLabel) {
  auto* plot = new QCustomPlot;
  plot->setMinimumSize(260, 180);
  plot->plotLayout()->insertRow(0);
  auto* heading = new QCPTextElement(plot, title, QFont(font().family(), font().pointSize() + 1, QFont::Bold));
  plot->plotLayout()->addElement(0, 0, heading);
  plot->xAxis->setLabel(xLabel);
  plot->yAxis->setLabel(yLabel);
  plot->legend->setVisible(true);
  plot->legend->setBrush(QColor(255, 255, 255, 200));
  plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
  plot->setNoAntialiasingOnDrag(true);
  // Once the user zooms or pans, new points no longer move the view; double-click refits.
  connect(plot, &QCustomPlot::mousePress, this, [this] { followData_ = false; });
  connect(plot, &QCustomPlot::mouseWheel, this, [this] { followData_ = false; });
  connect(plot, &QCustomPlot::mouseDoubleClick, this, &CurvesView::fit);
  return plot;
}

std::vector<double> CurvesView::smooth(const std::vector<double>& values, double weight) {
  std::vector<double> out;
  out.reserve(values.size());
  double last = 0.0;
  int n = 0;
  for (double v : values) {
    if (!std::isfinite(v)) {
      out.push_back(v);
      continue;
    }
    last = last * weight + (1.0 - weight) * v;
    ++n;
    const double debias = weight == 0.0 ? 1.0 : 1.0 - std::pow(weight, n);
    out.push_back(last / debias);
  }
  return out;
}

void CurvesView::clear() {
  steps_.clear();
  epochs_.clear();
  followData_ = true;
  redraw();
}

void CurvesView::setHistory(const std::vector<vit::StepRow>& steps, const std::vector<vit::EpochRow>& epochs) {
  steps_ = steps;
  epochs_ = epochs;
  followData_ = true;
  redraw();
}

void CurvesView::addStep(const vit::StepRow& step) {
  steps_.push_back(step);
  scheduleRedraw();
}

void CurvesView::addEpoch(const vit::EpochRow& epoch) {
  epochs_.push_back(epoch);
  scheduleRedraw();
}

void CurvesView::setSmoothing(double weight) {
  smoothing_ = std::clamp(weight, 0.0, 0.99);
  const int v = int(std::lround(smoothing_ * 100));
  if (smoothingSlider_->value() != v) smoothingSlider_->setValue(v);
  smoothingLabel_->setText(QString::number(smoothing_, 'f', 2));
  scheduleRedraw();
}

void CurvesView::setPlannedEpochs(int epochs) {
  plannedEpochs_ = epochs;
  scheduleRedraw();
}

void CurvesView::setLogLoss(bool log) {
  if (logLoss_->isChecked() != log) logLoss_->setChecked(log);
  for (QCustomPlot* p : {stepLoss_, epochLoss_}) {
    if (log) {
      p->yAxis->setScaleType(QCPAxis::stLogarithmic);
      p->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    } else {
      p->yAxis->setScaleType(QCPAxis::stLinear);
      p->yAxis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
    }
  }
  followData_ = true;
  scheduleRedraw();
}

int CurvesView::drawnPoints(const QString& name) const {
  const QCPGraph* g = graphs_.value(name);
  return g ? g->dataCount() : -1;
}

void CurvesView::scheduleRedraw() {
  if (!redrawTimer_->isActive()) redrawTimer_->start();
}

void CurvesView::redraw() {
  redrawTimer_->stop();
  QVector<double> step, loss, lr;
  std::vector<double> rawLoss;
  for (const auto& s : steps_) {
    step << double(s.step);
    loss << s.loss;
    lr << s.lr;
    rawLoss.push_back(s.loss);
  }
  const auto ema = smooth(rawLoss, smoothing_);
  graphs_["loss"]->setData(step, loss, true);
  graphs_["loss"]->setVisible(smoothing_ > 0);
  graphs_["loss_ema"]->setData(step, QVector<double>(ema.begin(), ema.end()), true);
  graphs_["lr"]->setData(step, lr, true);
  // Lines need two points; a single one is drawn as a marker.
  for (const char* name : {"loss", "loss_ema", "lr"}) {
    QCPGraph* g = graphs_[name];
    g->setScatterStyle(g->dataCount() < 2 ? QCPScatterStyle(QCPScatterStyle::ssDisc, 6) : QCPScatterStyle());
  }
  QVector<double> epoch, trainLoss, valLoss, acc, valAcc, valTop5, top5;
  for (const auto& e : epochs_) {
    epoch << e.epoch + 1.0;
    trainLoss << e.loss;
    valLoss << e.val_loss;
    acc << 100.0 * e.accuracy;
    valAcc << 100.0 * e.val_accuracy;
    valTop5 << 100.0 * e.val_top5_accuracy;
    top5 << 100.0 * e.top5_accuracy;
  }
  graphs_["epoch_loss"]->setData(epoch, trainLoss, true);
  graphs_["val_loss"]->setData(epoch, valLoss, true);
  graphs_["accuracy"]->setData(epoch, acc, true);
  graphs_["val_accuracy"]->setData(epoch, valAcc, true);
  graphs_["val_top5_accuracy"]->setData(epoch, valTop5, true);
  graphs_["top5_accuracy"]->setData(epoch, top5, true);
  if (followData_) {
    for (QCustomPlot* p : {stepLoss_, epochLoss_, accuracy_, lr_}) {
      // The data's own extent (QCustomPlot's rescale keeps the old span around a constant).
      const bool log = p->yAxis->scaleType() == QCPAxis::stLogarithmic;
      bool found = false;
      QCPRange x(0, 1), y(0, 1);
      for (int i = 0; i < p->graphCount(); ++i) {
        bool fx = false, fy = false;
        const QCPRange kx = p->graph(i)->getKeyRange(fx, QCP::sdBoth);
        const QCPRange vy = p->graph(i)->getValueRange(fy, log ? QCP::sdPositive : QCP::sdBoth);
        if (!fx || !fy) continue;
        x = found ? QCPRange(std::min(x.lower, kx.lower), std::max(x.upper, kx.upper)) : kx;
        y = found ? QCPRange(std::min(y.lower, vy.lower), std::max(y.upper, vy.upper)) : vy;
        found = true;
      }
      if (x.size() <= 0) x = QCPRange(x.lower - 1, x.upper + 1);  // a single point
      if (log) {
        // A log axis is padded by a factor, so the extreme points (and their markers) stay inside.
        y = found ? QCPRange(y.lower / 1.25, y.upper * 1.25) : QCPRange(0.01, 10);
      } else if (y.size() <= 0) {  // a constant: centred in a band of +-10%
        const double pad = std::max(1e-6, std::abs(y.lower) * 0.1);
        y = QCPRange(y.lower - pad, y.upper + pad);
      } else {
        y = QCPRange(y.lower - 0.05 * y.size(), y.upper + 0.05 * y.size());
      }
      p->xAxis->setRange(x);
      p->yAxis->setRange(y);
    }
    // Epoch axes span the whole planned run; accuracy stays within 0..100%.
    const int lastEpoch = std::max(plannedEpochs_, int(epochs_.size()));
    if (lastEpoch > 0)
      for (QCustomPlot* p : {epochLoss_, accuracy_}) p->xAxis->setRange(0.5, lastEpoch + 0.5);
    if (epochs_.empty()) {
      if (stepLoss_->graph(0)->dataCount()) epochLoss_->yAxis->setRange(stepLoss_->yAxis->range());
      accuracy_->yAxis->setRange(0, 100);
    } else {
      // Within 0..100%, with room for the markers of points at either end.
      const QCPRange a = accuracy_->yAxis->range();
      accuracy_->yAxis->setRange(std::max(-2.0, a.lower), std::min(102.0, a.upper));
    }
    if (steps_.empty() && plannedEpochs_ == 0) {
      stepLoss_->xAxis->setRange(0, 100);
      lr_->xAxis->setRange(0, 100);
    }
  }
  for (QCustomPlot* p : {stepLoss_, epochLoss_, accuracy_, lr_}) p->replot(QCustomPlot::rpQueuedReplot);
  ++redraws_;
}

bool CurvesView::allPointsVisible(const QString& name) const {
  const QCPGraph* g = graphs_.value(name);
  if (!g) return false;
  const QCPRange x = g->keyAxis()->range(), y = g->valueAxis()->range();
  const bool log = g->valueAxis()->scaleType() == QCPAxis::stLogarithmic;
  // A value is visible with its marker when it is inside the range by a margin.
  for (auto it = g->data()->constBegin(); it != g->data()->constEnd(); ++it) {
    if (!std::isfinite(it->value)) continue;
    if (it->key < x.lower || it->key > x.upper) return false;
    if (log) {
      if (it->value <= 0 || it->value < y.lower * 1.02 || it->value > y.upper / 1.02) return false;
    } else if (it->value < y.lower + 0.005 * y.size() || it->value > y.upper - 0.005 * y.size()) {
      return false;
    }
  }
  return true;
}

bool CurvesView::drawsMarkers(const QString& name) const {
  const QCPGraph* g = graphs_.value(name);
  return g && !g->scatterStyle().isNone();
}

void CurvesView::setRunName(const QString& name) { runName_ = name; }

QString CurvesView::exportTitle() const {
  return runName_.isEmpty() ? tr("ViT Studio: training curves") : tr("%1: training curves").arg(runName_);
}

QString CurvesView::epochsCsvPath(const QString& stepsPath) {
  QString base = stepsPath;
  if (base.endsWith(".csv", Qt::CaseInsensitive)) base.chop(4);
  return base + "-epochs.csv";
}

void CurvesView::fit() {
  followData_ = true;
  redraw();
}

QFont CurvesView::titleFont() const {
  QFont f = font();
  f.setPointSize(f.pointSize() + 3);
  f.setBold(true);
  return f;
}

QList<QPair<QCustomPlot*, QRect>> CurvesView::exportLayout(int titleHeight) const {
  // The plots as large as on screen, and never smaller than a readable 480x320.
  const int w = std::max(480, stepLoss_->width()), h = std::max(320, stepLoss_->height());
  QList<QPair<QCustomPlot*, QRect>> out;
  const QList<QCustomPlot*> plots{stepLoss_, epochLoss_, accuracy_, lr_};
  for (int i = 0; i < plots.size(); ++i)
    out.append({plots[i], QRect((i % 2) * w, titleHeight + (i / 2) * h, w, h)});
  return out;
}

QString CurvesView::saveImage(const QString& path) {
  redraw();
  const int titleHeight = QFontMetrics(titleFont()).height() + 16;
  const auto layout = exportLayout(titleHeight);
  const QRect all = layout.front().second.united(layout.back().second).united(QRect(0, 0, 1, titleHeight));
  const double scale = 2.0;  // sharp on high-density screens and in print
  QPixmap image(all.size() * scale);
  image.setDevicePixelRatio(scale);
  image.fill(Qt::white);
  QPainter painter(&image);
  painter.setFont(titleFont());
  painter.setPen(Qt::black);
  painter.drawText(QRect(12, 0, all.width() - 24, titleHeight), Qt::AlignLeft | Qt::AlignVCenter, exportTitle());
  for (const auto& [plot, rect] : layout) {
    QPixmap p = plot->toPixmap(rect.width(), rect.height(), scale);
    p.setDevicePixelRatio(scale);
    painter.drawPixmap(rect.topLeft(), p);
  }
  painter.end();
  if (!image.save(path, "PNG")) return tr("Cannot write %1: check the folder exists and is writable.").arg(path);
  return {};
}

QString CurvesView::savePdf(const QString& path) {
  redraw();
  const int titleHeight = QFontMetrics(titleFont()).height() + 16;
  const auto layout = exportLayout(titleHeight);
  const QRect all = layout.front().second.united(layout.back().second).united(QRect(0, 0, 1, titleHeight));
  // The page is the plots' size at the screen's resolution: one logical pixel is one device
  // pixel, so a 9 pt label prints at 9 pt and sits where it sits on screen (QCustomPlot's own
  // savePdf does the same for one plot).
  const int dpi = std::max(72, logicalDpiY());
  QPdfWriter writer(path);
  writer.setCreator(tr("ViT Studio"));
  writer.setTitle(exportTitle());
  writer.setResolution(dpi);
  const QSizeF points = QSizeF(all.size()) * 72.0 / dpi;
  if (!writer.setPageLayout(QPageLayout(QPageSize(points, QPageSize::Point, QString(), QPageSize::ExactMatch),
                                        QPageLayout::Portrait, QMarginsF(0, 0, 0, 0))))
    return tr("Cannot set up the PDF page for %1.").arg(path);
  QCPPainter painter;
  if (!painter.begin(&writer)) return tr("Cannot write %1: check the folder exists and is writable.").arg(path);
  painter.setMode(QCPPainter::pmVectorized);
  painter.setMode(QCPPainter::pmNoCaching);
  painter.setFont(titleFont());
  painter.setPen(Qt::black);
  painter.drawText(QRect(12, 0, all.width() - 24, titleHeight), Qt::AlignLeft | Qt::AlignVCenter, exportTitle());
  for (const auto& [plot, rect] : layout) {
    painter.save();
    painter.translate(rect.topLeft());
    plot->toPainter(&painter, rect.width(), rect.height());
    painter.restore();
  }
  painter.end();
  return {};
}

QString CurvesView::saveCsv(const QString& stepsPath, const QString& epochsPath) const {
  auto write = [](const QString& path, const QString& text) {
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate | QIODevice::Text)) return false;
    return f.write(text.toUtf8()) >= 0 && f.flush();
  };
  QString steps = QString(vit::kStepsHeader) + ",loss_smoothed\n";
  std::vector<double> raw;
  for (const auto& s : steps_) raw.push_back(s.loss);
  const auto ema = smooth(raw, smoothing_);
  for (size_t i = 0; i < steps_.size(); ++i) {
    const auto& s = steps_[i];
    steps += QString("%1,%2,%3,%4,%5,%6,%7,%8\n")
                 .arg(s.step).arg(s.epoch).arg(s.loss, 0, 'g', 8).arg(s.accuracy, 0, 'g', 8)
                 .arg(s.lr, 0, 'g', 8).arg(s.images_per_second, 0, 'g', 8)
                 .arg(s.elapsed_seconds, 0, 'g', 8).arg(ema[i], 0, 'g', 8);
  }
  QString epochs = QString(vit::kMetricsHeader) + "\n";
  for (const auto& e : epochs_) {
    epochs += QString("%1,%2,%3,%4,%5,%6,%7,%8,%9\n")
                  .arg(e.epoch).arg(e.loss, 0, 'g', 8).arg(e.accuracy, 0, 'g', 8)
                  .arg(e.top5_accuracy, 0, 'g', 8).arg(e.val_loss, 0, 'g', 8)
                  .arg(e.val_accuracy, 0, 'g', 8).arg(e.val_top5_accuracy, 0, 'g', 8)
                  .arg(e.lr, 0, 'g', 8).arg(e.seconds, 0, 'g', 8);
  }
  if (!write(stepsPath, steps)) return tr("Cannot write %1: check the folder exists and is writable.").arg(stepsPath);
  if (!write(epochsPath, epochs)) return tr("Cannot write %1: check the folder exists and is writable.").arg(epochsPath);
  return {};
}
