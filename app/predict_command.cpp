// `vit predict` (top-k classes per image) and `vit attention` (an attention heatmap over an image),
// for a run directory or a weights file. Torch-free: everything goes through model/inference.h.
#include "commands.h"

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include "atomic_file.h"
#include "inference.h"
#include "runtime.h"

namespace vit::cli {

namespace {

namespace fs = std::filesystem;

struct Source {
  std::string run, weights;
  int threads = 0;
  std::string device = "auto";
};

void add_source_flags(CLI::App& cmd, Source& s) {
  auto* run = cmd.add_option("--run", s.run, "Run directory (its best weights)");
  auto* weights = cmd.add_option("--weights", s.weights, "Weights file (.safetensors)");
  run->excludes(weights);
  cmd.add_option("--threads", s.threads, "Intra-op threads (default: one per core)");
  cmd.add_option("--device", s.device,
                 "Where the model runs: auto (a GPU when this LibTorch has CUDA and sees one), cpu, "
                 "cuda or cuda:N")
      ->capture_default_str();
}

void check_source(const Source& s) {
  if (s.run.empty() && s.weights.empty()) throw UsageError("give --run DIR or --weights FILE");
}

Predictor load(const Source& s) {
  configure_runtime(s.threads);
  Predictor p = Predictor::load(s.run.empty() ? s.weights : s.run, s.device);
  if (!p.note().empty()) std::cerr << "vit: note: " << p.note() << "\n";
  return p;
}

nlohmann::json to_json(const std::vector<Prediction>& top) {
  auto out = nlohmann::json::array();
  for (const auto& p : top)
    out.push_back({{"label", p.label}, {"index", p.index}, {"probability", p.probability}});
  return out;
}

// ---------------------------------------------------------------------------------------------
// vit predict

struct PredictOptions {
  Source source;
  std::vector<std::string> images;
  int topk = 5;
  bool json = false, logits = false;
};

int run_predict(const PredictOptions& o) {
  const Predictor predictor = load(o.source);
  nlohmann::json images = nlohmann::json::array();
  int failures = 0;
  for (const auto& path : o.images) {
    nlohmann::json entry = {{"path", path}};
    try {
      const PredictResult r = predictor.predict(read_image(path), o.topk);
      entry["predictions"] = to_json(r.top);
      if (o.logits) entry["logits"] = r.logits;
      if (!o.json) {
        std::printf("%s\n", path.c_str());
        for (size_t i = 0; i < r.top.size(); ++i)
          std::printf("  %zu. %-24s %7.2f%%  (class %d)\n", i + 1, r.top[i].label.c_str(),
                      100.0 * r.top[i].probability, r.top[i].index);
        if (o.logits) {
          std::printf("  logits:");
          for (float l : r.logits) std::printf(" %.4f", l);
          std::printf("\n");
        }
      }
    } catch (const std::invalid_argument&) {
      throw;  // bad usage (e.g. --topk 0): exit code 2
    } catch (const std::exception& e) {
      // One unreadable file should not hide the other images' results; the exit code says it.
      ++failures;
      entry["error"] = e.what();
      std::cerr << "vit: error: " << e.what() << "\n";
    }
    images.push_back(std::move(entry));
  }
  if (o.json) {
    nlohmann::json out = {{"weights", predictor.weights_path()}, {"images", images}};
    if (images.size() == 1) {  // the common single-image case without digging into the array
      for (const char* key : {"predictions", "logits", "error"})
        if (images[0].contains(key)) out[key] = images[0][key];
    }
    std::cout << out.dump() << std::endl;
  }
  return failures ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// vit attention

struct AttentionOptions {
  Source source;
  std::string image, out, fusion = "mean", target;
  AttentionRequest request;
  double alpha = 0.5;
  bool json = false;
};

bool writable_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* ok : {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
    if (ext == ok) return true;
  return false;
}

// --class: an index or a class name.
int resolve_class(const std::string& text, const Predictor& p) {
  if (text.empty()) return -1;
  const auto& names = p.classes();
  if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); }))
    return std::stoi(text.size() > 9 ? "999999999" : text);  // validate() reports the range
  for (size_t k = 0; k < names.size(); ++k)
    if (names[k] == text) return int(k);
  std::string known;
  for (size_t k = 0; k < std::min<size_t>(names.size(), 10); ++k) known += (k ? ", " : "") + names[k];
  if (names.size() > 10) known += ", ...";
  throw UsageError("--class '" + text + "' is not a class of this model (" + known + ")");
}

std::string describe(const AttentionRequest& r, const Predictor& p, const AttentionMap& m) {
  const ViTConfig& c = p.config();
  std::string s = "block " + std::to_string(m.layer);
  if (r.gradient)
    s = "gradient rollout of blocks 0.." + std::to_string(m.layer) + " for class " +
        std::to_string(m.target_class) + " (" + p.classes()[size_t(m.target_class)] + ")";
  else if (r.rollout)
    s = "rollout of blocks 0.." + std::to_string(m.layer);
  if (!r.gradient)
    s += r.head >= 0 ? ", head " + std::to_string(r.head)
                     : ", " + to_string(r.fusion) + " of " + std::to_string(c.heads) + " heads";
  if (r.discard_ratio > 0) s += ", discard " + std::to_string(r.discard_ratio).substr(0, 4);
  s += r.query_patch >= 0 ? ", from patch " + std::to_string(r.query_patch)
                          : (c.class_token && c.pool == Pool::Token ? ", from the class token"
                                                                    : ", from the pooled tokens");
  return s;
}

int run_attention(AttentionOptions o) {
  const Predictor predictor = load(o.source);
  o.request.target_class = resolve_class(o.target, predictor);
  if (const std::string problem = validate(o.request, predictor.config()); !problem.empty())
    throw UsageError(problem);
  const cv::Mat image = read_image(o.image);
  const ImageAnalysis analysis = predictor.analyze(image, 5);
  const AttentionMap m = analysis.attention(o.request);
  const cv::Mat overlay = overlay_heatmap(display_image(image), m.map, o.alpha);
  std::vector<uint8_t> encoded;
  if (!cv::imencode(fs::path(o.out).extension().string(), overlay, encoded))
    throw std::runtime_error("OpenCV cannot encode " + o.out);
  write_file_atomically(o.out, std::string_view(reinterpret_cast<const char*>(encoded.data()),
                                                encoded.size()));
  const std::string what = describe(o.request, predictor, m);
  const auto& top = analysis.prediction().top.front();
  if (o.json) {
    nlohmann::json map = nlohmann::json::array();
    for (int y = 0; y < m.map.rows; ++y) {
      const float* row = m.map.ptr<float>(y);
      map.push_back(std::vector<float>(row, row + m.map.cols));
    }
    const auto& r = o.request;
    nlohmann::json out = {{"out", o.out},
                          {"image", o.image},
                          {"weights", predictor.weights_path()},
                          {"layer", m.layer},
                          {"head", r.head >= 0 && !r.gradient ? nlohmann::json(r.head) : nlohmann::json()},
                          {"fusion", r.head < 0 && !r.gradient ? nlohmann::json(to_string(r.fusion)) : nlohmann::json()},
                          {"rollout", r.rollout || r.gradient},
                          {"gradient", r.gradient},
                          {"discard", r.discard_ratio},
                          {"query_patch", r.query_patch},
                          {"grid", m.map.rows},
                          {"map", map},
                          {"width", overlay.cols},
                          {"height", overlay.rows},
                          {"predictions", to_json(analysis.prediction().top)},
                          {"description", what}};
    if (r.gradient) out["target_class"] = m.target_class;
    std::cout << out.dump() << std::endl;
  } else {
    std::printf("wrote %s (%dx%d): %s; predicted %s (%.1f%%)\n", o.out.c_str(), overlay.cols,
                overlay.rows, what.c_str(), top.label.c_str(), 100.0 * top.probability);
  }
  return 0;
}

}  // namespace

void add_predict_command(CLI::App& app, SetAction set_action) {
  auto p = std::make_shared<PredictOptions>();
  auto* predict = app.add_subcommand("predict", "Classify images with a run's or a file's weights");
  add_source_flags(*predict, p->source);
  predict->add_option("--image", p->images, "Image file(s) (PNG, JPEG, BMP, WebP, TIFF, PNM)")
      ->required();
  predict->add_option("--topk", p->topk, "Classes to show per image")->capture_default_str();
  predict->add_flag("--json", p->json, "Print one JSON object as the last line of stdout");
  predict->add_flag("--logits", p->logits, "Also print every class's raw logit");
  predict->callback([p, set_action] {
    check_source(p->source);
    if (p->topk < 1) throw UsageError("--topk must be at least 1");
    set_action([p] { return run_predict(*p); });
  });

  auto a = std::make_shared<AttentionOptions>();
  auto* att = app.add_subcommand("attention", "Write an attention heatmap over an image");
  add_source_flags(*att, a->source);
  att->add_option("--image", a->image, "Image file")->required();
  att->add_option("--out", a->out, "Output image (.png, .jpg, .bmp, .webp, .tiff)")->required();
  auto& r = a->request;
  att->add_option("--layer", r.layer, "Block index as in blocks.N (-1 = last; with --rollout: the "
                                      "last block rolled out)")
      ->capture_default_str();
  auto* head = att->add_option("--head", r.head, "One head (default: fuse them with --fusion)");
  auto* fusion = att->add_option("--fusion", a->fusion, "Head fusion: mean, max or min")
                     ->capture_default_str();
  head->excludes(fusion);
  att->add_flag("--rollout", r.rollout, "Attention rollout (Abnar & Zuidema 2020) over blocks 0..layer");
  att->add_option("--discard", r.discard_ratio,
                  "Rollout: share of the lowest attentions dropped, in [0, 1) (e.g. 0.9)");
  att->add_flag("--gradient", r.gradient, "Gradient-weighted rollout for --class (default: predicted)");
  att->add_option("--class", a->target, "Gradient rollout: class index or name");
  att->add_option("--query-patch", r.query_patch,
                  "Show this patch's attention row (row-major) instead of the class token's");
  att->add_option("--alpha", a->alpha, "Heatmap opacity in [0, 1]")->capture_default_str();
  att->add_flag("--json", a->json, "Print one JSON object (with the map) as the last line of stdout");
  att->callback([a, set_action, att] {
    check_source(a->source);
    auto& r = a->request;
    const auto fusion = head_fusion_from_string(a->fusion);
    if (!fusion) throw UsageError("--fusion must be mean, max or min (got '" + a->fusion + "')");
    r.fusion = *fusion;
    if (!writable_extension(a->out))
      throw UsageError("--out " + a->out + ": use a .png, .jpg, .bmp, .webp or .tiff file name");
    if (!(a->alpha >= 0.0 && a->alpha <= 1.0)) throw UsageError("--alpha must be in [0, 1]");
    if (!(r.discard_ratio >= 0.0 && r.discard_ratio < 1.0))
      throw UsageError("--discard must be in [0, 1), e.g. 0.9");
    if (r.discard_ratio > 0 && !r.rollout && !r.gradient)
      throw UsageError("--discard applies to attention rollout: add --rollout");
    if (r.gradient && (att->count("--head") || att->count("--fusion")))
      throw UsageError("--gradient weighs the heads by their gradients: drop --head/--fusion");
    if (!a->target.empty() && !r.gradient)
      throw UsageError("--class chooses the class gradient rollout explains: add --gradient");
    set_action([a] { return run_attention(*a); });
  });
}

}  // namespace vit::cli
