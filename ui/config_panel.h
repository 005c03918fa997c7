// The hyperparameter panel: preset chooser, every model and training field of the core's configs,
// the data set chooser and the thread count. The editors are made from the core's settings schema
// (vit_schema(), train_schema(): label, range, tooltip, kind), so a new setting appears here
// without an edit to this file. Validation is the core's own (vit::validate for both configs);
// each message is shown under the field it names, and isValid() drives the Start button.
#pragma once

#include <QByteArray>
#include <QHash>
#include <QStringList>
#include <QWidget>

#include "train_config.h"
#include "vit_config.h"

class QComboBox;
class QFormLayout;
class QLabel;
class QLineEdit;
class QPushButton;

class ConfigPanel : public QWidget {
  Q_OBJECT

 public:
  explicit ConfigPanel(QWidget* parent = nullptr);

  // The configs as edited. in_channels/num_classes follow the chosen data set (the trainer
  // adapts them again to the data it actually loads). Fields the panel does not show (log_every,
  // max_steps, ...) keep the values last given to setConfigs().
  vit::ViTConfig modelConfig() const;
  vit::TrainConfig trainConfig() const;
  QString augmentation() const;  // the augmentation preset shown, or "custom"
  int threads() const;           // 0: one per core
  QString presetName() const;    // "" when the fields no longer match a preset

  // Data set spec as load_dataset() takes it: "fashion-mnist", "cifar10:DIR", "folder:DIR", ...
  QString datasetSpec() const;
  // Chooses an image folder.
  void setImageFolder(const QString& dir);
  // Chooses a dropped folder as the data set when it is one (CIFAR-10/100 batches, or an image
  // folder with a sub-folder per class); otherwise changes nothing and returns why not.
  QString setDatasetFolder(const QString& dir);
  QString inputDescription() const;  // the "Input" line: channels, classes, size

  void setConfigs(const vit::ViTConfig& model, const vit::TrainConfig& train);
  // Fine-tuning: the architecture of the chosen pretrained weights (the window reads it from the
  // file, vit::finetuned_config decides); image size comes from the weights, dropout and the
  // training fields stay the user's. An empty message clears the weights field's error,
  // otherwise it is shown there (unreadable file, ...).
  void setPretrainedArchitecture(const vit::ViTConfig& config);
  void setInitWeightsError(const QString& message);
  void applyPreset(const QString& name);

  bool isValid() const { return errors_.isEmpty(); }
  QStringList errors() const { return errors_; }          // every message, for tests and tooltips
  QString errorFor(const QString& field) const;            // the message shown under `field`

  // Disables editing while a run is in progress.
  void setLocked(bool locked);

  // Persisted through QSettings by the window: the fields as JSON.
  QByteArray saveState() const;
  bool restoreState(const QByteArray& state);

  // For tests: the editor of a field, by the name the core uses ("dim", "heads", "lr", ...).
  QWidget* field(const QString& name) const { return fields_.value(name); }

 signals:
  void configChanged();             // any edit; the summary refreshes on it
  void validityChanged(bool valid);
  void initWeightsChanged(const QString& path);  // "" when cleared
  void dropRefused(const QString& why);  // a dropped folder is not a data set

 protected:
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;

 private:
  template <class C>
  void addSchemaFields(QFormLayout* form, const vit::Schema<C>& schema, vit::FieldGroup group);
  void addField(QFormLayout* form, const QString& name, const QString& title, QWidget* editor,
                const QString& tip);
  void onEdited();
  void revalidate();
  void updateDataFields();
  void browseDataset();
  void browseInitWeights();
  void applyAugmentation(const QString& name);

  QHash<QString, QWidget*> fields_;
  QHash<QString, QLabel*> errorLabels_;
  QStringList errors_;
  bool updating_ = false;  // set while fields are filled programmatically
  vit::ViTConfig model_;   // values of the fields the panel does not show
  vit::TrainConfig train_;

  QComboBox* preset_;
  QLabel* presetInfo_;
  QLabel* dataShape_;
  QComboBox* datasetKind_;
  QLineEdit* datasetPath_;
  QPushButton* browse_;
  QComboBox* augment_;
  QLineEdit* initWeights_;
  QPushButton* browseInit_;
  QString initError_;
  QLabel* summaryError_;
};
