// The hyperparameter panel: preset chooser, every model and training field of the core's configs,
// the data set chooser and the thread count. Validation is the core's own (vit::validate for both
// configs); each message is shown under the field it names, and isValid() drives the Start button.
#pragma once

#include <QByteArray>
#include <QHash>
#include <QStringList>
#include <QWidget>

#include "train_config.h"
#include "vit_config.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QFormLayout;
class QLabel;
class QLineEdit;
class QPushButton;
class QSpinBox;

class ConfigPanel : public QWidget {
  Q_OBJECT

 public:
  explicit ConfigPanel(QWidget* parent = nullptr);

  // The configs as edited. in_channels/num_classes follow the chosen data set (the trainer
  // adapts them again to the data it actually loads).
  vit::ViTConfig modelConfig() const;
  vit::TrainConfig trainConfig() const;
  QString augmentation() const;  // one of vit::augmentation_preset_names()
  int threads() const;
  QString presetName() const;  // "" when the fields no longer match a preset

  // Data set spec as load_dataset() takes it: "fashion-mnist", "cifar10:DIR", "folder:DIR", ...
  QString datasetSpec() const;
  // Chooses an image folder (what dropping a folder on the window does).
  void setImageFolder(const QString& dir);

  void setConfigs(const vit::ViTConfig& model, const vit::TrainConfig& train);
  // Fine-tuning: the architecture of the chosen pretrained weights (the window reads it from the
  // file); image size, dropout and the training fields stay the user's. An empty message clears
  // the weights field's error, otherwise it is shown there (unreadable file, ...).
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

 protected:
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;

 private:
  void addField(QFormLayout* form, const QString& name, const QString& title, QWidget* editor,
                const QString& tip);
  void onEdited();
  void revalidate();
  void updateDataFields();
  void browseDataset();
  void browseInitWeights();

  QHash<QString, QWidget*> fields_;
  QHash<QString, QLabel*> errorLabels_;
  QStringList errors_;
  bool updating_ = false;  // set while fields are filled programmatically

  QComboBox* preset_;
  QLabel* presetInfo_;
  QSpinBox *imageSize_, *patchSize_, *dim_, *depth_, *heads_, *mlpHidden_;
  QDoubleSpinBox *dropout_, *attnDropout_, *dropPath_, *headDropout_;
  QCheckBox *classToken_, *qkvBias_, *actAfterFc2_;
  QComboBox* pool_;
  QLineEdit* headHidden_;
  QLabel* dataShape_;
  QComboBox* datasetKind_;
  QLineEdit* datasetPath_;
  QPushButton* browse_;
  QSpinBox *epochs_, *batchSize_, *seed_, *threads_;
  QLineEdit *lr_, *minLr_, *weightDecay_;
  QDoubleSpinBox *warmup_, *labelSmoothing_, *gradClip_, *valFraction_;
  QComboBox* augment_;
  QLineEdit* initWeights_;
  QPushButton* browseInit_;
  QCheckBox* freezeBackbone_;
  QCheckBox* dataParallel_;
  QComboBox* precision_;
  QDoubleSpinBox* layerDecay_;
  QString initError_;
  QLabel* summaryError_;
};
