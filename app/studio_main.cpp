// `vit-studio`: the ViT Studio window. Options exist for scripted use (screenshots for the
// README, demos): open a run, set fields, start training, grab the window after a delay.
#include <QAbstractSpinBox>
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QCommandLineParser>
#include <QDoubleSpinBox>
#include <QIcon>
#include <QLineEdit>
#include <QPushButton>
#include <QScreen>
#include <QSpinBox>
#include <QTimer>

#include <cstdio>

#include "attention_view.h"
#include "config_panel.h"
#include "evaluation_view.h"
#include "inspector.h"
#include "main_window.h"
#include "run_comparison.h"
#include "runtime.h"

namespace {

// --set field=value on the panel's editor of that field.
bool setField(ConfigPanel* panel, const QString& assignment) {
  const QString name = assignment.section('=', 0, 0), value = assignment.section('=', 1);
  QWidget* w = panel->field(name);
  if (auto* s = qobject_cast<QSpinBox*>(w)) s->setValue(value.toInt());
  else if (auto* d = qobject_cast<QDoubleSpinBox*>(w)) d->setValue(value.toDouble());
  else if (auto* e = qobject_cast<QLineEdit*>(w)) e->setText(value);
  else if (auto* c = qobject_cast<QComboBox*>(w)) c->setCurrentText(value);
  else if (auto* b = qobject_cast<QCheckBox*>(w)) b->setChecked(value == "1" || value == "true");
  else return false;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // No OMP_WAIT_POLICY=ACTIVE here (the CLI uses it): a desktop window must not keep spinning
  // threads busy between steps or while idle. The BLAS kernels do follow the CPU (runtime.h).
  vit::relaunch_with_best_settings(argv, /*omp_policy=*/nullptr);
  QApplication app(argc, argv);
  QApplication::setOrganizationName("ViT Studio");
  QApplication::setApplicationName("ViT Studio");
  QApplication::setApplicationVersion(VIT_VERSION);
  QApplication::setWindowIcon(QIcon(":/icons/vit-studio.png"));

  QCommandLineParser parser;
  parser.setApplicationDescription("ViT Studio: train, inspect and use Vision Transformers");
  parser.addHelpOption();
  parser.addVersionOption();
  QCommandLineOption openRun("open-run", "Show the run directory DIR.", "DIR");
  QCommandLineOption set("set", "Set a panel field, e.g. heads=4 (repeatable).", "FIELD=VALUE");
  QCommandLineOption start("start", "Start training at once.");
  QCommandLineOption tab("tab", "Show the tab curves, compare, summary, patches, attention, predict, evaluation or log.", "NAME");
  QCommandLineOption runsRoot("runs-root", "Folder for new runs.", "DIR");
  QCommandLineOption screenshot("screenshot", "Save a PNG of the window after --screenshot-delay, then quit.", "FILE");
  QCommandLineOption delay("screenshot-delay", "Milliseconds before the screenshot (default 1500).", "MS", "1500");
  QCommandLineOption size("size", "Window size WxH.", "WxH");
  QCommandLineOption classify("classify", "Classify an image file or folder once a model is loaded (repeatable).", "PATH");
  QCommandLineOption evaluate("evaluate", "Evaluate the model on the test set once it is loaded.");
  QCommandLineOption probe("probe", "Test image N as the probe of the patch and attention views.", "N");
  QCommandLineOption compare("compare", "Add the run directory DIR to Curves > Compare runs (repeatable).", "DIR");
  QCommandLineOption cell("cell", "After --evaluate, open the confusion cell TRUE,PREDICTED.", "TRUE,PREDICTED");
  QCommandLineOption hover("hover", "In Compare runs, show the read-out at x = X.", "X");
  QCommandLineOption attention("attention", "The attention view shows rollout or gradient (rollout).", "MODE");
  parser.addOptions({openRun, set, start, tab, runsRoot, screenshot, delay, size, classify, evaluate, probe, compare, cell,
                     hover, attention});
  parser.process(app);

  const vit::RuntimeInfo runtime = vit::configure_runtime(0);

  MainWindow window;
  if (parser.isSet(runsRoot)) window.setRunsRoot(parser.value(runsRoot));
  if (parser.isSet(size)) {
    const QStringList wh = parser.value(size).split('x');
    if (wh.size() == 2) window.resize(wh[0].toInt(), wh[1].toInt());
  }
  window.show();
  if (!runtime.warning.empty()) std::fprintf(stderr, "vit-studio: %s\n", runtime.warning.c_str());
  if (parser.isSet(openRun)) window.openRun(parser.value(openRun));
  for (const QString& a : parser.values(set)) {
    if (!setField(window.panel(), a)) {
      std::fprintf(stderr, "vit-studio: --set %s: no such field\n", qPrintable(a));
      return 2;
    }
  }
  if (parser.isSet(attention)) {
    AttentionParams p = window.attentionView()->params();
    p.rollout = true;
    p.gradient = parser.value(attention) == "gradient";
    window.attentionView()->setParams(p);
  }
  if (parser.isSet(probe)) {
    ImageSource source;
    source.testIndex = parser.value(probe).toInt();
    window.setProbe(source);
  }
  // Requests that need the model wait for it to load (the first time only).
  auto* once = new QObject(&window);
  QObject::connect(window.inspector(), &Inspector::loaded, once, [&window, &parser, classify, evaluate, tab, once] {
    if (parser.isSet(classify)) window.classifyFiles(parser.values(classify));
    if (parser.isSet(evaluate)) window.evaluationView()->evaluateButton()->click();
    if (parser.isSet(tab)) window.showTab(parser.value(tab));
    once->deleteLater();
  });
  for (const QString& dir : parser.values(compare))
    if (const QString why = window.comparison()->addRun(dir); !why.isEmpty())
      std::fprintf(stderr, "vit-studio: --compare: %s\n", qPrintable(why));
  if (parser.isSet(hover)) window.comparison()->hoverAt(parser.value(hover).toDouble());
  if (parser.isSet(cell)) {
    const QStringList tp = parser.value(cell).split(',');
    QObject::connect(window.inspector(), &Inspector::evaluated, &window, [&window, tp] {
      if (tp.size() == 2) window.inspector()->cell(tp[0].toInt(), tp[1].toInt());
    });
  }
  if (parser.isSet(tab)) window.showTab(parser.value(tab));
  if (parser.isSet(start)) window.startTraining();
  if (parser.isSet(screenshot)) {
    const QString file = parser.value(screenshot);
    QTimer::singleShot(parser.value(delay).toInt(), &window, [&window, file] {
      if (!window.grab().save(file)) std::fprintf(stderr, "vit-studio: cannot write %s\n", qPrintable(file));
      window.close();  // stops a run cleanly first
    });
  }
  return app.exec();
}
