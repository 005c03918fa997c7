#include "train_config.h"

#include "cpu_info.h"

#include <algorithm>
#include <limits>
#include <regex>
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

bool valid_device_spec(const std::string& spec) {
  static const std::regex form("auto|cpu|cuda(:[0-9]{1,3})?");
  return std::regex_match(spec, form);
}

std::string resolve_precision(const std::string& precision) {
  if (precision == "auto") return cpu_has_fast_bf16() ? "bf16" : "fp32";
  return precision;
}

const std::vector<std::string>& precision_names() {
  static const std::vector<std::string> names{"auto", "fp32", "bf16"};
  return names;
}

namespace {

FieldSpec spec(const char* name, FieldKind kind, FieldGroup group, const char* label, const char* doc) {
  FieldSpec s;
  s.name = name;
  s.kind = kind;
  s.group = group;
  s.label = label;
  s.doc = doc;
  return s;
}

FieldSpec ranged(FieldSpec s, double min, double max, bool min_open, bool max_open,
                 const char* example, double step = 0) {
  s.min = min, s.max = max, s.min_open = min_open, s.max_open = max_open;
  s.example = example;
  s.step = step;
  return s;
}

constexpr double kInf = std::numeric_limits<double>::infinity();

Schema<TrainConfig> make_train_schema() {
  using C = TrainConfig;
  using K = FieldKind;
  using G = FieldGroup;
  Schema<C> s;
  {
    auto f = spec("dataset", K::Text, G::None, "Data set",
                  "fashion-mnist[:DIR] | cifar10:DIR | cifar100:DIR | folder:DIR");
    s.push_back(member_field(&C::dataset, f));
  }
  {
    auto f = ranged(spec("epochs", K::Int, G::Training, "Epochs", "Passes over the training split."),
                    1, 100000, false, false, "10", 1);
    f.resumable = true;  // a continued run may be extended or shortened
    s.push_back(member_field(&C::epochs, f));
  }
  s.push_back(member_field(&C::batch_size,
      ranged(spec("batch_size", K::Int, G::Training, "Batch size",
                  "Images per optimizer step (all processes together)."),
             1, 65536, false, false, "128", 16)));
  s.push_back(member_field(&C::lr,
      ranged(spec("lr", K::Real, G::Training, "Learning rate",
                  "Peak AdamW learning rate after warmup, then cosine decay to the minimum."),
             0, 10, true, true, "1e-3")));
  s.push_back(member_field(&C::min_lr,
      ranged(spec("min_lr", K::Real, G::Training, "Minimum lr", "Floor of the cosine decay (at most lr)."),
             0, 10, false, true, "1e-5")));
  s.push_back(member_field(&C::weight_decay,
      ranged(spec("weight_decay", K::Real, G::Training, "Weight decay",
                  "AdamW's decoupled decay; norms, biases and embeddings are not decayed."),
             0, 10, false, true, "0.05")));
  s.push_back(member_field(&C::warmup_epochs,
      ranged(spec("warmup_epochs", K::Real, G::Training, "Warmup epochs",
                  "Linear warmup from 0 to the learning rate, in epochs; fractions allowed."),
             0, 100000, false, false, "1", 0.5)));
  s.push_back(member_field(&C::label_smoothing,
      ranged(spec("label_smoothing", K::Real, G::Training, "Label smoothing",
                  "Cross-entropy target smoothing."),
             0, 1, false, true, "0.1", 0.05)));
  s.push_back(member_field(&C::grad_clip,
      ranged(spec("grad_clip", K::Real, G::Training, "Gradient clip",
                  "Maximum global gradient norm; 0 disables clipping."),
             0, 1000, false, false, "1.0", 0.5)));
  {
    auto f = ranged(spec("full_token_epochs", K::Int, G::Training, "Full-token epochs",
                         "With the model's patch dropout: the last this many epochs train on every "
                         "patch (FLIP's unmasked tuning), so training ends on the tokens evaluation sees; "
                         "every epoch when the run is no longer."),
                    0, 100000, false, false, "3", 1);
    f.resumable = true;  // like epochs, the schedule's end may move
    s.push_back(member_field(&C::full_token_epochs, f));
  }
  s.push_back(member_field(&C::ema_decay,
      ranged(spec("ema_decay", K::Real, G::Training, "Weight EMA",
                  "Decay of an exponential moving average of the weights (timm's model EMA, Keras' "
                  "use_ema), e.g. 0.999; validation, the best checkpoint and the test use the "
                  "average. 0: off."),
             0, 1, false, true, "0.999")));
  s.push_back(member_field(&C::val_fraction,
      ranged(spec("val_fraction", K::Real, G::Training, "Validation split",
                  "Share of the training set held out (seeded) to pick the best checkpoint."),
             0, 1, false, true, "0.1", 0.05)));
  s.push_back(member_field(&C::seed,
      ranged(spec("seed", K::Int, G::Training, "Seed",
                  "Model init, validation split, shuffling, augmentation and dropout."),
             0, 18446744073709551615.0, false, false, "42", 1)));
  {
    auto f = spec("threads", K::Int, G::Training, "Threads",
                  "Intra-op threads per training process; 0: one per core (cores / local "
                  "processes when distributed).");
    f = ranged(f, 0, 1024, false, false, "2", 1);
    f.resumable = true;
    s.push_back(member_field(&C::threads, f));
  }
  {
    auto f = spec("data_parallel", K::Bool, G::Training, "",
                  "Data parallel: each thread trains its share of every batch with single-threaded "
                  "ops (about 1.6x faster for small ViTs on 2 cores). Off: every op is split across "
                  "the threads.");
    f.check_text = "one batch shard per thread";
    f.resumable = true;
    s.push_back(member_field(&C::data_parallel, f));
  }
  {
    auto f = spec("precision", K::Choice, G::Training, "Precision",
                  "bf16: mixed precision, matrix products in bfloat16 with float weights and "
                  "optimizer (about 2x faster where the CPU multiplies bf16 fast: AMX, or bf16 dot "
                  "products at twice the float rate; slower elsewhere). fp32: all float. auto: "
                  "bf16 where it is faster on this CPU (measured at startup), else fp32.");
    f.choices = precision_names();
    f.choice_text = [](const std::string& c) {  // what auto resolves to here (the bf16 probe)
      return c == "auto" ? "auto (" + resolve_precision(c) + " on this CPU)" : c;
    };
    f.resumable = true;
    s.push_back(member_field(&C::precision, f));
  }
  {
    auto f = ranged(spec("eval_batch_size", K::Int, G::None, "Evaluation batch",
                         "Images per batch of the validation and test passes."),
                    1, 65536, false, false, "512", 64);
    f.resumable = true;
    s.push_back(member_field(&C::eval_batch_size, f));
  }
  {
    auto f = ranged(spec("log_every", K::Int, G::None, "Log every",
                         "Optimizer steps between progress reports and steps.csv rows."),
                    1, 1e9, false, false, "10");
    f.resumable = true;
    s.push_back(member_field(&C::log_every, f));
  }
  {
    auto f = ranged(spec("max_steps", K::Int, G::None, "Max steps",
                         "Stop after this many optimizer steps of this call (0: no limit)."),
                    0, 9.2e18, false, false, "100 (0 = no limit)");
    f.resumable = true;
    f.per_call = true;
    s.push_back(member_field(&C::max_steps, f));
  }
  {
    auto f = ranged(spec("checkpoint_every", K::Int, G::None, "Checkpoint every",
                         "Also save a checkpoint every this many optimizer steps (0: at the end of "
                         "each epoch only)."),
                    0, 9.2e18, false, false, "500 (0 = epoch ends only)");
    f.resumable = true;
    s.push_back(member_field(&C::checkpoint_every, f));
  }
  {
    auto f = ranged(spec("dist_timeout", K::Real, G::None, "Distributed timeout",
                         "Seconds a distributed run waits for a rank in a collective (or at "
                         "setup) before every rank stops with an error."),
                    1, 86400, false, false, "60");
    f.resumable = true;
    s.push_back(member_field(&C::dist_timeout, f));
  }
  {
    auto f = spec("device", K::Text, G::Training, "Device",
                  "auto: a GPU when this LibTorch has CUDA and sees one, else the CPU; or cpu, "
                  "cuda, cuda:N. Debian's LibTorch is CPU-only.");
    f.example = "cpu or cuda:0";
    f.resumable = true;
    s.push_back(member_field(&C::device, f));
  }
  // Augmentation: the presets (augmentation_preset) fill these; each can be set on its own.
  {
    auto f = spec("hflip", K::Bool, G::Augmentation, "", "Random horizontal flip.");
    f.key = "augment.hflip";
    f.check_text = "random horizontal flip";
    s.push_back(member_field(&C::augment, &AugmentConfig::hflip, f));
  }
  {
    auto f = ranged(spec("rotation", K::Real, G::Augmentation, "Rotation",
                         "Maximum random rotation, as a fraction of a full turn (Keras RandomRotation)."),
                    0, 0.5, false, false, "0.02", 0.01);
    f.key = "augment.rotation";
    s.push_back(member_field(&C::augment, &AugmentConfig::rotation, f));
  }
  {
    auto f = ranged(spec("zoom", K::Real, G::Augmentation, "Zoom",
                         "Maximum random zoom in or out per axis (Keras RandomZoom)."),
                    0, 1, false, true, "0.2", 0.05);
    f.key = "augment.zoom";
    s.push_back(member_field(&C::augment, &AugmentConfig::zoom, f));
  }
  {
    auto f = ranged(spec("translate", K::Real, G::Augmentation, "Shift",
                         "Maximum random shift as a fraction of the side (bilinear)."),
                    0, 1, false, true, "0.1", 0.05);
    f.key = "augment.translate";
    s.push_back(member_field(&C::augment, &AugmentConfig::translate, f));
  }
  {
    auto f = ranged(spec("crop", K::Int, G::Augmentation, "Random crop",
                         "Random crop after zero padding of this many pixels (torchvision "
                         "RandomCrop(S, padding=N)); whole-pixel shifts, no resampling."),
                    0, 64, false, false, "2", 1);
    f.key = "augment.crop";
    s.push_back(member_field(&C::augment, &AugmentConfig::crop, f));
  }
  {
    auto f = ranged(spec("erase", K::Real, G::Augmentation, "Random erasing",
                         "Probability of blanking one rectangle of 2-40% of the image with the "
                         "mean colour (Zhong et al.)."),
                    0, 1, false, false, "0.25", 0.05);
    f.key = "augment.erase";
    s.push_back(member_field(&C::augment, &AugmentConfig::erase, f));
  }
  {
    auto f = spec("mean", K::RealList, G::Data, "Mean",
                  "Per-channel normalization mean of pixels in [0, 1], comma-separated; empty: "
                  "computed from the training split (or the pretrained weights').");
    f.example = "0.5,0.5,0.5";
    s.push_back(member_field(&C::mean, f));
  }
  {
    auto f = ranged(spec("std", K::RealList, G::Data, "Std",
                         "Per-channel normalization standard deviation, as many values as mean."),
                    0, kInf, true, false, "0.5,0.5,0.5");
    s.push_back(member_field(&C::std, f));
  }
  {
    auto f = spec("init_weights", K::Text, G::FineTuning, "Start from",
                  "Pretrained weights to fine-tune: timm or Hugging Face .safetensors, a PyTorch "
                  ".pth/.bin state_dict, Google's .npz, or a run directory. The architecture comes "
                  "from the file; a new head is made for your classes and position embeddings are "
                  "resized to the image size.");
    f.flags = {"--init"};
    s.push_back(member_field(&C::init_weights, f));
  }
  {
    auto f = spec("freeze_backbone", K::Bool, G::FineTuning, "",
                  "Train only the classification head (linear probing); needs --init.");
    f.check_text = "train the head only";
    s.push_back(member_field(&C::freeze_backbone, f));
  }
  s.push_back(member_field(&C::layer_decay,
      ranged(spec("layer_decay", K::Real, G::FineTuning, "Layer lr decay",
                  "Block i learns at lr x decay^(depth - i): lower blocks change less. 1 = off; "
                  "0.65-0.75 is usual for fine-tuning."),
             0, 1, true, false, "0.75", 0.05)));
  return s;
}

}  // namespace

const Schema<TrainConfig>& train_schema() {
  static const Schema<TrainConfig> schema = make_train_schema();
  return schema;
}

std::vector<ConfigError> validate(const TrainConfig& c) {
  std::vector<ConfigError> errors = check_ranges(train_schema(), c);
  auto has_error = [&](const char* field) {
    for (const auto& e : errors)
      if (e.field == field) return true;
    return false;
  };
  if (!has_error("lr") && !has_error("min_lr") && c.min_lr > c.lr)
    errors.push_back({"min_lr", "min_lr " + format_number(c.min_lr) + " is above lr " +
                                    format_number(c.lr) + ": use a min_lr in [0, lr]; for example 1e-5"});
  if (!has_error("warmup_epochs") && !has_error("epochs") && c.warmup_epochs > c.epochs)
    errors.push_back({"warmup_epochs", "warmup_epochs " + format_number(c.warmup_epochs) +
                                           " is longer than the run's " + std::to_string(c.epochs) +
                                           " epochs: use at most " + std::to_string(c.epochs)});
  if (c.mean.size() != c.std.size())
    errors.push_back({"mean", "mean has " + std::to_string(c.mean.size()) + " value(s) but std has " +
                                  std::to_string(c.std.size()) +
                                  ": give one mean and one std per channel, or neither"});
  {
    if (!valid_device_spec(c.device))
      errors.push_back({"device", "device must be auto, cpu, cuda or cuda:N (got '" + c.device + "')"});
  }
  if (c.freeze_backbone && c.init_weights.empty())
    errors.push_back({"freeze_backbone",
                      "freeze_backbone needs init_weights: pretrained weights to keep (--init FILE)"});
  return errors;
}

nlohmann::json to_json(const TrainConfig& c) { return to_json(train_schema(), c); }

TrainConfig train_config_from_json(const nlohmann::json& j) {
  TrainConfig base;
  if (j.is_object() && !j.contains("precision")) base.precision = "fp32";  // runs from before
  try {
    return from_json(train_schema(), j, base, /*strict=*/false);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("bad training config: ") + e.what());
  }
}

}  // namespace vit
