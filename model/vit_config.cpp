#include "vit_config.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace vit {

std::string to_string(Pool pool) {
  switch (pool) {
    case Pool::Token: return "token";
    case Pool::Mean: return "mean";
    case Pool::Flatten: return "flatten";
  }
  return "token";
}

std::optional<Pool> pool_from_string(const std::string& name) {
  if (name == "token" || name == "cls") return Pool::Token;
  if (name == "mean" || name == "avg") return Pool::Mean;
  if (name == "flatten") return Pool::Flatten;
  return std::nullopt;
}

int ViTConfig::pooled_dim() const {
  return pool == Pool::Flatten ? num_tokens() * dim : dim;
}

namespace {

// Upper bounds keep arithmetic far from overflow and catch typos (an extra zero) early; they are
// well above every published ViT (ViT-G: dim 1664, depth 48, 16 heads).
constexpr int kMaxImage = 4096;
constexpr int kMaxWidth = 16384;
constexpr int kMaxDepth = 256;
constexpr int kMaxClasses = 1000000;
constexpr int kMaxChannels = 64;

FieldSpec whole(const char* name, const char* label, int max, const char* example, const char* doc,
                double step = 1) {
  FieldSpec s;
  s.name = name;
  s.kind = FieldKind::Int;
  s.label = label;
  s.doc = doc;
  s.min = 1;
  s.max = max;
  s.example = example;
  s.group = FieldGroup::Model;
  s.step = step;
  return s;
}

FieldSpec rate(const char* name, const char* label, const char* example, const char* doc) {
  FieldSpec s;
  s.name = name;
  s.kind = FieldKind::Real;
  s.label = label;
  s.doc = doc;
  s.min = 0;
  s.max = 1;
  s.max_open = true;
  s.example = example;
  s.group = FieldGroup::Model;
  s.step = 0.05;
  return s;
}

FieldSpec toggle(const char* name, const char* check_text, const char* doc) {
  FieldSpec s;
  s.name = name;
  s.kind = FieldKind::Bool;
  s.doc = doc;
  s.check_text = check_text;
  s.group = FieldGroup::Model;
  return s;
}

FieldSpec architecture(FieldSpec s) {
  s.architecture = true;
  return s;
}

Schema<ViTConfig> make_vit_schema() {
  using C = ViTConfig;
  Schema<C> s;
  s.push_back(member_field(&C::image_size, whole("image_size", "Image size", kMaxImage,
      "224, or 28 for Fashion-MNIST",
      "Input side in pixels; images are resized to this square. Must be a multiple of the patch size.", 4)));
  s.push_back(member_field(&C::patch_size, architecture(whole("patch_size", "Patch size", kMaxImage,
      "16, or 4 for 28x28 images",
      "Side of a square patch: the image becomes (image/patch)^2 tokens."))));
  {
    FieldSpec f = whole("in_channels", "Channels", kMaxChannels, "3 for RGB or 1 for grayscale",
                        "Input channels: 1 grayscale, 3 RGB (follows the data set unless given).");
    f.flags = {"--channels"};
    f.group = FieldGroup::None;  // the window takes it from the data set
    s.push_back(member_field(&C::in_channels, f));
  }
  {
    FieldSpec f = whole("num_classes", "Classes", kMaxClasses, "10 for CIFAR-10",
                        "Outputs of the classification head (follows the data set unless given).");
    f.flags = {"--classes"};
    f.group = FieldGroup::None;
    s.push_back(member_field(&C::num_classes, f));
  }
  s.push_back(member_field(&C::dim, architecture(whole("dim", "Width (dim)", kMaxWidth, "768 (ViT-B) or 192 (ViT-Ti)",
      "Token embedding width D, kept through every block. Must be a multiple of heads.", 8))));
  s.push_back(member_field(&C::depth, architecture(whole("depth", "Depth", kMaxDepth, "12",
      "Number of transformer blocks."))));
  s.push_back(member_field(&C::heads, architecture(whole("heads", "Heads", kMaxWidth, "12 for dim 768",
      "Attention heads per block; head dim = dim / heads."))));
  s.push_back(member_field(&C::mlp_hidden, architecture(whole("mlp_hidden", "MLP hidden", 8 * kMaxWidth,
      "4 x dim, e.g. 3072 for dim 768", "Hidden width of each block's MLP; timm uses 4 x dim.", 32))));
  s.push_back(member_field(&C::dropout, rate("dropout", "Dropout", "0.1",
      "Dropout after the position embedding, the attention projection and the MLP layers.")));
  s.push_back(member_field(&C::attn_dropout, rate("attn_dropout", "Attention dropout", "0.0",
      "Dropout on the attention probabilities.")));
  s.push_back(member_field(&C::drop_path, rate("drop_path", "Drop path", "0.1",
      "Stochastic depth rate of the last block, linear from 0 at the first.")));
  s.push_back(member_field(&C::patch_drop, rate("patch_drop", "Patch dropout", "0.25",
      "Training only: this fraction of each image's patch tokens is left out at random after the "
      "position embedding (timm's patch_drop_rate; Liu et al. 2022, PatchDropout), so a step "
      "computes fewer tokens; evaluation and prediction see every patch.")));
  s.push_back(member_field(&C::class_token, architecture(toggle("class_token", "prepend a [CLS] token",
      "A learned token in front of the patches; pool 'token' reads it out."))));
  {
    FieldSpec f;
    f.name = "pool";
    f.kind = FieldKind::Choice;
    f.label = "Pooling";
    f.doc = "token: the class token's final state (ViT paper); mean: mean of patch tokens "
            "(timm's avg pool); flatten: every token concatenated (the Keras example).";
    f.choices = {"token", "mean", "flatten"};
    f.group = FieldGroup::Model;
    f.architecture = true;
    s.push_back({f, [](const C& c) { return nlohmann::json(to_string(c.pool)); },
                 [](C& c, const nlohmann::json& j) {
                   const auto pool = pool_from_string(j.get<std::string>());
                   if (!pool) throw std::invalid_argument("unknown pooling");
                   c.pool = *pool;
                 }});
  }
  s.push_back(member_field(&C::qkv_bias, architecture(toggle("qkv_bias", "bias on q, k, v",
      "A bias on the fused q/k/v projection; timm and Keras both use one."))));
  s.push_back(member_field(&C::mlp_act_after_fc2, architecture(toggle("mlp_act_after_fc2",
      "GELU after fc2 too (Keras example)",
      "The Keras tutorial applies GELU after both MLP layers; timm only after fc1."))));
  {
    FieldSpec f;
    f.name = "ln_eps";
    f.kind = FieldKind::Real;
    f.label = "LayerNorm eps";
    f.doc = "Epsilon of every LayerNorm (timm and the Keras example: 1e-6).";
    f.min = 0, f.max = 1, f.min_open = true, f.max_open = true;
    f.example = "1e-6";
    f.group = FieldGroup::Model;
    f.architecture = true;
    s.push_back(member_field(&C::ln_eps, f));
  }
  {
    FieldSpec f;
    f.name = "head_hidden";
    f.kind = FieldKind::IntList;
    f.label = "Head MLP";
    f.doc = "Hidden layers of an MLP head before the classifier, comma-separated (the Keras "
            "example uses 2048,1024); empty: a linear head.";
    f.min = 1, f.max = 8 * kMaxWidth;
    f.example = "2048,1024 as in the Keras example";
    f.group = FieldGroup::Model;
    f.architecture = true;
    s.push_back(member_field(&C::head_hidden, f));
  }
  s.push_back(member_field(&C::head_dropout, rate("head_dropout", "Head dropout", "0.5",
      "Dropout before each head layer (Keras example: 0.5).")));
  return s;
}

std::string divisors_of(int n) {
  // Every divisor when there are few (the user sees the whole choice); the first ones otherwise.
  constexpr int kShown = 12;
  std::vector<int> all;
  for (int d = 1; d <= n; ++d)
    if (n % d == 0) all.push_back(d);
  std::ostringstream out;
  for (size_t i = 0; i < all.size() && i < kShown; ++i) out << (i ? ", " : "") << all[i];
  if (all.size() > kShown) out << ", ...";
  return out.str();
}

// The multiples of `m` just below and above `n` (skipping zero), as "a or b".
std::string nearest_multiples(int n, int m) {
  const int below = (n / m) * m;
  const int above = below + m;
  std::ostringstream out;
  if (below > 0) out << below << " or ";
  out << above;
  return out.str();
}

}  // namespace

const Schema<ViTConfig>& vit_schema() {
  static const Schema<ViTConfig> schema = make_vit_schema();
  return schema;
}

int64_t patches_kept(int64_t patches, double patch_drop) {
  if (!(patch_drop > 0.0)) return patches;
  return std::min(patches, std::max<int64_t>(1, static_cast<int64_t>(double(patches) * (1.0 - patch_drop))));
}

int ViTConfig::training_patches() const { return int(patches_kept(num_patches(), patch_drop)); }

bool ViTConfig::operator==(const ViTConfig& o) const {
  return differences(vit_schema(), *this, o).empty();
}

std::vector<ConfigError> validate(const ViTConfig& c) {
  std::vector<ConfigError> errors = check_ranges(vit_schema(), c);
  auto has_error = [&](const char* field) {
    for (const auto& e : errors)
      if (e.field == field) return true;
    return false;
  };
  if (!has_error("image_size") && !has_error("patch_size")) {
    std::ostringstream out;
    if (c.patch_size > c.image_size) {
      out << "patch_size " << c.patch_size << " is larger than image_size " << c.image_size
          << ": use a patch_size that divides it (" << divisors_of(c.image_size) << ")";
      errors.push_back({"patch_size", out.str()});
    } else if (c.image_size % c.patch_size != 0) {
      out << "image_size " << c.image_size << " is not a multiple of patch_size " << c.patch_size
          << ": use image_size " << nearest_multiples(c.image_size, c.patch_size)
          << ", or a patch_size that divides " << c.image_size << " (" << divisors_of(c.image_size)
          << ")";
      errors.push_back({"image_size", out.str()});
    }
  }
  if (!has_error("dim") && !has_error("heads") && c.dim % c.heads != 0) {
    std::ostringstream out;
    out << "dim " << c.dim << " is not divisible by heads " << c.heads << ": use dim "
        << nearest_multiples(c.dim, c.heads) << ", or heads that divide " << c.dim << " ("
        << divisors_of(c.dim) << ")";
    errors.push_back({"dim", out.str()});
  }
  if (c.pool == Pool::Flatten && c.patch_drop > 0.0 && !has_error("patch_drop")) {
    errors.push_back({"patch_drop",
                      "patch_drop needs a head that takes any number of tokens: use pool 'mean' or "
                      "'token', or set patch_drop 0 with pool 'flatten'"});
  }
  if (c.pool == Pool::Token && !c.class_token) {
    errors.push_back({"pool",
                      "pool 'token' needs a class token: enable class_token or use pool 'mean'"});
  }
  return errors;
}

void check(const ViTConfig& config) {
  const auto errors = validate(config);
  if (!errors.empty()) throw std::invalid_argument(errors.front().message);
}

namespace {

// A ViT of the given shape, every other field at its default.
ViTConfig shaped(int image, int patch, int channels, int classes, int dim, int depth, int heads,
                 int mlp_hidden) {
  ViTConfig c;
  c.image_size = image, c.patch_size = patch;
  c.in_channels = channels, c.num_classes = classes;
  c.dim = dim, c.depth = depth, c.heads = heads, c.mlp_hidden = mlp_hidden;
  return c;
}

ViTConfig imagenet(const StandardViT& v) {
  return shaped(224, v.patch_size, 3, 1000, v.dim, v.depth, v.heads, 4 * v.dim);
}

ViTConfig keras_cifar() {
  // The reference tutorial's CIFAR-10 model after the Keras example "Image classification with
  // Vision Transformer": 32x32x3 resized to 72x72, 6x6 patches -> 144, dim 64, 4 heads of 16,
  // 8 layers, MLP [128, 64] with GELU and dropout 0.1 after each, class token, final LayerNorm,
  // linear head. 284,874 parameters.
  ViTConfig c = shaped(/*image=*/72, /*patch=*/6, /*channels=*/3, /*classes=*/10, /*dim=*/64,
                       /*depth=*/8, /*heads=*/4, /*mlp_hidden=*/128);
  c.mlp_act_after_fc2 = true;
  c.dropout = 0.1;
  return c;
}

ViTConfig fmnist_small() {
  // Fashion-MNIST (28x28x1): 7x7 patches -> 16 tokens + [CLS], dim 128, 4 blocks of 4 heads, MLP
  // 256, no dropout, the head on the mean of the patch tokens. Chosen for test accuracy within
  // 10 minutes on two cores, trained with bf16 mixed precision and data parallelism (~3,000
  // images/s) and a 1-pixel random crop (TrainConfig defaults). Measured (test top-1, README
  // "Fashion-MNIST today"): dim 96 with dropout 0.1, fp32, no augmentation, 20 epochs 89.8%;
  // same with bf16, crop 1 and 38 epochs 90.6%; this model, 30 epochs 91.0% (90.89% with the
  // oneDNN layer norms of 2026-12-01), 32 epochs 91.06%; with the fused GELU kernels 32 epochs
  // 90.93%, 34 epochs 91.20% in 6.9 min (the default since). 4x4 patches (49 tokens) learned no
  // faster per epoch at ~40% of the speed. Patch dropout 0.25 (training steps see 12 of the 16
  // patches: 13 tokens instead of 17, ~1.25x the images/s) with 36 epochs instead of 34: seeds
  // 42/43/44 91.20/91.04/91.10% in 7.4-7.6 min against 90.99/91.14/91.03% in 8.4-8.8 min without
  // (Intel Xeon model 207, fp32, 2026-12-07); at 34 epochs it gave 91.10/90.94/90.78%. On a
  // Zen 3 (AVX2) that recipe gave 90.91/90.90% in 16-17 min; patch dropout 0.5 (8 of 16 patches,
  // 9 tokens) for 40 epochs, the last 2 on every patch (TrainConfig defaults), gave
  // 91.10/91.11/91.12% (seeds 42/43/44) and 91.20% as `vit train` runs it (seed 42, 2 threads:
  // 16.0 min against 17.2 for the recipe before, right after) with 66.5 TFLOP of training steps
  // instead of 83.0 (without the full-token epochs: 90.92/90.99/91.12%); the default since
  // (README, "Fashion-MNIST today").
  ViTConfig c = shaped(/*image=*/28, /*patch=*/7, /*channels=*/1, /*classes=*/10, /*dim=*/128,
                       /*depth=*/4, /*heads=*/4, /*mlp_hidden=*/256);
  c.pool = Pool::Mean;
  c.patch_drop = 0.5;
  return c;
}

}  // namespace

const std::vector<StandardViT>& standard_vits() {
  static const std::vector<StandardViT> all = {
      {"vit-ti16", "vit_tiny_patch16_224", "ViT-Tiny/16", 16, 192, 12, 3},
      {"vit-s16", "vit_small_patch16_224", "ViT-Small/16", 16, 384, 12, 6},
      {"vit-b16", "vit_base_patch16_224", "ViT-Base/16", 16, 768, 12, 12},
      {"vit-b32", "vit_base_patch32_224", "ViT-Base/32", 32, 768, 12, 12},
      {"vit-l16", "vit_large_patch16_224", "ViT-Large/16", 16, 1024, 24, 16},
      {"", "vit_huge_patch14_224", "ViT-Huge/14", 14, 1280, 32, 16},
  };
  return all;
}

std::optional<int> standard_heads(int dim) {
  for (const auto& v : standard_vits())
    if (v.dim == dim) return v.heads;
  return std::nullopt;
}

const std::vector<Preset>& presets() {
  static const std::vector<Preset> all = [] {
    std::vector<Preset> p = {
        {"fmnist-small", "Small ViT for Fashion-MNIST 28x28x1 (the default)", fmnist_small()},
        {"keras-cifar", "The reference tutorial's CIFAR-10 ViT (Keras example), 72x72x3",
         keras_cifar()},
    };
    for (const auto& v : standard_vits())
      if (!v.preset.empty())
        p.push_back({v.preset, v.title + ", ImageNet 224 (timm " + v.timm + ")", imagenet(v)});
    return p;
  }();
  return all;
}

ViTConfig finetuned_config(const ViTConfig& pretrained, const ViTConfig& requested,
                           const std::set<std::string>& given, const std::string& source) {
  ViTConfig c = pretrained;
  for (const auto& f : vit_schema()) {
    if (!given.count(f.spec.name)) continue;
    const auto want = f.get(requested), have = f.get(pretrained);
    if (!f.spec.architecture) {
      f.set(c, want);
    } else if (want != have) {
      throw std::invalid_argument(f.spec.name + " " + want.dump() + " differs from the pretrained "
                                  "model's " + have.dump() + " (" + source + "): fine-tuning keeps "
                                  "the architecture; drop " + f.spec.cli_flags().front());
    }
  }
  if (c.num_classes == 0) c.num_classes = 1;  // no head in the file: set from the data
  return c;
}

const Preset& preset(const std::string& name) {
  for (const auto& p : presets())
    if (p.name == name) return p;
  std::ostringstream out;
  out << "unknown preset '" << name << "'; known presets:";
  for (const auto& p : presets()) out << ' ' << p.name;
  throw std::invalid_argument(out.str());
}

}  // namespace vit
