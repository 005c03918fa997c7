#include <torch/torch.h>

#include "inference.h"

#include "device.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "attention_maps.h"
#include "checkpoint.h"
#include "data_pipeline.h"
#include "datasets.h"
#include "finetune.h"
#include "run_dir.h"
#include "weights_import.h"

namespace vit {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Images

namespace {

std::string megapixels(int64_t pixels) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", double(pixels) / 1e6);
  return buf;
}

// Any image check_image accepts -> 8-bit BGR at its own size.
cv::Mat to_bgr8(const cv::Mat& image) {
  if (const std::string problem = check_image(image); !problem.empty())
    throw std::invalid_argument(problem);
  cv::Mat img = image;
  switch (img.depth()) {
    case CV_16U: img.convertTo(img, CV_8U, 1.0 / 257.0); break;
    case CV_32F:
    case CV_64F: img.convertTo(img, CV_8U, 255.0); break;
    default: break;
  }
  if (img.channels() == 2 || img.channels() == 4) img = composite_over_white(img);
  if (img.channels() == 1) cv::cvtColor(img, img, cv::COLOR_GRAY2BGR);
  return img;
}

cv::Mat to_mat(const torch::Tensor& t) {  // 2-D float tensor (any device) -> CV_32F copy
  auto c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  return cv::Mat(int(c.size(0)), int(c.size(1)), CV_32F, c.data_ptr<float>()).clone();
}

}  // namespace

std::string check_image(const cv::Mat& image) {
  if (image.empty() || image.rows <= 0 || image.cols <= 0) return "empty image (no pixels)";
  const int d = image.depth();
  if (d != CV_8U && d != CV_16U && d != CV_32F && d != CV_64F)
    return "unsupported pixel type (OpenCV depth " + std::to_string(d) +
           "): use 8- or 16-bit unsigned or float images";
  if (image.channels() < 1 || image.channels() > 4)
    return "unsupported number of channels (" + std::to_string(image.channels()) +
           "): use gray, RGB or RGBA images";
  const int64_t pixels = int64_t(image.rows) * image.cols;
  if (pixels > kMaxImagePixels)
    return std::to_string(image.cols) + "x" + std::to_string(image.rows) + " is " +
           megapixels(pixels) + " megapixels, above the limit of " + megapixels(kMaxImagePixels) +
           ": downscale it first";
  return {};
}

cv::Mat read_image(const std::string& path) {
  const std::string formats = std::string("; use a ") + kImageFormats + " image";
  std::error_code ec;
  if (!fs::exists(path, ec)) throw std::runtime_error(path + ": no such file");
  if (fs::is_directory(path, ec)) throw std::runtime_error(path + ": is a folder, not an image file");
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) throw std::runtime_error(path + ": cannot read: " + ec.message());
  if (size == 0) throw std::runtime_error(path + ": empty file, not an image" + formats);
  if (size > kMaxImageFileBytes)
    throw std::runtime_error(path + ": " + std::to_string(size >> 20) +
                             " MiB is too large for an image file (limit 1024 MiB)" + formats);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  std::vector<uint8_t> bytes(size);
  in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(size));
  if (in.gcount() != std::streamsize(size)) throw std::runtime_error(path + ": read error");
  // The header, not the decoder, decides: only formats whose size was read, and at most
  // kMaxImagePixels (overflow-safe for any declared size).
  if (const std::string problem = check_image_header(bytes.data(), bytes.size()); !problem.empty())
    throw std::runtime_error(path + ": " + problem);
  cv::Mat image;
  try {
    image = cv::imdecode(bytes, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {  // e.g. OpenCV's own size limit, a corrupt stream
    throw std::runtime_error(path + ": OpenCV cannot decode it (" + e.err + ")" + formats);
  }
  if (image.empty())
    throw std::runtime_error(path + ": not an image OpenCV can decode (corrupt, truncated or not "
                             "an image)" + formats);
  if (const std::string problem = check_image(image); !problem.empty())
    throw std::runtime_error(path + ": " + problem);
  return image;
}

cv::Mat display_image(const cv::Mat& image, int min_side, int max_side) {
  cv::Mat img = to_bgr8(image);
  const int longer = std::max(img.cols, img.rows);
  if (min_side > 0 && longer < min_side) {
    int f = (min_side + longer - 1) / longer;  // whole factor: every pixel the same size
    if (max_side > 0 && longer * f > max_side) f = max_side / longer;
    if (f >= 2) {
      cv::resize(img, img, cv::Size(img.cols * f, img.rows * f), 0, 0, cv::INTER_NEAREST);
    } else {  // no whole factor fits between the bounds
      const double s = double(max_side > 0 ? std::min(min_side, max_side) : min_side) / longer;
      cv::resize(img, img,
                 cv::Size(std::max(1, int(std::lround(img.cols * s))),
                          std::max(1, int(std::lround(img.rows * s)))),
                 0, 0, cv::INTER_LINEAR);
    }
  } else if (max_side > 0 && longer > max_side) {
    const double s = double(max_side) / longer;
    cv::resize(img, img,
               cv::Size(std::max(1, int(std::lround(img.cols * s))),
                        std::max(1, int(std::lround(img.rows * s)))),
               0, 0, cv::INTER_AREA);
  }
  return img;
}

cv::Mat overlay_heatmap(const cv::Mat& image, const cv::Mat& map, double alpha, int colormap) {
  if (map.empty() || map.type() != CV_32FC1)
    throw std::invalid_argument("overlay_heatmap expects a non-empty single-channel float map");
  if (!(alpha >= 0.0 && alpha <= 1.0))
    throw std::invalid_argument("overlay alpha must be in [0, 1]");
  const cv::Mat base = to_bgr8(image);
  cv::Mat up;
  cv::resize(map, up, base.size(), 0, 0, cv::INTER_LINEAR);
  double lo = 0, hi = 0;
  cv::minMaxLoc(map, &lo, &hi);
  cv::Mat gray;
  if (hi > lo)
    up.convertTo(gray, CV_8U, 255.0 / (hi - lo), -lo * 255.0 / (hi - lo));
  else
    gray = cv::Mat::zeros(base.size(), CV_8U);
  cv::Mat heat, out;
  cv::applyColorMap(gray, heat, colormap);
  cv::addWeighted(base, 1.0 - alpha, heat, alpha, 0.0, out);
  return out;
}

cv::Mat dataset_image(const Dataset& data, int64_t index) {
  if (index < 0 || index >= data.size())
    throw std::invalid_argument("image " + std::to_string(index) + " is outside the data set (" +
                                std::to_string(data.size()) + " images)");
  const auto img = data.images[index].contiguous();  // (C, H, W) uint8, RGB
  const int C = int(img.size(0)), H = int(img.size(1)), W = int(img.size(2));
  const uint8_t* p = img.data_ptr<uint8_t>();
  cv::Mat out(H, W, CV_8UC(C));
  for (int y = 0; y < H; ++y) {
    uint8_t* d = out.ptr<uint8_t>(y);
    for (int x = 0; x < W; ++x)
      for (int c = 0; c < C; ++c)
        d[x * C + c] = p[int64_t(C == 3 ? 2 - c : c) * H * W + int64_t(y) * W + x];  // RGB -> BGR
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Predictor

struct Predictor::Impl {
  VisionTransformer model{nullptr};
  ViTConfig config;
  std::vector<std::string> classes;
  Normalization norm;
  std::string weights, note;
  c10::Device device{torch::kCPU};

  // The image as uint8 planes (C, S, S), RGB order, converted as for training.
  std::vector<uint8_t> planes(const cv::Mat& image) const {
    if (const std::string problem = check_image(image); !problem.empty())
      throw std::invalid_argument(problem);
    const int S = config.image_size, C = config.in_channels;
    std::vector<uint8_t> out(size_t(C) * S * S);
    if (const std::string problem = convert_decoded_image(image, S, C, out.data()); !problem.empty())
      throw std::invalid_argument(problem);
    return out;
  }

  // Normalized float batch (B, C, S, S).
  torch::Tensor inputs(const std::vector<cv::Mat>& images) const {
    const int S = config.image_size, C = config.in_channels;
    auto batch = torch::empty({int64_t(images.size()), C, S, S}, torch::kFloat32);
    float* dst = batch.data_ptr<float>();
    for (size_t i = 0; i < images.size(); ++i) {
      const auto u8 = planes(images[i]);
      prepare_image(u8.data(), C, S, S, S, norm, AugmentConfig{}, 0, dst + i * size_t(C) * S * S);
    }
    return batch.to(device);
  }

  PredictResult result(const torch::Tensor& logits, int topk) const {  // logits (classes)
    PredictResult r;
    auto l = logits.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    auto p = l.softmax(0).contiguous();
    r.logits.assign(l.data_ptr<float>(), l.data_ptr<float>() + l.numel());
    r.probabilities.assign(p.data_ptr<float>(), p.data_ptr<float>() + p.numel());
    std::vector<int> order(r.probabilities.size());
    std::iota(order.begin(), order.end(), 0);
    const int k = std::min<int>(topk, int(order.size()));
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) {
      return r.probabilities[a] > r.probabilities[b] || (r.probabilities[a] == r.probabilities[b] && a < b);
    });
    for (int i = 0; i < k; ++i)
      r.top.push_back({classes[order[i]], order[i], r.probabilities[order[i]]});
    return r;
  }
};

namespace {

void check_topk(int topk) {
  if (topk < 1) throw std::invalid_argument("top-k must be at least 1, got " + std::to_string(topk));
}

// Class names from a JSON array, when it has one string per class.
std::optional<std::vector<std::string>> names_from(const nlohmann::json& j, int classes) {
  if (!j.is_array() || int(j.size()) != classes) return std::nullopt;
  std::vector<std::string> names;
  for (const auto& v : j) {
    if (!v.is_string()) return std::nullopt;
    names.push_back(v.get<std::string>());
  }
  return names;
}

std::optional<std::vector<std::string>> run_class_names(const fs::path& run_dir, int classes) {
  try {
    const auto names = RunReader(run_dir.string()).info().classes;
    if (int(names.size()) == classes) return names;
  } catch (const std::runtime_error&) {
  }
  return std::nullopt;
}

}  // namespace

Predictor::Predictor(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Predictor::Predictor(Predictor&&) noexcept = default;
Predictor& Predictor::operator=(Predictor&&) noexcept = default;
Predictor::~Predictor() = default;

std::string Predictor::device() const { return describe_device(impl_->device); }

Predictor Predictor::load(const std::string& path, const std::string& device) {
  const c10::Device where = resolve_device(device);  // a bad spec fails before any loading
  std::error_code ec;
  const fs::path p(path);
  if (!fs::exists(p, ec))
    throw std::runtime_error(path + ": no such file or directory: give a run directory "
                             "(runs/<name>) or a .safetensors weights file");
  fs::path weights, run_dir;
  if (fs::is_directory(p, ec)) {
    run_dir = p;
    weights = RunReader(path).weights(Weights::Best);
    if (weights.empty())
      throw std::runtime_error(path + " has no checkpoints/best.safetensors or last.safetensors: "
                               "give a run directory `vit train` wrote, or a weights file");
  } else {
    weights = p;
    run_dir = run_dir_of_weights(path);
  }

  auto impl = std::make_shared<Impl>();
  CheckpointInfo info;
  try {
    impl->model = load_model(weights.string(), &info);
  } catch (const std::runtime_error& not_ours) {
    if (!run_dir.empty() && fs::is_directory(p, ec)) throw;
    // Not a ViT Studio checkpoint: timm, Hugging Face or Google weights, which import_weights maps
    // to our names with the preprocessing the file (or its family) implies.
    std::string ext = weights.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
    ImportedWeights w;
    try {
      w = import_weights(weights.string());
    } catch (const std::exception&) {
      if (ext == ".safetensors") throw not_ours;  // the first message is about our format
      throw;
    }
    if (!w.has_head || w.config.num_classes < 1)
      throw std::runtime_error(path + " has no classification head, so it cannot classify: import "
                               "it with a new head (vit import --classes N) and train it first");
    impl->model = VisionTransformer(w.config);
    load_pretrained(*impl->model, w);
    info.config = w.config;
    info.normalization = w.normalization;
    impl->note = "imported " + w.naming + " weights; preprocessing from " + w.normalization_source;
  }
  impl->model->eval();
  impl->device = where;
  impl->model->to(where);
  impl->config = info.config;
  impl->weights = weights.string();
  const int K = impl->config.num_classes, C = impl->config.in_channels;

  std::optional<std::vector<std::string>> names;
  if (auto it = info.metadata.find("classes"); it != info.metadata.end()) {
    const auto j = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded()) names = names_from(j, K);
  }
  if (!names && !run_dir.empty()) names = run_class_names(run_dir, K);
  if (!names) {
    names.emplace();
    for (int k = 0; k < K; ++k) names->push_back("class " + std::to_string(k));
  }
  impl->classes = std::move(*names);

  impl->norm = info.normalization;
  if (int(impl->norm.mean.size()) != C || int(impl->norm.std.size()) != C) {
    impl->norm.mean.assign(C, 0.5f);
    impl->norm.std.assign(C, 0.5f);
    impl->note = impl->weights + " does not record its normalization: using mean = std = 0.5 "
                 "(timm's ViT default)";
  }
  return Predictor(std::move(impl));
}

const ViTConfig& Predictor::config() const { return impl_->config; }
const std::vector<std::string>& Predictor::classes() const { return impl_->classes; }
const Normalization& Predictor::normalization() const { return impl_->norm; }
const std::string& Predictor::weights_path() const { return impl_->weights; }
const std::string& Predictor::note() const { return impl_->note; }

PatchGrid Predictor::grid() const {
  const auto& c = impl_->config;
  return {c.image_size, c.patch_size, c.grid(), c.class_token};
}

cv::Mat Predictor::model_image(const cv::Mat& image) const {
  const int S = impl_->config.image_size, C = impl_->config.in_channels;
  const auto u8 = impl_->planes(image);
  cv::Mat out(S, S, CV_8UC(C));
  for (int y = 0; y < S; ++y) {
    uint8_t* d = out.ptr<uint8_t>(y);
    for (int x = 0; x < S; ++x)
      for (int c = 0; c < C; ++c)
        d[x * C + c] = u8[size_t(C == 3 ? 2 - c : c) * S * S + size_t(y) * S + x];  // RGB -> BGR
  }
  return out;
}

PredictResult Predictor::predict(const cv::Mat& image, int topk) const {
  return predict(std::vector<cv::Mat>{image}, topk).front();
}

std::vector<PredictResult> Predictor::predict(const std::vector<cv::Mat>& images, int topk) const {
  check_topk(topk);
  torch::NoGradGuard no_grad;
  std::vector<PredictResult> out;
  constexpr size_t kChunk = 64;
  for (size_t begin = 0; begin < images.size(); begin += kChunk) {
    const std::vector<cv::Mat> chunk(images.begin() + begin,
                                     images.begin() + std::min(images.size(), begin + kChunk));
    const auto logits = impl_->model->forward(impl_->inputs(chunk));  // (B, classes)
    for (int64_t i = 0; i < logits.size(0); ++i) out.push_back(impl_->result(logits[i], topk));
  }
  return out;
}

struct ImageAnalysis::Impl {
  std::shared_ptr<Predictor::Impl> p;
  torch::Tensor input;                     // (1, C, S, S)
  std::vector<torch::Tensor> attentions;   // L x (1, H, T, T)
  PredictResult prediction;
  std::map<int64_t, std::vector<torch::Tensor>> gradients;  // by target class
};

ImageAnalysis::ImageAnalysis(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ImageAnalysis::ImageAnalysis(ImageAnalysis&&) noexcept = default;
ImageAnalysis& ImageAnalysis::operator=(ImageAnalysis&&) noexcept = default;
ImageAnalysis::~ImageAnalysis() = default;

const PredictResult& ImageAnalysis::prediction() const { return impl_->prediction; }

AttentionMap ImageAnalysis::attention(const AttentionRequest& r) const {
  const ViTConfig& c = impl_->p->config;
  if (const std::string problem = validate(r, c); !problem.empty())
    throw std::invalid_argument(problem);
  AttentionMap out;
  out.layer = r.layer < 0 ? c.depth - 1 : r.layer;
  torch::Tensor map;
  if (r.gradient) {
    const int64_t target = r.target_class < 0 ? impl_->prediction.top.front().index : r.target_class;
    auto it = impl_->gradients.find(target);
    if (it == impl_->gradients.end()) {
      auto g = attention_gradients(*impl_->p->model, impl_->input, {target});
      it = impl_->gradients.emplace(target, std::move(g.gradients)).first;
    }
    torch::NoGradGuard no_grad;
    map = attention_map(impl_->attentions, c, r, &it->second);
    out.target_class = int(target);
  } else {
    torch::NoGradGuard no_grad;
    map = attention_map(impl_->attentions, c, r);
  }
  out.map = to_mat(map[0]);
  return out;
}

ImageAnalysis Predictor::analyze(const cv::Mat& image, int topk) const {
  check_topk(topk);
  auto a = std::make_unique<ImageAnalysis::Impl>();
  a->p = impl_;
  a->input = impl_->inputs({image});
  torch::NoGradGuard no_grad;
  ViTOutput o = impl_->model->forward_with_attention(a->input);
  a->attentions = std::move(o.attentions);
  a->prediction = impl_->result(o.logits[0], topk);
  return ImageAnalysis(std::move(a));
}

AttentionMap Predictor::attention(const cv::Mat& image, const AttentionRequest& request) const {
  if (const std::string problem = validate(request, impl_->config); !problem.empty())
    throw std::invalid_argument(problem);  // before paying for the forward pass
  return analyze(image).attention(request);
}

cv::Mat Predictor::position_similarity(int patch) const {
  const auto& c = impl_->config;
  if (patch < 0 || patch >= c.num_patches())
    throw std::invalid_argument("patch " + std::to_string(patch) + " does not exist: use 0.." +
                                std::to_string(c.num_patches() - 1));
  torch::NoGradGuard no_grad;
  return to_mat(vit::position_similarity(impl_->model->pos_embed, c)[patch]);
}

Evaluation Predictor::evaluate(const Dataset& data, const EvalOptions& options) const {
  const auto& c = impl_->config;
  const int K = c.num_classes;
  if (data.size() == 0) throw std::invalid_argument("the data set " + data.name + " is empty");
  if (data.images.size(1) != c.in_channels)
    throw std::invalid_argument("the data set has " + std::to_string(data.images.size(1)) +
                                " channel(s) but the model expects " +
                                std::to_string(c.in_channels) + ": load it with channels " +
                                std::to_string(c.in_channels));
  if (int(data.classes.size()) > K || data.labels.max().item<int64_t>() >= K)
    throw std::invalid_argument("the data set has " + std::to_string(data.classes.size()) +
                                " classes but the model only " + std::to_string(K));
  if (options.batch_size < 1 || options.max_wrong < 0)
    throw std::invalid_argument("evaluation needs batch_size >= 1 and max_wrong >= 0");

  Evaluation ev;
  ev.classes = int(data.classes.size()) == K ? data.classes : impl_->classes;
  ev.confusion.assign(K, std::vector<int64_t>(K, 0));
  ev.predicted.assign(size_t(data.size()), -1);
  ev.confidence.assign(size_t(data.size()), 0.0f);
  std::vector<Misclassified> wrong;
  int64_t correct = 0, correct5 = 0;
  double loss_sum = 0.0;

  LoaderOptions lo;
  lo.batch_size = options.batch_size;
  lo.image_size = c.image_size;
  lo.normalization = impl_->norm;
  lo.shuffle = false;
  std::vector<int64_t> rows(size_t(data.size()));
  std::iota(rows.begin(), rows.end(), 0);
  DataLoader loader(data, std::move(rows), lo);
  loader.start_epoch(0);
  torch::NoGradGuard no_grad;
  while (true) {
    if (options.stop && options.stop()) {
      ev.complete = false;
      break;
    }
    auto batch = loader.next();
    if (!batch) break;
    const auto logits = impl_->model->forward(batch->images.to(impl_->device)).to(torch::kCPU);  // (B, K)
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, batch->labels,
                    torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    const auto probs = logits.softmax(1);
    const auto best = probs.max(1);
    const auto top_p = std::get<0>(best).contiguous(), top_i = std::get<1>(best).contiguous();
    const auto top5 = std::get<1>(logits.topk(std::min(5, K), 1)).contiguous();  // (B, k)
    const auto labels = batch->labels.contiguous();
    const int64_t B = labels.size(0), k5 = top5.size(1);
    const int64_t* label = labels.data_ptr<int64_t>();
    const int64_t* best_class = top_i.data_ptr<int64_t>();
    const float* best_p = top_p.data_ptr<float>();
    const int64_t* five = top5.data_ptr<int64_t>();
    for (int64_t i = 0; i < B; ++i) {
      const int64_t row = batch->indices[size_t(i)];
      const int t = int(label[i]);
      const int pr = int(best_class[i]);
      const float pp = best_p[i];
      ev.predicted[size_t(row)] = pr;
      ev.confidence[size_t(row)] = pp;
      ++ev.confusion[t][pr];
      if (t == pr) ++correct;
      else wrong.push_back({row, t, pr, pp});
      for (int64_t j = 0; j < k5; ++j)
        if (five[i * k5 + j] == t) ++correct5;
    }
    ev.count += B;
    if (options.progress) options.progress(ev.count, data.size());
  }
  for (int t = 0; t < K; ++t) {
    const int64_t n = std::accumulate(ev.confusion[t].begin(), ev.confusion[t].end(), int64_t(0));
    ev.class_count.push_back(n);
    ev.class_accuracy.push_back(n ? double(ev.confusion[t][t]) / double(n) : 0.0);
  }
  if (ev.count > 0) {
    ev.accuracy = double(correct) / double(ev.count);
    ev.top5_accuracy = double(correct5) / double(ev.count);
    ev.loss = loss_sum / double(ev.count);
  }
  std::stable_sort(wrong.begin(), wrong.end(), [](const Misclassified& a, const Misclassified& b) {
    return a.probability > b.probability;
  });
  if (int(wrong.size()) > options.max_wrong) wrong.resize(size_t(options.max_wrong));
  ev.most_confident_wrong = std::move(wrong);
  return ev;
}

}  // namespace vit
