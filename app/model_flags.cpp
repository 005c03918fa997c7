#include "model_flags.h"

namespace vit::cli {

void add_model_flags(CLI::App& cmd, ModelFlags& f) {
  std::string names;
  for (const auto& p : presets()) names += (names.empty() ? "" : ", ") + p.name;
  cmd.add_option("--preset", f.preset, "Model preset: " + names)->capture_default_str();
  cmd.add_option("--image-size", f.image_size, "Input image side in pixels");
  cmd.add_option("--patch-size", f.patch_size, "Patch side in pixels (divides the image size)");
  cmd.add_option("--dim", f.dim, "Token embedding width (the MLP width keeps the preset's ratio)");
  cmd.add_option("--depth", f.depth, "Number of transformer blocks");
  cmd.add_option("--heads", f.heads, "Attention heads (divide --dim)");
  cmd.add_option("--classes", f.classes, "Number of output classes");
  cmd.add_option("--channels", f.channels, "Input channels (1 grayscale, 3 RGB)");
  cmd.add_option("--mlp-hidden", f.mlp_hidden, "Hidden width of each block's MLP");
  cmd.add_option("--dropout", f.dropout, "Dropout rate in [0, 1)");
  cmd.add_option("--attn-dropout", f.attn_dropout, "Attention dropout rate in [0, 1)");
  cmd.add_option("--drop-path", f.drop_path, "Stochastic depth rate in [0, 1)");
  cmd.add_option("--pool", f.pool, "Pooling: token, mean or flatten");
}

ViTConfig resolve(const ModelFlags& f) {
  ViTConfig c;
  try {
    c = preset(f.preset).config;
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if (f.image_size) c.image_size = *f.image_size;
  if (f.patch_size) c.patch_size = *f.patch_size;
  if (f.dim) {
    // Keep the preset's MLP ratio when only the width changes.
    if (!f.mlp_hidden && c.dim > 0) c.mlp_hidden = static_cast<int>(int64_t(c.mlp_hidden) * *f.dim / c.dim);
    c.dim = *f.dim;
  }
  if (f.depth) c.depth = *f.depth;
  if (f.heads) c.heads = *f.heads;
  if (f.classes) c.num_classes = *f.classes;
  if (f.channels) c.in_channels = *f.channels;
  if (f.mlp_hidden) c.mlp_hidden = *f.mlp_hidden;
  if (f.dropout) c.dropout = *f.dropout;
  if (f.attn_dropout) c.attn_dropout = *f.attn_dropout;
  if (f.drop_path) c.drop_path = *f.drop_path;
  if (f.pool) {
    auto pool = pool_from_string(*f.pool);
    if (!pool) throw UsageError("--pool must be token, mean or flatten (got '" + *f.pool + "')");
    c.pool = *pool;  // the class token stays (timm keeps it with global_pool="avg")
  }
  const auto errors = validate(c);
  if (!errors.empty()) throw UsageError(errors.front().message);
  return c;
}

}  // namespace vit::cli
