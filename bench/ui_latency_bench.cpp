// Event-loop latency of the ViT Studio window while it trains: a probe timer asks to fire every
// 10 ms; each firing's lateness is how long the GUI thread could not serve events (input, paint).
// Prints p50 / p99 / max stall over the measured window, the probe count, the curves' redraws and
// the trainer's throughput. A benchmark: it prints figures and never fails on a time.
//
//   build/bench/ui_latency_bench [seconds=60] [preset=fmnist-small]
//   (offscreen by default; run under xvfb-run with QT_QPA_PLATFORM=xcb for a real X server)
#include <QAction>
#include <QApplication>
#include <QElapsedTimer>
#include <QTemporaryDir>
#include <QTimer>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "config_panel.h"
#include "curves_view.h"
#include "main_window.h"
#include "runtime.h"
#include "training_session.h"

int main(int argc, char** argv) {
  if (!qEnvironmentVariableIsSet("QT_QPA_PLATFORM") && !qEnvironmentVariableIsSet("DISPLAY"))
    qputenv("QT_QPA_PLATFORM", "offscreen");
  QApplication app(argc, argv);
  QApplication::setOrganizationName("ViT Studio Bench");
  const int seconds = argc > 1 ? std::atoi(argv[1]) : 60;
  const QString preset = argc > 2 ? argv[2] : vit::kDefaultPreset;
  const vit::RuntimeInfo runtime = vit::configure_runtime(0);
  QTemporaryDir runs;

  MainWindow window;
  window.setRunsRoot(runs.path());
  window.panel()->applyPreset(preset);
  window.resize(1360, 860);
  window.show();

  std::vector<double> stalls;  // ms late, per probe firing
  QElapsedTimer clock;
  double lastImagesPerSecond = 0;
  QObject::connect(window.session(), &TrainingSession::progress, &window,
                   [&](const TrainingProgress& p) { lastImagesPerSecond = p.row.images_per_second; });
  QTimer probe;
  probe.setTimerType(Qt::PreciseTimer);
  probe.setInterval(10);
  qint64 last = 0;
  bool measuring = false;
  QObject::connect(&probe, &QTimer::timeout, [&] {
    const qint64 now = clock.nsecsElapsed();
    if (measuring) stalls.push_back(std::max(0.0, (now - last) / 1e6 - 10.0));
    last = now;
  });
  // Measure once training has started (data loaded), for `seconds`.
  QObject::connect(window.session(), &TrainingSession::started, &window, [&] {
    clock.start();
    last = 0;
    measuring = true;
    probe.start();
    QTimer::singleShot(seconds * 1000, &window, [&] {
      measuring = false;
      window.close();  // stops the run cleanly; the app quits when the window is gone
    });
  });
  QObject::connect(&window, &MainWindow::runFinished, &app, [&] { QTimer::singleShot(0, &app, &QApplication::quit); });
  window.startTraining();
  app.exec();

  if (stalls.empty()) {
    std::printf("no measurement: training did not start (%s)\n", qPrintable(window.lastMessage()));
    return 1;
  }
  std::sort(stalls.begin(), stalls.end());
  auto pct = [&](double q) { return stalls[std::min(stalls.size() - 1, size_t(q * double(stalls.size())))]; };
  std::printf("ui_latency_bench: preset %s, %d s of training, %d threads, platform %s\n",
              qPrintable(preset), seconds, runtime.threads, qPrintable(QGuiApplication::platformName()));
  std::printf("  probes %zu (every 10 ms), event-loop stall p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
              stalls.size(), pct(0.50), pct(0.99), stalls.back());
  std::printf("  probes later than 50 ms: %ld; curve redraws %d; trainer %.0f images/s\n",
              long(std::count_if(stalls.begin(), stalls.end(), [](double s) { return s > 50.0; })),
              window.curves()->redraws(), lastImagesPerSecond);
  return 0;
}
