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
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QMimeData>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

#include <cmath>

#include "config_json.h"
#include "runtime.h"

namespace {

QSpinBox* spin(int lo, int hi, int step = 1) {
  auto* s = new QSpinBox;
  s->setRange(lo, hi);
  s->setSingleStep(step);
  s->setAccelerated(true);
  return s;
}

QDoubleSpinBox* fraction(double hi = 0.99, double step = 0.05) {
  auto* s = new QDoubleSpinBox;
  s->setRange(0.0, hi);
  s->setDecimals(3);
  s->setSingleStep(step);
  return s;
}

// Learning rates and decays read best in scientific notation, which QDoubleSpinBox cannot show.
QLineEdit* number() {
  auto* e = new QLineEdit;
  e->setMaximumWidth(120);
  return e;
}

QString format(double v) { return QString::number(v, 'g', 6); }

// NaN when the text is not a number; the core's validation then names the field.
double parse(const QLineEdit* e) {
  bool ok = false;
  const double v = e->text().trimmed().toDouble(&ok);
  return ok ? v : std::nan("");
}

enum DatasetKind { FashionMnist, Cifar10, Cifar100, ImageFolder };

// Sub-folders of an image folder data set (its classes), looking into train/ when present.
int countClasses(const QString& dir) {
  QDir d(dir);
  if (d.exists("train")) d.cd("train");
  return int(d.entryList(QDir::Dirs | QDir::NoDotAndDotDot).size());
}

}  // namespace

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

  imageSize_ = spin(1, 4096, 4);
  patchSize_ = spin(1, 1024);
  dim_ = spin(1, 8192, 8);
  depth_ = spin(1, 128);
  heads_ = spin(1, 256);
  mlpHidden_ = spin(1, 65536, 32);
  dropout_ = fraction();
  attnDropout_ = fraction();
  dropPath_ = fraction();
  headDropout_ = fraction();
  classToken_ = new QCheckBox(tr("prepend a [CLS] token"));
  qkvBias_ = new QCheckBox(tr("bias on q, k, v"));
  actAfterFc2_ = new QCheckBox(tr("GELU after fc2 too (Keras example)"));
  pool_ = new QComboBox;
  pool_->addItems({"token", "mean", "flatten"});
  headHidden_ = new QLineEdit;
  headHidden_->setPlaceholderText(tr("none, or e.g. 2048,1024"));
  addField(modelForm, "image_size", tr("Image size"), imageSize_,
           tr("Input side in pixels; images are resized to this square. Must be a multiple of the patch size."));
  addField(modelForm, "patch_size", tr("Patch size"), patchSize_,
           tr("Side of a square patch: the image becomes (image/patch)^2 tokens."));
  addField(modelForm, "dim", tr("Width (dim)"), dim_,
           tr("Token embedding width D, kept through every block. Must be a multiple of heads."));
  addField(modelForm, "depth", tr("Depth"), depth_, tr("Number of transformer blocks."));
  addField(modelForm, "heads", tr("Heads"), heads_,
           tr("Attention heads per block; head dim = dim / heads."));
  addField(modelForm, "mlp_hidden", tr("MLP hidden"), mlpHidden_,
           tr("Hidden width of each block's MLP; timm uses 4 x dim."));
  addField(modelForm, "dropout", tr("Dropout"), dropout_,
           tr("After the position embedding, the attention projection and the MLP layers."));
  addField(modelForm, "attn_dropout", tr("Attention dropout"), attnDropout_,
           tr("Dropout on the attention probabilities."));
  addField(modelForm, "drop_path", tr("Drop path"), dropPath_,
           tr("Stochastic depth rate of the last block, linear from 0 at the first."));
  addField(modelForm, "class_token", QString(), classToken_,
           tr("A learned token in front of the patches; pool 'token' reads it out."));
  addField(modelForm, "pool", tr("Pooling"), pool_,
           tr("token: the class token's final state (ViT paper); mean: mean of patch tokens "
              "(timm's avg pool); flatten: every token concatenated (the Keras example)."));
  addField(modelForm, "qkv_bias", QString(), qkvBias_, tr("timm and Keras both use a bias."));
  addField(modelForm, "mlp_act_after_fc2", QString(), actAfterFc2_,
           tr("The Keras tutorial applies GELU after both MLP layers; timm only after fc1."));
  addField(modelForm, "head_hidden", tr("Head MLP"), headHidden_,
           tr("Hidden layers of an MLP head before the classifier, comma-separated "
              "(the Keras example uses 2048,1024)."));
  addField(modelForm, "head_dropout", tr("Head dropout"), headDropout_,
           tr("Dropout before each head layer (Keras example: 0.5)."));
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
  layout->addWidget(dataBox);

  // --- training
  auto* trainBox = new QGroupBox(tr("Training"));
  auto* trainForm = new QFormLayout(trainBox);
  epochs_ = spin(1, 100000);
  batchSize_ = spin(1, 65536, 16);
  lr_ = number();
  minLr_ = number();
  weightDecay_ = number();
  warmup_ = new QDoubleSpinBox;
  warmup_->setRange(0, 100000);
  warmup_->setSingleStep(0.5);
  labelSmoothing_ = fraction(0.99, 0.05);
  gradClip_ = new QDoubleSpinBox;
  gradClip_->setRange(0, 1000);
  gradClip_->setSingleStep(0.5);
  valFraction_ = fraction(0.99, 0.05);
  seed_ = spin(0, 2147483647);
  augment_ = new QComboBox;
  for (const auto& name : vit::augmentation_preset_names()) augment_->addItem(QString::fromStdString(name));
  threads_ = spin(1, 256);
  addField(trainForm, "epochs", tr("Epochs"), epochs_, tr("Passes over the training split."));
  addField(trainForm, "batch_size", tr("Batch size"), batchSize_, tr("Images per optimizer step."));
  addField(trainForm, "lr", tr("Learning rate"), lr_,
           tr("Peak AdamW learning rate after warmup, then cosine decay to the minimum."));
  addField(trainForm, "min_lr", tr("Minimum lr"), minLr_, tr("Floor of the cosine decay."));
  addField(trainForm, "weight_decay", tr("Weight decay"), weightDecay_,
           tr("AdamW's decoupled decay; norms, biases and embeddings are not decayed."));
  addField(trainForm, "warmup_epochs", tr("Warmup epochs"), warmup_,
           tr("Linear warmup from 0 to the learning rate; fractions allowed."));
  addField(trainForm, "label_smoothing", tr("Label smoothing"), labelSmoothing_,
           tr("Cross-entropy target smoothing."));
  addField(trainForm, "grad_clip", tr("Gradient clip"), gradClip_,
           tr("Maximum global gradient norm; 0 disables clipping."));
  addField(trainForm, "val_fraction", tr("Validation split"), valFraction_,
           tr("Share of the training set held out (seeded) to pick the best checkpoint."));
  addField(trainForm, "augmentation", tr("Augmentation"), augment_,
           tr("default: 1-pixel random crop up to 32 px, else keras. light: flip + 10% shift. crop: flip + "
              "random crop after zero padding of 1/8 of the side (the CIFAR recipe). keras: "
              "flip, rotation 0.02 turn, zoom 0.2 (the Keras example)."));
  addField(trainForm, "seed", tr("Seed"), seed_,
           tr("Model init, validation split, shuffling and augmentation."));
  addField(trainForm, "threads", tr("Threads"), threads_,
           tr("Intra-op threads for LibTorch; default one per core."));
  dataParallel_ = new QCheckBox(tr("one batch shard per thread"));
  dataParallel_->setChecked(true);
  addField(trainForm, "data_parallel", QString(), dataParallel_,
           tr("Data parallel: each thread trains its share of every batch with single-threaded "
              "ops (about 1.6x faster for small ViTs on 2 cores). Off: every op is split across "
              "the threads."));
  precision_ = new QComboBox;
  for (const auto& name : vit::precision_names()) precision_->addItem(QString::fromStdString(name));
  addField(trainForm, "precision", tr("Precision"), precision_,
           tr("bf16: mixed precision, matrix products in bfloat16 with float weights and "
              "optimizer (about 2x faster where the CPU multiplies bf16 natively). fp32: all "
              "float. auto: bf16 on such CPUs, else fp32."));
  layout->addWidget(trainBox);

  // --- fine-tuning
  auto* tuneBox = new QGroupBox(tr("Fine-tuning"));
  auto* tuneForm = new QFormLayout(tuneBox);
  initWeights_ = new QLineEdit;
  initWeights_->setPlaceholderText(tr("none: random initialization"));
  browseInit_ = new QPushButton(tr("Browse..."));
  auto* initRow = new QWidget;
  auto* initLayout = new QHBoxLayout(initRow);
  initLayout->setContentsMargins(0, 0, 0, 0);
  initLayout->addWidget(initWeights_);
  initLayout->addWidget(browseInit_);
  addField(tuneForm, "init_weights", tr("Start from"), initRow,
           tr("Pretrained weights to fine-tune: timm or Hugging Face .safetensors, a PyTorch .pth/.bin "
              "state_dict, Google's .npz, or a run directory. The architecture comes from the file; "
              "a new head is made for your classes and position embeddings are resized to the image size."));
  fields_["init_weights"] = initWeights_;
  freezeBackbone_ = new QCheckBox(tr("freeze all but the head"));
  addField(tuneForm, "freeze_backbone", QString(), freezeBackbone_,
           tr("Train only the classification head (linear probing)."));
  layerDecay_ = new QDoubleSpinBox;
  layerDecay_->setRange(0.0, 1.0);
  layerDecay_->setDecimals(2);
  layerDecay_->setSingleStep(0.05);
  addField(tuneForm, "layer_decay", tr("Layer lr decay"), layerDecay_,
           tr("Block i learns at lr x decay^(depth - i): lower blocks change less. 1 = off; 0.65-0.75 is usual for fine-tuning."));
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
  for (auto* c : {pool_, augment_, datasetKind_, precision_})
    connect(c, &QComboBox::currentIndexChanged, this, &ConfigPanel::onEdited);
  connect(preset_, &QComboBox::currentIndexChanged, this, [this](int index) {
    if (!updating_ && index < int(vit::presets().size())) applyPreset(preset_->itemText(index));
  });
  connect(browse_, &QPushButton::clicked, this, &ConfigPanel::browseDataset);
  connect(browseInit_, &QPushButton::clicked, this, &ConfigPanel::browseInitWeights);
  connect(initWeights_, &QLineEdit::editingFinished, this, [this] {
    initError_.clear();
    emit initWeightsChanged(initWeights_->text().trimmed());
  });

  // A new user's defaults: the Fashion-MNIST preset and the trainer's defaults.
  updating_ = true;
  threads_->setValue(vit::available_cores());
  updating_ = false;
  setConfigs(vit::preset(vit::kDefaultPreset).config, vit::TrainConfig{});
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
  vit::ViTConfig c;
  c.image_size = imageSize_->value();
  c.patch_size = patchSize_->value();
  c.dim = dim_->value();
  c.depth = depth_->value();
  c.heads = heads_->value();
  c.mlp_hidden = mlpHidden_->value();
  c.dropout = dropout_->value();
  c.attn_dropout = attnDropout_->value();
  c.drop_path = dropPath_->value();
  c.class_token = classToken_->isChecked();
  c.pool = *vit::pool_from_string(pool_->currentText().toStdString());
  c.qkv_bias = qkvBias_->isChecked();
  c.mlp_act_after_fc2 = actAfterFc2_->isChecked();
  c.head_dropout = headDropout_->value();
  for (const QString& part : headHidden_->text().split(',', Qt::SkipEmptyParts)) {
    bool ok = false;
    const int v = part.trimmed().toInt(&ok);
    c.head_hidden.push_back(ok ? v : -1);  // -1: validate() names the field
  }
  switch (datasetKind_->currentIndex()) {
    case FashionMnist: c.in_channels = 1, c.num_classes = 10; break;
    case Cifar10: c.in_channels = 3, c.num_classes = 10; break;
    case Cifar100: c.in_channels = 3, c.num_classes = 100; break;
    default: {
      c.in_channels = 3;
      const int classes = countClasses(datasetPath_->text());
      c.num_classes = classes > 0 ? classes : 2;
    }
  }
  // The preset's ln_eps (not edited here) stays what the preset says.
  return c;
}

vit::TrainConfig ConfigPanel::trainConfig() const {
  vit::TrainConfig t;
  t.dataset = datasetSpec().toStdString();
  t.epochs = epochs_->value();
  t.batch_size = batchSize_->value();
  t.lr = parse(lr_);
  t.min_lr = parse(minLr_);
  t.weight_decay = parse(weightDecay_);
  t.warmup_epochs = warmup_->value();
  t.label_smoothing = labelSmoothing_->value();
  t.grad_clip = gradClip_->value();
  t.val_fraction = valFraction_->value();
  t.seed = uint64_t(seed_->value());
  t.init_weights = initWeights_->text().trimmed().toStdString();
  t.freeze_backbone = freezeBackbone_->isChecked();
  t.layer_decay = layerDecay_->value();
  t.data_parallel = dataParallel_->isChecked();
  t.precision = precision_->currentText().toStdString();
  try {
    t.augment = vit::augmentation_preset(augmentation().toStdString(), imageSize_->value());
  } catch (const std::invalid_argument&) {
  }
  return t;
}

QString ConfigPanel::augmentation() const { return augment_->currentText(); }
int ConfigPanel::threads() const { return threads_->value(); }

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
  imageSize_->setValue(c.image_size);
  patchSize_->setValue(c.patch_size);
  dim_->setValue(c.dim);
  depth_->setValue(c.depth);
  heads_->setValue(c.heads);
  mlpHidden_->setValue(c.mlp_hidden);
  dropout_->setValue(c.dropout);
  attnDropout_->setValue(c.attn_dropout);
  dropPath_->setValue(c.drop_path);
  classToken_->setChecked(c.class_token);
  pool_->setCurrentText(QString::fromStdString(vit::to_string(c.pool)));
  qkvBias_->setChecked(c.qkv_bias);
  actAfterFc2_->setChecked(c.mlp_act_after_fc2);
  headDropout_->setValue(c.head_dropout);
  QStringList hidden;
  for (int h : c.head_hidden) hidden << QString::number(h);
  headHidden_->setText(hidden.join(","));

  const QString spec = QString::fromStdString(t.dataset);
  const QString kind = spec.section(':', 0, 0), dir = spec.section(':', 1);
  datasetKind_->setCurrentIndex(kind == "cifar10" ? Cifar10 : kind == "cifar100" ? Cifar100
                                : kind == "folder"  ? ImageFolder : FashionMnist);
  datasetPath_->setText(dir);
  epochs_->setValue(t.epochs);
  batchSize_->setValue(t.batch_size);
  lr_->setText(format(t.lr));
  minLr_->setText(format(t.min_lr));
  weightDecay_->setText(format(t.weight_decay));
  warmup_->setValue(t.warmup_epochs);
  labelSmoothing_->setValue(t.label_smoothing);
  gradClip_->setValue(t.grad_clip);
  valFraction_->setValue(t.val_fraction);
  seed_->setValue(int(std::min<uint64_t>(t.seed, 2147483647)));
  initWeights_->setText(QString::fromStdString(t.init_weights));
  freezeBackbone_->setChecked(t.freeze_backbone);
  layerDecay_->setValue(t.layer_decay);
  dataParallel_->setChecked(t.data_parallel);
  precision_->setCurrentText(QString::fromStdString(t.precision));
  updating_ = false;
  onEdited();
}

void ConfigPanel::applyPreset(const QString& name) {
  const vit::ViTConfig c = vit::preset(name.toStdString()).config;
  vit::TrainConfig t = trainConfig();
  setConfigs(c, t);
}

QString ConfigPanel::errorFor(const QString& field) const {
  const QLabel* l = errorLabels_.value(field);
  return l && !l->isHidden() ? l->text() : QString();
}

void ConfigPanel::setPretrainedArchitecture(const vit::ViTConfig& w) {
  vit::ViTConfig c = modelConfig();
  const vit::TrainConfig t = trainConfig();
  c.image_size = w.image_size;  // what the weights were trained at; the user may change it
  c.patch_size = w.patch_size;
  c.dim = w.dim;
  c.depth = w.depth;
  c.heads = w.heads;
  c.mlp_hidden = w.mlp_hidden;
  c.mlp_act_after_fc2 = w.mlp_act_after_fc2;
  c.qkv_bias = w.qkv_bias;
  c.class_token = w.class_token;
  c.pool = w.pool;
  c.head_hidden = w.head_hidden;
  initError_.clear();
  setConfigs(c, t);
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
  dataShape_->setText(tr("%1 channel(s), %2 classes, resized to %3x%3")
                          .arg(c.in_channels)
                          .arg(c.num_classes)
                          .arg(c.image_size));
}

void ConfigPanel::revalidate() {
  const bool wasValid = errors_.isEmpty();
  errors_.clear();
  QHash<QString, QStringList> byField;
  for (const auto& e : vit::validate(modelConfig())) {
    byField[QString::fromStdString(e.field)] << QString::fromStdString(e.message);
  }
  // Training messages start with the field they name ("lr must be ...").
  for (const auto& m : vit::validate(trainConfig())) {
    const QString message = QString::fromStdString(m);
    QString field = message.section(' ', 0, 0);
    if (field == "rotation" || field == "zoom" || field == "translate") field = "augmentation";
    if (field == "freeze_backbone") field = "init_weights";
    if (!errorLabels_.contains(field)) field = "epochs";  // never drop a message
    byField[field] << message;
  }
  const int kind = datasetKind_->currentIndex();
  const QString dir = datasetPath_->text().trimmed();
  if (kind != FashionMnist && dir.isEmpty()) {
    byField["dataset_path"] << tr("choose the data set's folder (Browse..., or drop it on the window)");
  } else if (!dir.isEmpty() && !QFileInfo(dir).isDir()) {
    byField["dataset_path"] << tr("%1 is not a folder: choose an existing one").arg(dir);
  } else if (kind == ImageFolder && countClasses(dir) < 2) {
    byField["dataset_path"] << tr("%1 needs one sub-folder per class, at least two").arg(dir);
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
  summaryError_->setText(errors_.isEmpty() ? QString()
                                           : tr("Fix %n setting(s) before training.", "", int(errors_.size())));
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
  vit::TrainConfig t = trainConfig();
  for (double* v : {&t.lr, &t.min_lr, &t.weight_decay})
    if (std::isnan(*v)) *v = 0;  // JSON has no NaN; the field comes back invalid anyway
  o["train"] = QJsonDocument::fromJson(QByteArray::fromStdString(vit::to_json(t).dump())).object();
  o["augmentation"] = augmentation();
  o["threads"] = threads();
  o["preset"] = presetName();
  return QJsonDocument(o).toJson(QJsonDocument::Compact);
}

bool ConfigPanel::restoreState(const QByteArray& state) {
  const QJsonObject o = QJsonDocument::fromJson(state).object();
  if (o.isEmpty()) return false;
  try {
    const auto model = vit::config_from_json(
        nlohmann::json::parse(QJsonDocument(o["model"].toObject()).toJson().toStdString()));
    auto train = vit::train_config_from_json(
        nlohmann::json::parse(QJsonDocument(o["train"].toObject()).toJson().toStdString()));
    if (!o["train"].toObject().contains("precision")) train.precision = "auto";  // older settings
    updating_ = true;
    augment_->setCurrentText(o["augmentation"].toString("default"));
    threads_->setValue(o["threads"].toInt(vit::available_cores()));
    if (!o["preset"].toString().isEmpty()) preset_->setCurrentText(o["preset"].toString());
    updating_ = false;
    setConfigs(model, train);
    return true;
  } catch (const std::exception&) {
    updating_ = false;
    return false;  // settings from another version: keep the defaults
  }
}

void ConfigPanel::dragEnterEvent(QDragEnterEvent* event) {
  const auto urls = event->mimeData()->urls();
  if (urls.size() == 1 && QFileInfo(urls.first().toLocalFile()).isDir()) event->acceptProposedAction();
}

void ConfigPanel::dropEvent(QDropEvent* event) {
  const auto urls = event->mimeData()->urls();
  if (urls.size() == 1) setImageFolder(urls.first().toLocalFile());
}
