#include <torch/torch.h>

#include "attention_maps.h"

#include <limits>
#include <sstream>
#include <stdexcept>

#include "vit.h"

namespace vit {

namespace {

void check_square(const at::Tensor& a, int64_t dims, const char* what) {
  if (a.dim() != dims || a.size(-1) != a.size(-2) || !a.is_floating_point()) {
    std::ostringstream out;
    out << what << " expects a float tensor of " << dims << " dimensions ending in (T, T), got "
        << a.sizes();
    throw std::invalid_argument(out.str());
  }
}

}  // namespace

at::Tensor fuse_heads(const at::Tensor& attention, HeadFusion fusion) {
  check_square(attention, 4, "fuse_heads");
  switch (fusion) {
    case HeadFusion::Max: return std::get<0>(attention.max(1));  // (B, T, T)
    case HeadFusion::Min: return std::get<0>(attention.min(1));
    case HeadFusion::Mean: break;
  }
  return attention.mean(1);
}

at::Tensor discard_lowest(const at::Tensor& attention, double ratio, bool keep_first_token) {
  check_square(attention, 3, "discard_lowest");
  if (!(ratio >= 0.0 && ratio < 1.0))
    throw std::invalid_argument("discard ratio must be in [0, 1), got " + std::to_string(ratio));
  const int64_t B = attention.size(0), T = attention.size(1);
  auto out = attention.clone().contiguous();
  auto candidate = torch::ones({T, T}, torch::kBool);  // entries that may be discarded
  if (keep_first_token) {
    candidate.select(0, 0).fill_(false);
    candidate.select(1, 0).fill_(false);
  }
  const int64_t k = int64_t(ratio * double(candidate.sum().item<int64_t>()));
  if (k == 0) return out;
  auto flat = out.view({B, T * T});                                           // (B, T * T)
  auto keyed = flat.masked_fill(~candidate.view({1, T * T}), std::numeric_limits<float>::infinity());
  auto lowest = std::get<1>(keyed.topk(k, -1, /*largest=*/false, /*sorted=*/false));  // (B, k)
  flat.scatter_(1, lowest, 0.0);
  return out;
}

at::Tensor attention_rollout(const std::vector<at::Tensor>& fused, double discard_ratio,
                             bool has_class_token) {
  if (fused.empty()) throw std::invalid_argument("attention rollout needs at least one block");
  check_square(fused.front(), 3, "attention_rollout");
  const int64_t T = fused.front().size(-1);
  const auto eye = torch::eye(T, fused.front().options());  // (T, T)
  at::Tensor rollout;
  for (const auto& block : fused) {
    check_square(block, 3, "attention_rollout");
    auto a = discard_ratio > 0 ? discard_lowest(block, discard_ratio, has_class_token) : block;
    a = (a + eye) / 2;                            // the residual path: half stays in place
    a = a / a.sum(-1, /*keepdim=*/true);          // (B, T, T), rows sum to 1
    rollout = rollout.defined() ? torch::matmul(a, rollout) : a;
  }
  return rollout;
}

at::Tensor gradient_weighted_fusion(const at::Tensor& attention, const at::Tensor& gradient) {
  check_square(attention, 4, "gradient_weighted_fusion");
  if (gradient.sizes() != attention.sizes())
    throw std::invalid_argument("attention and gradient shapes differ");
  return (attention * gradient).clamp_min(0).mean(1);  // (B, T, T)
}

AttentionGradients attention_gradients(VisionTransformerImpl& model, const at::Tensor& images,
                                       const std::vector<int64_t>& target_classes) {
  const bool was_training = model.is_training();
  model.eval();
  torch::AutoGradMode grad_mode(true);
  AttentionGradients out;
  try {
    ViTOutput o = model.forward_with_attention(images);
    const int64_t B = o.logits.size(0), classes = o.logits.size(1);
    if (!target_classes.empty() && int64_t(target_classes.size()) != B)
      throw std::invalid_argument("give one target class per image or none");
    const auto predicted = o.logits.argmax(1);
    for (int64_t b = 0; b < B; ++b) {
      int64_t t = target_classes.empty() ? -1 : target_classes[b];
      if (t < 0) t = predicted[b].item<int64_t>();
      if (t >= classes)
        throw std::invalid_argument("class " + std::to_string(t) + " does not exist: the model has " +
                                    std::to_string(classes) + " classes");
      out.targets.push_back(t);
    }
    // Each image's score depends only on its own activations, so one backward of the sum gives
    // every image its own gradient.
    auto index = torch::tensor(out.targets, torch::kInt64).unsqueeze(1).to(o.logits.device());  // (B, 1)
    auto score = o.logits.gather(1, index).sum();
    for (auto& a : o.attentions)
      if (!a.requires_grad())
        throw std::runtime_error("the attention does not depend on trainable weights: cannot take "
                                 "its gradient (are the parameters frozen?)");
    out.gradients = torch::autograd::grad({score}, o.attentions, /*grad_outputs=*/{},
                                          /*retain_graph=*/false, /*create_graph=*/false,
                                          /*allow_unused=*/true);
    for (size_t l = 0; l < o.attentions.size(); ++l) {
      out.attentions.push_back(o.attentions[l].detach());
      if (!out.gradients[l].defined()) out.gradients[l] = torch::zeros_like(out.attentions[l]);
    }
    out.logits = o.logits.detach();
  } catch (...) {
    model.train(was_training);
    throw;
  }
  model.train(was_training);
  return out;
}

at::Tensor query_row(const at::Tensor& m, const ViTConfig& c, int query_patch) {
  check_square(m, 3, "query_row");
  const int64_t first = c.class_token ? 1 : 0;  // token index of patch 0
  if (m.size(1) != c.num_tokens())
    throw std::invalid_argument("attention has " + std::to_string(m.size(1)) +
                                " tokens, the config " + std::to_string(c.num_tokens()));
  if (query_patch >= c.num_patches())
    throw std::invalid_argument("patch " + std::to_string(query_patch) + " does not exist");
  if (query_patch >= 0) return m.select(1, first + query_patch);  // (B, T)
  switch (c.pool) {
    case Pool::Token: return m.select(1, 0);                          // the class token
    case Pool::Mean: return m.narrow(1, first, c.num_patches()).mean(1);  // the pooled patches
    case Pool::Flatten: break;
  }
  return m.mean(1);  // every token feeds the head
}

at::Tensor patch_map(const at::Tensor& row, const ViTConfig& c) {
  if (row.dim() != 2 || row.size(1) != c.num_tokens())
    throw std::invalid_argument("patch_map expects (batch, " + std::to_string(c.num_tokens()) +
                                ") rows");
  const int64_t G = c.grid();
  return row.narrow(1, c.class_token ? 1 : 0, c.num_patches()).reshape({row.size(0), G, G});
}

at::Tensor attention_map(const std::vector<at::Tensor>& attentions, const ViTConfig& c,
                         const AttentionRequest& r, const std::vector<at::Tensor>* gradients) {
  if (const std::string problem = validate(r, c); !problem.empty())
    throw std::invalid_argument(problem);
  if (int64_t(attentions.size()) != c.depth)
    throw std::invalid_argument("expected the attention of " + std::to_string(c.depth) +
                                " blocks, got " + std::to_string(attentions.size()));
  if (r.gradient && (!gradients || gradients->size() != attentions.size()))
    throw std::invalid_argument("gradient rollout needs the attention gradients of every block");
  const int last = r.layer < 0 ? c.depth - 1 : r.layer;
  auto fused = [&](int l) {
    if (r.gradient) return gradient_weighted_fusion(attentions[l], (*gradients)[l]);
    if (r.head >= 0) return attentions[l].select(1, r.head);  // (B, T, T)
    return fuse_heads(attentions[l], r.fusion);
  };
  at::Tensor matrix;
  if (r.rollout || r.gradient) {
    std::vector<at::Tensor> blocks;
    for (int l = 0; l <= last; ++l) blocks.push_back(fused(l));
    matrix = attention_rollout(blocks, r.discard_ratio, c.class_token);
  } else {
    matrix = fused(last);
  }
  return patch_map(query_row(matrix, c, r.query_patch), c);  // (B, G, G)
}

at::Tensor position_similarity(const at::Tensor& pos_embed, const ViTConfig& c) {
  if (pos_embed.dim() != 3 || pos_embed.size(1) != c.num_tokens())
    throw std::invalid_argument("pos_embed must be (1, " + std::to_string(c.num_tokens()) + ", D)");
  const int64_t N = c.num_patches(), G = c.grid();
  auto p = pos_embed[0].narrow(0, c.class_token ? 1 : 0, N);            // (N, D)
  p = p / p.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
  return torch::matmul(p, p.t()).reshape({N, G, G});                   // (N, G, G)
}

}  // namespace vit
