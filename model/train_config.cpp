#include "train_config.h"

#include "runtime.h"

#include <algorithm>
#include <stdexcept>

namespace vit {

AugmentConfig augmentation_preset(const std::string& name, int image_size) {
  AugmentConfig a;
  if (name == "none") return a;
  if (name == "default" && image_size <= 32) {
    a.crop = 1;
    return a;
  }
  if (name == "flip") {
    a.hflip = true;
    return a;
  }
  if (name == "light") {
    a.hflip = true;
    a.translate = 0.1;
    return a;
  }
  if (name == "crop") {  // the CIFAR recipe: RandomCrop(32, padding=4) + RandomHorizontalFlip
    a.hflip = true;
    a.crop = std::max(1, (image_size + 4) / 8);
    return a;
  }
  if (name == "keras" || name == "default") {
    a.hflip = true;
    a.rotation = 0.02;
    a.zoom = 0.2;
    return a;
  }
  throw std::invalid_argument("augmentation must be default, none, flip, light, crop or keras (got '" + name + "')");
}

const std::vector<std::string>& augmentation_preset_names() {
  static const std::vector<std::string> names{"default", "none", "flip", "light", "crop", "keras"};
  return names;
}

std::string resolve_precision(const std::string& precision) {
  if (precision == "auto") return cpu_has_fast_bf16() ? "bf16" : "fp32";
  return precision;
}

const std::vector<std::string>& precision_names() {
  static const std::vector<std::string> names{"auto", "fp32", "bf16"};
  return names;
}

std::vector<std::string> validate(const TrainConfig& c) {
  std::vector<std::string> errors;
  auto need = [&](bool ok, const std::string& message) {
    if (!ok) errors.push_back(message);
  };
  need(c.epochs > 0 && c.epochs <= 100000, "epochs must be in 1..100000 (got " + std::to_string(c.epochs) + "); for example 10");
  need(c.batch_size > 0 && c.batch_size <= 65536, "batch_size must be in 1..65536 (got " + std::to_string(c.batch_size) + "); for example 128");
  need(c.lr > 0 && c.lr < 10, "lr must be in (0, 10) (got " + std::to_string(c.lr) + "); for example 1e-3");
  need(c.min_lr >= 0 && c.min_lr <= c.lr, "min_lr must be in [0, lr]; for example 1e-5");
  need(c.weight_decay >= 0 && c.weight_decay < 10, "weight_decay must be in [0, 10); for example 0.05");
  need(c.warmup_epochs >= 0 && c.warmup_epochs <= c.epochs, "warmup_epochs must be in [0, epochs]; for example 1");
  need(c.label_smoothing >= 0 && c.label_smoothing < 1, "label_smoothing must be in [0, 1); for example 0.1");
  need(c.grad_clip >= 0, "grad_clip must be >= 0 (0 disables); for example 1.0");
  need(c.val_fraction >= 0 && c.val_fraction < 1, "val_fraction must be in [0, 1); for example 0.1");
  need(c.log_every > 0, "log_every must be positive; for example 10");
  need(c.max_steps >= 0, "max_steps must be >= 0 (0 = no limit)");
  need(c.eval_batch_size > 0, "eval_batch_size must be positive; for example 512");
  need(c.augment.rotation >= 0 && c.augment.rotation <= 0.5, "rotation must be in [0, 0.5] turns; for example 0.02");
  need(c.augment.zoom >= 0 && c.augment.zoom < 1, "zoom must be in [0, 1); for example 0.2");
  need(c.augment.translate >= 0 && c.augment.translate < 1, "translate must be in [0, 1); for example 0.1");
  need(c.augment.crop >= 0 && c.augment.crop <= 64, "crop padding must be in 0..64 pixels; for example 2");
  need(c.augment.erase >= 0 && c.augment.erase <= 1, "erase must be a probability in [0, 1]; for example 0.25");
  need(c.mean.size() == c.std.size(), "give as many mean values as std values (one per channel)");
  for (float s : c.std) need(s > 0, "every std value must be positive");
  need(std::find(precision_names().begin(), precision_names().end(), c.precision) != precision_names().end(),
       "precision must be auto, fp32 or bf16 (got '" + c.precision + "')");
  need(c.layer_decay > 0 && c.layer_decay <= 1, "layer_decay must be in (0, 1] (1 = off); for example 0.75");
  need(!c.freeze_backbone || !c.init_weights.empty(), "freeze_backbone needs init_weights: pretrained weights to keep");
  return errors;
}

nlohmann::json to_json(const TrainConfig& c) {
  return {{"dataset", c.dataset},
          {"epochs", c.epochs},
          {"batch_size", c.batch_size},
          {"lr", c.lr},
          {"min_lr", c.min_lr},
          {"weight_decay", c.weight_decay},
          {"warmup_epochs", c.warmup_epochs},
          {"label_smoothing", c.label_smoothing},
          {"grad_clip", c.grad_clip},
          {"seed", c.seed},
          {"val_fraction", c.val_fraction},
          {"augment",
           {{"hflip", c.augment.hflip},
            {"rotation", c.augment.rotation},
            {"zoom", c.augment.zoom},
            {"translate", c.augment.translate},
            {"crop", c.augment.crop},
            {"erase", c.augment.erase}}},
          {"mean", c.mean},
          {"std", c.std},
          {"log_every", c.log_every},
          {"max_steps", c.max_steps},
          {"eval_batch_size", c.eval_batch_size},
          {"init_weights", c.init_weights},
          {"freeze_backbone", c.freeze_backbone},
          {"layer_decay", c.layer_decay},
          {"data_parallel", c.data_parallel},
          {"precision", c.precision}};
}

TrainConfig train_config_from_json(const nlohmann::json& j) {
  TrainConfig c;
  try {
    c.dataset = j.value("dataset", c.dataset);
    c.epochs = j.value("epochs", c.epochs);
    c.batch_size = j.value("batch_size", c.batch_size);
    c.lr = j.value("lr", c.lr);
    c.min_lr = j.value("min_lr", c.min_lr);
    c.weight_decay = j.value("weight_decay", c.weight_decay);
    c.warmup_epochs = j.value("warmup_epochs", c.warmup_epochs);
    c.label_smoothing = j.value("label_smoothing", c.label_smoothing);
    c.grad_clip = j.value("grad_clip", c.grad_clip);
    c.seed = j.value("seed", c.seed);
    c.val_fraction = j.value("val_fraction", c.val_fraction);
    if (j.contains("augment")) {
      const auto& a = j.at("augment");
      c.augment.hflip = a.value("hflip", false);
      c.augment.rotation = a.value("rotation", 0.0);
      c.augment.zoom = a.value("zoom", 0.0);
      c.augment.translate = a.value("translate", 0.0);
      c.augment.crop = a.value("crop", 0);
      c.augment.erase = a.value("erase", 0.0);
    }
    c.mean = j.value("mean", c.mean);
    c.std = j.value("std", c.std);
    c.log_every = j.value("log_every", c.log_every);
    c.max_steps = j.value("max_steps", c.max_steps);
    c.eval_batch_size = j.value("eval_batch_size", c.eval_batch_size);
    c.init_weights = j.value("init_weights", c.init_weights);
    c.freeze_backbone = j.value("freeze_backbone", c.freeze_backbone);
    c.layer_decay = j.value("layer_decay", c.layer_decay);
    c.data_parallel = j.value("data_parallel", c.data_parallel);
    c.precision = j.value("precision", std::string("fp32"));  // runs from before the setting
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(std::string("bad training config: ") + e.what());
  }
  return c;
}

}  // namespace vit
