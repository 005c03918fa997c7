#include "config_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QDragEnterEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QMimeData>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

#include <climits>
#include <cmath>

#include "config_json.h"
#include "cpu_info.h"
#include "dataset_check.h"

namespace {

enum DatasetKind { FashionMnist, Cifar10, Cifar100, ImageFolder };

// Sub-folders of an image folder data set (its classes), looking into train/ when present.
int countClasses(const QString& dir) {
  QDir d(dir);
  if (d.exists("train")) d.cd("train");
  return int(d.entryList(QDir::Dirs | QDir::NoDotAndDotDot).size());
}

int toInt(double v) { return int(std::max<double>(INT_MIN, std::min<double>(INT_MAX, v))); }

// An editor for one field of the core's schema. Spin boxes reach a little past the valid range
// (0 below a minimum of 1, ten times the maximum), so an impossible value is explained by the
// core's message under the field rather than silently clamped.
QWidget* makeEditor(const vit::FieldSpec& s) {
  switch (s.kind) {
    case vit::FieldKind::Int: {
      auto* e = new QSpinBox;
      const double lo = std::isfinite(s.min) ? std::min(s.min, 0.0) : INT_MIN;
      const double hi = std::isfinite(s.max) ? s.max * 10 : INT_MAX;
      e->setRange(toInt(lo), toInt(hi));
      e->setSingleStep(int(std::max(1.0, s.step)));
      e->setAccelerated(true);
      if (s.min == 0 && s.name == "threads") e->setSpecialValueText(QObject::tr("auto (one per core)"));
      return e;
    }
    case vit::FieldKind::Real:
      if (s.step > 0) {
        auto* e = new QDoubleSpinBox;
        e->setDecimals(3);
        e->setRange(std::isfinite(s.min) ? std::min(s.min, 0.0) : -1e9,
                    std::isfinite(s.max) ? std::max(s.max, 1.0) : 1e9);
        e->setSingleStep(s.step);
        return e;
      } else {
        // Learning rates and decays read best in scientific notation, which QDoubleSpinBox
        // cannot show.
        auto* e = new QLineEdit;
        e->setMaximumWidth(120);
        return e;
      }
    case vit::FieldKind::Bool: return new QCheckBox(QString::fromStdString(s.check_text));
    case vit::FieldKind::Choice: {
      // The value a choice stands for is its item data; the text may say more (choice_text).
      auto* e = new QComboBox;
      for (const auto& c : s.choices)
        e->addItem(QString::fromStdString(s.choice_text ? s.choice_text(c) : c), QString::fromStdString(c));
      return e;
    }
    case vit::FieldKind::Text:
    case vit::FieldKind::IntList:
    case vit::FieldKind::RealList: {
      auto* e = new QLineEdit;
      if (!s.example.empty()) e->setPlaceholderText(QObject::tr("none, or e.g. %1").arg(QString::fromStdString(s.example).section(' ', 0, 0)));
      return e;
    }
  }
  return nullptr;
}

// The editor's value as the field's JSON. Text that is not a number becomes NaN (or -1 in a
// list of whole numbers), so the core's validation names the field.
nlohmann::json editorValue(const QWidget* w, const vit::FieldSpec& s) {
  if (auto* e = qobject_cast<const QSpinBox*>(w)) return e->value();
  if (auto* e = qobject_cast<const QDoubleSpinBox*>(w)) return e->value();
  if (auto* e = qobject_cast<const QCheckBox*>(w)) return e->isChecked();
  if (auto* e = qobject_cast<const QComboBox*>(w)) return e->currentData().toString().toStdString();
  const auto* line = qobject_cast<const QLineEdit*>(w);
  const QString text = line ? line->text().trimmed() : QString();
  switch (s.kind) {
    case vit::FieldKind::Real: {
      bool ok = false;
      const double v = text.toDouble(&ok);
      return ok ? v : std::nan("");
    }
    case vit::FieldKind::IntList:
    case vit::FieldKind::RealList: {
      nlohmann::json list = nlohmann::json::array();
      for (const QString& part : text.split(',', Qt::SkipEmptyParts)) {
        bool ok = false;
        if (s.kind == vit::FieldKind::IntList) {
          const int v = part.trimmed().toInt(&ok);
          list.push_back(ok ? v : -1);
        } else {
          const double v = part.trimmed().toDouble(&ok);
          list.push_back(ok ? v : std::nan(""));
        }
      }
      return list;
    }
    default: return text.toStdString();
  }
}

QString numberText(double v) { return QString::number(v, 'g', 6); }

void setEditorValue(QWidget* w, const vit::FieldSpec& s, const nlohmann::json& v) {
  if (auto* e = qobject_cast<QSpinBox*>(w)) {
    e->setValue(toInt(v.get<double>()));
  } else if (auto* e = qobject_cast<QDoubleSpinBox*>(w)) {
    e->setValue(v.get<double>());
  } else if (auto* e = qobject_cast<QCheckBox*>(w)) {
    e->setChecked(v.get<bool>());
  } else if (auto* e = qobject_cast<QComboBox*>(w)) {
    const int index = e->findData(QString::fromStdString(v.get<std::string>()));
    if (index >= 0) e->setCurrentIndex(index);
  } else if (auto* e = qobject_cast<QLineEdit*>(w)) {
    if (s.kind == vit::FieldKind::Real) {
      e->setText(numberText(v.get<double>()));
    } else if (v.is_array()) {
      QStringList parts;
      for (const auto& x : v) parts << numberText(x.get<double>());
      e->setText(parts.join(","));
    } else {
      e->setText(QString::fromStdString(v.get<std::string>()));
    }
  }
}

QString augmentationOf(const vit::AugmentConfig& a, int imageSize, const QString& preferred) {
  auto same = [](const vit::AugmentConfig& x, const vit::AugmentConfig& y) {
    return x.hflip == y.hflip && x.rotation == y.rotation && x.zoom == y.zoom &&
           x.translate == y.translate && x.crop == y.crop && x.erase == y.erase;
  };
  try {
    if (preferred != "custom" && same(vit::augmentation_preset(preferred.toStdString(), imageSize), a))
      return preferred;
  } catch (const std::invalid_argument&) {
  }
  for (const auto& name : vit::augmentation_preset_names())
    if (same(vit::augmentation_preset(name, imageSize), a)) return QString::fromStdString(name);
  return "custom";
}

}  // namespace

template <class C>
void ConfigPanel::addSchemaFields(QFormLayout* form, const vit::Schema<C>& schema, vit::FieldGroup group) {
  for (const auto& f : schema) {
    if (f.spec.group != group) continue;
    addField(form, QString::fromStdString(f.spec.name), QString::fromStdString(f.spec.label),
             makeEditor(f.spec), QString::fromStdString(f.spec.doc));
  }
}

ConfigPanel::ConfigPanel(QWidget* parent) : QWidget(parent) {
  setAcceptDrops(true);
  auto* layout = new QVBoxLayout(this);

  // --- model
  auto* modelBox = new QGroupBox(tr("Model"));
  auto* modelForm = new QFormLayout(modelBox);
  modelForm->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);
  preset_ = new QComboBox;
  for (const auto& p : vit::presets()) {
    preset_->addItem(QString::fromStdString(p.name));
    preset_->setItemData(preset_->count() - 1, QString::fromStdString(p.description),
                         Qt::ToolTipRole);
  }
  preset_->addItem(tr("custom"));
  addField(modelForm, "preset", tr("Preset"), preset_,
           tr("A named starting point; editing any model field makes it 'custom'."));
  presetInfo_ = new QLabel;
  presetInfo_->setWordWrap(true);
  presetInfo_->setStyleSheet("color: palette(mid);");
  modelForm->addRow(QString(), presetInfo_);
  addSchemaFields(modelForm, vit::vit_schema(), vit::FieldGroup::Model);
  layout->addWidget(modelBox);

  // --- data
  auto* dataBox = new QGroupBox(tr("Data"));
  auto* dataForm = new QFormLayout(dataBox);
  datasetKind_ = new QComboBox;
  datasetKind_->addItems({tr("Fashion-MNIST (installed)"), tr("CIFAR-10 folder"),
                          tr("CIFAR-100 folder"), tr("Image folder")});
  addField(dataForm, "dataset", tr("Data set"), datasetKind_,
           tr("Fashion-MNIST comes with Debian's dataset-fashion-mnist package. CIFAR folders hold "
              "the binary version (data_batch_1.bin, ...). An image folder has one sub-folder per "
              "class (optionally under train/ and test/). You can also drop a folder on the window."));
  datasetPath_ = new QLineEdit;
  datasetPath_->setPlaceholderText(tr("folder"));
  browse_ = new QPushButton(tr("Browse..."));
  auto* pathRow = new QWidget;
  auto* pathLayout = new QHBoxLayout(pathRow);
  pathLayout->setContentsMargins(0, 0, 0, 0);
  pathLayout->addWidget(datasetPath_);
  pathLayout->addWidget(browse_);
  addField(dataForm, "dataset_path", tr("Folder"), pathRow, tr("Where the data set lives."));
  fields_["dataset_path"] = datasetPath_;
  dataShape_ = new QLabel;
  dataForm->addRow(tr("Input"), dataShape_);
  addSchemaFields(dataForm, vit::train_schema(), vit::FieldGroup::Data);
  layout->addWidget(dataBox);

  // --- training
  auto* trainBox = new QGroupBox(tr("Training"));
  auto* trainForm = new QFormLayout(trainBox);
  addSchemaFields(trainForm, vit::train_schema(), vit::FieldGroup::Training);
  layout->addWidget(trainBox);

  // --- augmentation
  auto* augmentBox = new QGroupBox(tr("Augmentation"));
  auto* augmentForm = new QFormLayout(augmentBox);
  augment_ = new QComboBox;
  for (const auto& name : vit::augmentation_preset_names()) augment_->addItem(QString::fromStdString(name));
  augment_->addItem("custom");
  addField(augmentForm, "augmentation", tr("Preset"), augment_,
           tr("default: 1-pixel random crop up to 32 px, else keras. light: flip + 10% shift. crop: flip + "
              "random crop after zero padding of 1/8 of the side (the CIFAR recipe). keras: "
              "flip, rotation 0.02 turn, zoom 0.2 (the Keras example). Choosing one fills the fields below."));
  addSchemaFields(augmentForm, vit::train_schema(), vit::FieldGroup::Augmentation);
  layout->addWidget(augmentBox);

  // --- fine-tuning
  auto* tuneBox = new QGroupBox(tr("Fine-tuning"));
  auto* tuneForm = new QFormLayout(tuneBox);
  initWeights_ = new QLineEdit;
  initWeights_->setPlaceholderText(tr("none: random initialization"));
  initWeights_->setObjectName("init_weights");
  browseInit_ = new QPushButton(tr("Browse..."));
  auto* initRow = new QWidget;
  auto* initLayout = new QHBoxLayout(initRow);
  initLayout->setContentsMargins(0, 0, 0, 0);
  initLayout->addWidget(initWeights_);
  initLayout->addWidget(browseInit_);
  const auto* init = vit::find_field(vit::train_schema(), "init_weights");
  addField(tuneForm, "init_weights", QString::fromStdString(init->spec.label), initRow,
           QString::fromStdString(init->spec.doc));
  fields_["init_weights"] = initWeights_;
  for (const auto& f : vit::train_schema())
    if (f.spec.group == vit::FieldGroup::FineTuning && f.spec.name != "init_weights")
      addField(tuneForm, QString::fromStdString(f.spec.name), QString::fromStdString(f.spec.label),
               makeEditor(f.spec), QString::fromStdString(f.spec.doc));
  layout->addWidget(tuneBox);

  summaryError_ = new QLabel;
  summaryError_->setWordWrap(true);
  summaryError_->setStyleSheet("color: #c0392b;");
  summaryError_->hide();
  layout->addWidget(summaryError_);
  layout->addStretch(1);

  // Every editor reports edits the same way.
  for (auto* s : findChildren<QSpinBox*>())
    connect(s, &QSpinBox::valueChanged, this, &ConfigPanel::onEdited);
  for (auto* s : findChildren<QDoubleSpinBox*>())
    connect(s, &QDoubleSpinBox::valueChanged, this, &ConfigPanel::onEdited);
  for (auto* c : findChildren<QCheckBox*>())
    connect(c, &QCheckBox::toggled, this, &ConfigPanel::onEdited);
  for (auto* e : findChildren<QLineEdit*>())
    connect(e, &QLineEdit::textChanged, this, &ConfigPanel::onEdited);
  for (auto* c : findChildren<QComboBox*>())
    if (c != preset_ && c != augment_) connect(c, &QComboBox::currentIndexChanged, this, &ConfigPanel::onEdited);
  connect(preset_, &QComboBox::currentIndexChanged, this, [this](int index) {
    if (!updating_ && index < int(vit::presets().size())) applyPreset(preset_->itemText(index));
  });
  connect(augment_, &QComboBox::currentIndexChanged, this, [this] {
    if (!updating_ && augment_->currentText() != "custom") applyAugmentation(augment_->currentText());
  });
  connect(browse_, &QPushButton::clicked, this, &ConfigPanel::browseDataset);
  connect(browseInit_, &QPushButton::clicked, this, &ConfigPanel::browseInitWeights);
  connect(initWeights_, &QLineEdit::editingFinished, this, [this] {
    initError_.clear();
    emit initWeightsChanged(initWeights_->text().trimmed());
  });

  // A new user's defaults: the Fashion-MNIST preset and the trainer's defaults (with the
  // augmentation preset "default" for its image size).
  vit::TrainConfig t;
  const vit::ViTConfig m = vit::preset(vit::kDefaultPreset).config;
  t.augment = vit::augmentation_preset("default", m.image_size);
  setConfigs(m, t);
}

void ConfigPanel::addField(QFormLayout* form, const QString& name, const QString& title,
                           QWidget* editor, const QString& tip) {
  editor->setToolTip(tip);
  editor->setObjectName(name);
  form->addRow(title, editor);
  auto* error = new QLabel;
  error->setObjectName(name + "_error");
  error->setWordWrap(true);
  error->setStyleSheet("color: #c0392b;");
  error->hide();
  form->addRow(QString(), error);
  fields_[name] = editor;
  errorLabels_[name] = error;
}

vit::ViTConfig ConfigPanel::modelConfig() const {
  vit::ViTConfig c = model_;
  for (const auto& f : vit::vit_schema()) {
    const QWidget* w = fields_.value(QString::fromStdString(f.spec.name));
    if (!w || f.spec.group == vit::FieldGroup::None) continue;
    try {
      f.set(c, editorValue(w, f.spec));
    } catch (const std::exception&) {
    }
  }
  switch (datasetKind_->currentIndex()) {
    case FashionMnist: c.in_channels = 1, c.num_classes = 10; break;
    case Cifar10: c.in_channels = 3, c.num_classes = 10; break;
    case Cifar100: c.in_channels = 3, c.num_classes = 100; break;
    default: {
      c.in_channels = 3;
      const int classes = countClasses(datasetPath_->text().trimmed());
      c.num_classes = classes > 0 ? classes : model_.num_classes;
    }
  }
  return c;
}

vit::TrainConfig ConfigPanel::trainConfig() const {
  vit::TrainConfig t = train_;
  for (const auto& f : vit::train_schema()) {
    const QWidget* w = fields_.value(QString::fromStdString(f.spec.name));
    if (!w || f.spec.group == vit::FieldGroup::None) continue;
    try {
      f.set(t, editorValue(w, f.spec));
    } catch (const std::exception&) {
    }
  }
  t.dataset = datasetSpec().toStdString();
  t.init_weights = initWeights_->text().trimmed().toStdString();
  return t;
}

QString ConfigPanel::augmentation() const { return augment_->currentText(); }
int ConfigPanel::threads() const { return trainConfig().threads; }

QString ConfigPanel::presetName() const {
  const int i = preset_->currentIndex();
  return i < int(vit::presets().size()) ? preset_->currentText() : QString();
}

QString ConfigPanel::datasetSpec() const {
  const QString dir = datasetPath_->text().trimmed();
  switch (datasetKind_->currentIndex()) {
    case FashionMnist: return dir.isEmpty() ? "fashion-mnist" : "fashion-mnist:" + dir;
    case Cifar10: return "cifar10:" + dir;
    case Cifar100: return "cifar100:" + dir;
    default: return "folder:" + dir;
  }
}

void ConfigPanel::setImageFolder(const QString& dir) {
  updating_ = true;
  datasetKind_->setCurrentIndex(ImageFolder);
  datasetPath_->setText(dir);
  updating_ = false;
  onEdited();
}

void ConfigPanel::setConfigs(const vit::ViTConfig& c, const vit::TrainConfig& t) {
  updating_ = true;
  model_ = c;
  train_ = t;
  for (const auto& f : vit::vit_schema())
    if (QWidget* w = fields_.value(QString::fromStdString(f.spec.name)); w && f.spec.group != vit::FieldGroup::None)
      setEditorValue(w, f.spec, f.get(c));
  for (const auto& f : vit::train_schema())
    if (QWidget* w = fields_.value(QString::fromStdString(f.spec.name));
        w && f.spec.group != vit::FieldGroup::None && f.spec.name != "init_weights")
      setEditorValue(w, f.spec, f.get(t));
  const QString spec = QString::fromStdString(t.dataset);
  const QString kind = spec.section(':', 0, 0), dir = spec.section(':', 1);
  datasetKind_->setCurrentIndex(kind == "cifar10" ? Cifar10 : kind == "cifar100" ? Cifar100
                                : kind == "folder"  ? ImageFolder : FashionMnist);
  datasetPath_->setText(dir);
  initWeights_->setText(QString::fromStdString(t.init_weights));
  augment_->setCurrentText(augmentationOf(t.augment, c.image_size, augment_->currentText()));
  updating_ = false;
  onEdited();
}

void ConfigPanel::applyPreset(const QString& name) {
  vit::ViTConfig c = vit::preset(name.toStdString()).config;
  vit::TrainConfig t = trainConfig();
  const QString augment = augment_->currentText();
  if (augment != "custom") t.augment = vit::augmentation_preset(augment.toStdString(), c.image_size);
  setConfigs(c, t);
}

void ConfigPanel::applyAugmentation(const QString& name) {
  vit::TrainConfig t = trainConfig();
  t.augment = vit::augmentation_preset(name.toStdString(), modelConfig().image_size);
  updating_ = true;
  for (const auto& f : vit::train_schema())
    if (f.spec.group == vit::FieldGroup::Augmentation)
      setEditorValue(fields_.value(QString::fromStdString(f.spec.name)), f.spec, f.get(t));
  updating_ = false;
  onEdited();
}

QString ConfigPanel::errorFor(const QString& field) const {
  const QLabel* l = errorLabels_.value(field);
  return l && !l->isHidden() ? l->text() : QString();
}

void ConfigPanel::setPretrainedArchitecture(const vit::ViTConfig& w) {
  // The user's regularization stays; everything else comes from the weights (the rule `vit train
  // --init` follows too).
  const vit::ViTConfig c = vit::finetuned_config(
      w, modelConfig(), {"dropout", "attn_dropout", "drop_path", "patch_drop", "head_dropout"}, "the weights");
  initError_.clear();
  setConfigs(c, trainConfig());
}

void ConfigPanel::setInitWeightsError(const QString& message) {
  initError_ = message;
  revalidate();
}

void ConfigPanel::browseInitWeights() {
  const QString f = QFileDialog::getOpenFileName(
      this, tr("Pretrained weights"), initWeights_->text(),
      tr("Weights (*.safetensors *.pth *.bin *.pt *.npz);;All files (*)"));
  if (f.isEmpty()) return;
  initWeights_->setText(f);
  initError_.clear();
  emit initWeightsChanged(f);
}

void ConfigPanel::setLocked(bool locked) {
  for (QWidget* w : fields_) w->setEnabled(!locked);
  browse_->setEnabled(!locked);
  browseInit_->setEnabled(!locked);
  setAcceptDrops(!locked);
}

void ConfigPanel::onEdited() {
  if (updating_) return;
  // The preset chooser says which preset the fields still match.
  const vit::ViTConfig now = modelConfig();
  int match = preset_->count() - 1;
  for (int i = 0; i < int(vit::presets().size()); ++i) {
    vit::ViTConfig p = vit::presets()[size_t(i)].config;
    p.in_channels = now.in_channels, p.num_classes = now.num_classes;
    if (p == now) {
      match = i;
      if (preset_->itemText(i) == preset_->currentText()) break;  // keep the user's choice
    }
  }
  updating_ = true;
  preset_->setCurrentIndex(match);
  augment_->setCurrentText(augmentationOf(trainConfig().augment, now.image_size, augment_->currentText()));
  updating_ = false;
  presetInfo_->setText(match < int(vit::presets().size())
                           ? QString::fromStdString(vit::presets()[size_t(match)].description)
                           : tr("Custom settings."));
  updateDataFields();
  revalidate();
  emit configChanged();
}

void ConfigPanel::updateDataFields() {
  const bool needsPath = datasetKind_->currentIndex() != FashionMnist;
  datasetPath_->setPlaceholderText(needsPath ? tr("folder (required)")
                                             : tr("default: /usr/share/datasets/fashion-mnist"));
  const vit::ViTConfig c = modelConfig();
  const QString dir = datasetPath_->text().trimmed();
  // Channels and classes of a folder are only known once it is chosen: say so rather than show
  // the previous model's numbers.
  if (needsPath && (dir.isEmpty() || !QFileInfo(dir).isDir())) {
    dataShape_->setText(tr("channels and classes come from the folder: choose one; resized to %1x%1")
                            .arg(c.image_size));
    return;
  }
  if (datasetKind_->currentIndex() == ImageFolder && countClasses(dir) < 2) {
    dataShape_->setText(tr("RGB; classes are the folder's sub-folders (none yet); resized to %1x%1")
                            .arg(c.image_size));
    return;
  }
  dataShape_->setText(tr("%1 channel(s), %2 classes, resized to %3x%3")
                          .arg(c.in_channels)
                          .arg(c.num_classes)
                          .arg(c.image_size));
}

void ConfigPanel::revalidate() {
  const bool wasValid = errors_.isEmpty();
  errors_.clear();
  QHash<QString, QStringList> byField;
  QStringList unplaced;  // messages about a field the panel does not show
  auto place = [&](const std::string& field, const std::string& message) {
    QString name = QString::fromStdString(field);
    if (name == "dataset") name = "dataset_path";
    if (errorLabels_.contains(name)) byField[name] << QString::fromStdString(message);
    else unplaced << QString::fromStdString(message);
  };
  for (const auto& e : vit::validate(modelConfig())) place(e.field, e.message);
  for (const auto& e : vit::validate(trainConfig())) place(e.field, e.message);
  const int kind = datasetKind_->currentIndex();
  const QString dir = datasetPath_->text().trimmed();
  if (kind != FashionMnist && dir.isEmpty()) {
    byField["dataset_path"] << tr("choose the data set's folder (Browse..., or drop it on the window)");
  } else if (!dir.isEmpty() && !QFileInfo(dir).isDir()) {
    byField["dataset_path"] << tr("%1 is not a folder: choose an existing one").arg(dir);
  } else if (kind == ImageFolder && countClasses(dir) < 2) {
    byField["dataset_path"] << tr("%1 needs one sub-folder per class, at least two").arg(dir);
  } else if (const std::string problem = vit::dataset_problem(datasetSpec().toStdString()); !problem.empty()) {
    byField["dataset_path"] << QString::fromStdString(problem);  // a missing or truncated file
  }
  const QString init = initWeights_->text().trimmed();
  if (!initError_.isEmpty()) byField["init_weights"] << initError_;
  else if (!init.isEmpty() && !QFileInfo::exists(init))
    byField["init_weights"] << tr("%1 does not exist: choose a weights file or a run directory").arg(init);
  for (auto it = errorLabels_.begin(); it != errorLabels_.end(); ++it) {
    const QStringList messages = byField.value(it.key());
    it.value()->setText(messages.join("\n"));
    it.value()->setVisible(!messages.isEmpty());
    errors_ << messages;
  }
  errors_ << unplaced;
  QString summary;
  if (!errors_.isEmpty()) summary = tr("Fix %n setting(s) before training.", "", int(errors_.size()));
  for (const QString& m : unplaced) summary += "\n" + m;
  summaryError_->setText(summary);
  summaryError_->setVisible(!errors_.isEmpty());
  if (wasValid != errors_.isEmpty()) emit validityChanged(errors_.isEmpty());
}

void ConfigPanel::browseDataset() {
  const QString dir = QFileDialog::getExistingDirectory(this, tr("Choose the data set folder"),
                                                        datasetPath_->text());
  if (dir.isEmpty()) return;
  if (datasetKind_->currentIndex() == FashionMnist) datasetKind_->setCurrentIndex(ImageFolder);
  datasetPath_->setText(dir);
}

QByteArray ConfigPanel::saveState() const {
  QJsonObject o;
  o["model"] = QJsonDocument::fromJson(QByteArray::fromStdString(vit::to_json(modelConfig()).dump())).object();
  // JSON has no NaN (an unparsable number field): dump() writes null, which restores invalid.
  o["train"] = QJsonDocument::fromJson(QByteArray::fromStdString(vit::to_json(trainConfig()).dump())).object();
  o["augmentation"] = augmentation();
  o["preset"] = presetName();
  return QJsonDocument(o).toJson(QJsonDocument::Compact);
}

bool ConfigPanel::restoreState(const QByteArray& state) {
  const QJsonObject o = QJsonDocument::fromJson(state).object();
  if (o.isEmpty()) return false;
  try {
    const QJsonObject trainObject = o["train"].toObject();
    auto trainJson = nlohmann::json::parse(QJsonDocument(trainObject).toJson().toStdString());
    for (auto it = trainJson.begin(); it != trainJson.end();) {  // nulls: fields left invalid
      if (it->is_null()) it = trainJson.erase(it);
      else ++it;
    }
    const auto model = vit::config_from_json(
        nlohmann::json::parse(QJsonDocument(o["model"].toObject()).toJson().toStdString()));
    auto train = vit::train_config_from_json(trainJson);
    if (!trainObject.contains("precision")) train.precision = "auto";  // older settings
    if (!trainObject.contains("threads") && o.contains("threads")) train.threads = 0;  // older: cores
    const QString augment = o["augmentation"].toString("default");
    if (!trainObject.contains("augment") || !trainObject["augment"].toObject().contains("crop"))
      train.augment = vit::augmentation_preset(augment.toStdString(), model.image_size);
    updating_ = true;
    augment_->setCurrentText(augment);
    if (!o["preset"].toString().isEmpty()) preset_->setCurrentText(o["preset"].toString());
    updating_ = false;
    setConfigs(model, train);
    return true;
  } catch (const std::exception&) {
    updating_ = false;
    return false;  // settings from another version: keep the defaults
  }
}

QString ConfigPanel::setDatasetFolder(const QString& dir) {
  const QDir d(dir);
  if (!d.exists()) return tr("%1 is not a folder").arg(dir);
  int kind = -1;
  for (const QString& probe : {dir, dir + "/cifar-10-batches-bin", dir + "/cifar-100-binary"}) {
    if (QFileInfo::exists(probe + "/data_batch_1.bin")) kind = Cifar10;
    else if (QFileInfo::exists(probe + "/train.bin") && QFileInfo::exists(probe + "/test.bin")) kind = Cifar100;
    if (kind >= 0) break;
  }
  if (kind < 0 && countClasses(dir) >= 2) kind = ImageFolder;
  if (kind < 0)
    return tr("%1 is not a data set: an image folder needs one sub-folder per class (at least two), "
              "a CIFAR folder its .bin batches").arg(QDir::toNativeSeparators(dir));
  updating_ = true;
  datasetKind_->setCurrentIndex(kind);
  datasetPath_->setText(dir);
  updating_ = false;
  onEdited();
  return {};
}

void ConfigPanel::dragEnterEvent(QDragEnterEvent* event) {
  const auto urls = event->mimeData()->urls();
  if (urls.size() == 1 && QFileInfo(urls.first().toLocalFile()).isDir()) event->acceptProposedAction();
}

void ConfigPanel::dropEvent(QDropEvent* event) {
  const auto urls = event->mimeData()->urls();
  if (urls.size() != 1) return;
  // Not a data set: the data set stays as it was, and the window says why.
  if (const QString why = setDatasetFolder(urls.first().toLocalFile()); !why.isEmpty()) emit dropRefused(why);
}

QString ConfigPanel::inputDescription() const { return dataShape_->text(); }
