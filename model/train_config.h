// Training settings: what the trainer, the CLI and the GUI's panel share. Torch-free on purpose,
// so the window's widgets validate with the same rules as the core without pulling LibTorch in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "settings_schema.h"

namespace vit {

// Per-channel mean and std of pixel values scaled to [0, 1].
struct Normalization {
  std::vector<float> mean;
  std::vector<float> std;
};

struct AugmentConfig {
  bool hflip = false;      // random horizontal flip (RandomFlip("horizontal"))
  double rotation = 0.0;   // max rotation as a fraction of a full turn (RandomRotation(0.02))
  double zoom = 0.0;       // max zoom in/out per axis, e.g. 0.2 (RandomZoom(0.2, 0.2))
  double translate = 0.0;  // max shift as a fraction of the side (RandomTranslation)
  // Random crop after zero padding, in whole pixels (torchvision RandomCrop(S, padding=crop)):
  // a shift of up to `crop` pixels each way, no resampling, black where the image runs out.
  int crop = 0;
  // Random erasing (Zhong et al. 2017; torchvision RandomErasing): with this probability, one
  // rectangle of 2-40% of the image, aspect 0.3-3.3, is set to the data set's mean colour.
  double erase = 0.0;
  bool enabled() const {
    return hflip || rotation > 0 || zoom > 0 || translate > 0 || crop > 0 || erase > 0;
  }
};

struct TrainConfig {
  std::string dataset = "fashion-mnist";  // spec for load_dataset(), recorded in config.json
  int epochs = 40;               // passes over the training split (fmnist-small: README, "Fashion-MNIST today")
  int batch_size = 64;           // images per optimizer step (small ViTs gain from more steps)
  double lr = 2e-3;              // peak learning rate after warmup
  double min_lr = 1e-5;          // floor of the cosine decay
  double weight_decay = 0.05;    // AdamW decoupled decay (not on norms, biases, embeddings)
  double warmup_epochs = 0.5;    // linear warmup from 0 to lr, in (fractional) epochs
  double label_smoothing = 0.1;  // cross-entropy target smoothing
  double grad_clip = 1.0;        // max global gradient norm; 0 disables
  // The last this many epochs train without the model's patch_drop, on every patch: the model
  // ends on the token count it is evaluated with (FLIP's "unmasked tuning", Li et al. 2023).
  // Nothing changes for a model without patch_drop; a run of at most this many epochs trains
  // every epoch on every patch. fmnist-small at patch_drop 0.5: +0.12 to +0.18 points test top-1
  // on two of three seeds, the third equal (README).
  int full_token_epochs = 2;
  // Exponential moving average of the weights (Polyak averaging; timm's --model-ema-decay,
  // Keras' use_ema): after every optimizer step average += (1 - d) x (weights - average), with
  // d = min(ema_decay, (1 + updates) / (10 + updates)) (TensorFlow's ExponentialMovingAverage
  // with num_updates, so the first steps do not pin the average to the random init). Validation,
  // the best checkpoint, the test and prediction then use the average; last.safetensors keeps the
  // trained weights and ema.safetensors the average, so a continued run goes on with both.
  // 0: off.
  double ema_decay = 0.0;
  uint64_t seed = 42;            // model init, split, shuffling and augmentation
  double val_fraction = 0.1;     // share of the training set held out for validation
  AugmentConfig augment;         // training-time augmentation
  std::vector<float> mean, std;  // normalization; empty = computed from the training split
  int log_every = 10;            // steps between on_step callbacks and steps.csv rows
  int64_t max_steps = 0;         // stop after this many optimizer steps (0 = no limit)
  // Also commit a checkpoint every this many optimizer steps (0: at epoch ends only), so a long
  // epoch that is killed resumes near where it stopped.
  int64_t checkpoint_every = 0;
  // Distributed runs: a rank that does not answer a collective (it died or hangs) within this
  // many seconds stops every rank, which keep the last completed step (Gloo's own default is 30
  // minutes).
  double dist_timeout = 60;
  // Where the model and batches live: auto (a GPU when this LibTorch has CUDA and sees one, else
  // the CPU), cpu, cuda or cuda:N (model/device.h).
  std::string device = "auto";
  int eval_batch_size = 512;     // batch size of validation and test passes
  // Fine-tuning (model/weights_io.h): start from these pretrained weights (any file `vit import`
  // reads, or a run directory); empty = random init. The normalization then defaults to theirs.
  std::string init_weights;
  bool freeze_backbone = false;  // train only the head (needs init_weights)
  double layer_decay = 1.0;      // layer-wise lr decay: block i gets lr x decay^(depth - i); 1 = off
  // Data parallelism: cut each batch into one shard per intra-op thread and run the shards at
  // the same time, each single-threaded, instead of splitting every op across the threads. Small
  // ViTs run ~1.6x faster this way on 2 cores (README, "Data parallel"). Same seed and thread count give
  // the same run either way; results differ between the two modes and between thread counts.
  bool data_parallel = true;
  // Arithmetic of the training step: "fp32"; "bf16", mixed precision (matrix products in bfloat16
  // under LibTorch's CPU autocast, float accumulation, weights, gradients and optimizer in float;
  // validation and test passes in the same precision); "auto", bf16 where it is faster than float
  // on this CPU (AMX, or bf16 dot products at >= 1.3x the float FMA rate, measured at startup:
  // cpu_info.h) and fp32 elsewhere. A run records the resolved choice in config.json.
  std::string precision = "auto";
  // Intra-op threads of each training process (0: one per core, or cores / local ranks under a
  // distributed launcher). With data parallelism each thread trains one shard of the batch, so a
  // run depends on it; config.json records it.
  int threads = 0;
};

// The fields of TrainConfig (settings_schema.h): config.json, the `vit train` flags, the panel.
const Schema<TrainConfig>& train_schema();

// Whether `spec` has a device's form: auto, cpu, cuda or cuda:N (model/device.h resolves it).
bool valid_device_spec(const std::string& spec);

// "fp32" or "bf16" for a TrainConfig::precision, resolving "auto" for this CPU.
std::string resolve_precision(const std::string& precision);
const std::vector<std::string>& precision_names();  // auto, fp32, bf16

// Augmentation presets by name: "none"; "flip"; "light" (flip + 10% shift); "crop" (flip + random
// crop after zero padding of 1/8 of the side, the CIFAR recipe); "keras", the Keras example's
// RandomFlip + RandomRotation(0.02) + RandomZoom(0.2, 0.2); "default", a 1-pixel padded random
// crop for inputs of 32 px or less and "keras" above. On Fashion-MNIST (README) the 1-pixel crop
// lifted 38 epochs to 90.6% where no augmentation overfits at ~89.8%; 2 pixels, flip, erasing and
// the bilinear shift of "light" all cost accuracy within 10 minutes.
// Throws std::invalid_argument for another name.
AugmentConfig augmentation_preset(const std::string& name, int image_size);
const std::vector<std::string>& augmentation_preset_names();

// Every rule the config breaks (field + message naming it), empty when it is valid.
std::vector<ConfigError> validate(const TrainConfig& config);
nlohmann::json to_json(const TrainConfig& config);
// Fields missing from `j` keep their defaults, except precision: runs from before the setting
// trained in fp32. Unknown fields are ignored (files of newer versions); a wrong type throws
// std::invalid_argument naming the field.
TrainConfig train_config_from_json(const nlohmann::json& j);

}  // namespace vit
