// Using a trained ViT: load weights with the preprocessing they were trained with, classify
// images, explain them with attention maps (attention_maps.h), show those as heatmaps, and
// evaluate on a labelled set (confusion matrix, per-class accuracy, the most confidently wrong
// images). What `vit predict`, `vit attention` and the window's inspection views use.
//
// Torch-free header: LibTorch stays behind the pimpl, so the GUI's glue includes this at the cost
// of OpenCV's core header. Images are cv::Mat as cv::imread(path, cv::IMREAD_UNCHANGED) returns
// them: 1 (gray), 3 (BGR) or 4 (BGRA) channels, 8 or 16 bit or float in [0, 1]. They are
// converted exactly as image folders are for training (datasets.h): alpha composited over white,
// to the model's channels, stretched to its square input, normalized with the weights' mean/std.
//
// Thread contract: a Predictor and the ImageAnalysis objects it returns hold the model; use them
// from one thread at a time (the GUI's worker thread), and hand the UI the cv::Mat and plain
// structs they return, which own their data.
#pragma once

#include <opencv2/core/mat.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attention_options.h"
#include "image_header.h"  // kMaxImagePixels, kImageFormats
#include "train_config.h"  // Normalization
#include "vit_config.h"

namespace vit {

struct Dataset;

// ---------------------------------------------------------------------------------------------
// Images

// kMaxImagePixels, kMaxImageFileBytes and kImageFormats are in image_header.h.

// Reads an image file with cv::IMREAD_UNCHANGED after checking what can be checked before
// decoding: the file exists, is not empty nor above kMaxImageFileBytes, its header is one of
// kImageFormats (image_header.h) and declares at most kMaxImagePixels. Throws
// std::runtime_error naming the file, the problem and kImageFormats.
cv::Mat read_image(const std::string& path);

// Why `image` cannot be used (empty, unsupported depth or channel count), or "".
std::string check_image(const cv::Mat& image);

// `image` as 8-bit BGR for display, its longer side scaled into [min_side, max_side] (aspect ratio
// kept; 0 = no bound): enlarged by a whole factor with nearest-neighbour so small images keep
// visible, equal pixels (bilinearly when no whole factor fits), shrunk by area averaging. Gray is replicated, alpha composited over white, 16-bit and float scaled to 8 bits.
cv::Mat display_image(const cv::Mat& image, int min_side = 224, int max_side = 1024);

// A grid map (CV_32F, e.g. AttentionMap::map) as a heatmap over `image` (any type display_image
// takes, used at its own size): the map is upsampled bilinearly to the image size, scaled to
// [0, 1] by its minimum and maximum (a constant map is all 0), colored with `colormap` (a
// cv::ColormapTypes value, default cv::COLORMAP_JET = 2) and blended as
// (1 - alpha) * image + alpha * heat. Returns CV_8UC3 BGR of the image's size.
cv::Mat overlay_heatmap(const cv::Mat& image, const cv::Mat& map, double alpha = 0.5,
                        int colormap = 2);

// Row `index` of a data set (uint8 C x H x W, RGB) as a cv::Mat: CV_8UC1 or CV_8UC3 BGR.
cv::Mat dataset_image(const Dataset& data, int64_t index);

// ---------------------------------------------------------------------------------------------
// Results

struct Prediction {
  std::string label;  // class name
  int index = 0;      // class index
  float probability = 0.0f;
};

struct PredictResult {
  std::vector<Prediction> top;       // the top-k classes, most probable first
  std::vector<float> logits;         // every class's raw score
  std::vector<float> probabilities;  // softmax of the logits
};

struct AttentionMap {
  cv::Mat map;            // CV_32F grid x grid: the requested attention row over the patches
  int layer = 0;          // the block shown (with rollout: the last block rolled out)
  int target_class = -1;  // gradient rollout: the class explained
};

// How patches cut the model's input, for drawing the grid.
struct PatchGrid {
  int image_size = 0;  // model input side in pixels
  int patch_size = 0;  // patch side in pixels
  int grid = 0;        // patches per side; patch n is at row n / grid, column n % grid
  bool class_token = false;
};

struct Misclassified {
  int64_t index = 0;  // row in the evaluated data set
  int true_label = 0;
  int predicted = 0;
  float probability = 0.0f;  // of the (wrong) predicted class
};

struct Evaluation {
  std::vector<std::string> classes;
  std::vector<std::vector<int64_t>> confusion;  // [true class][predicted class] image counts
  std::vector<int64_t> class_count;             // images per true class
  std::vector<double> class_accuracy;           // per true class (recall); 0 when it has none
  std::vector<int> predicted;                   // per image: predicted class (-1 if not reached)
  std::vector<float> confidence;                // per image: its probability
  std::vector<Misclassified> most_confident_wrong;  // most probable first, at most max_wrong
  double accuracy = 0, top5_accuracy = 0, loss = 0;  // over the images evaluated
  int64_t count = 0;     // images evaluated
  bool complete = true;  // false when stopped early
};

struct EvalOptions {
  int batch_size = 256;
  int max_wrong = 25;  // length of most_confident_wrong
  std::function<void(int64_t done, int64_t total)> progress;  // after each batch
  std::function<bool()> stop;  // polled between batches; true ends early
};

class ImageAnalysis;

// ---------------------------------------------------------------------------------------------
// Predictor

class Predictor {
 public:
  // `path` is a run directory (its best weights, else the last; class names from config.json) or
  // a .safetensors file written by ViT Studio (class names from its "classes" metadata or from the
  // run directory it sits in, else "class N"). Other weights files with a classification head
  // (timm, Hugging Face, Google .npz, .pth) go through import_weights (weights_io.h). The
  // preprocessing comes from the weights' metadata; weights without it get mean = std = 0.5
  // (timm's ViT default), and note() says so. Throws std::runtime_error naming the file.
  // `device` as model/device.h reads it (cpu, auto, cuda[:N]): where the model runs; images are
  // prepared on the host and results come back to it.
  static Predictor load(const std::string& path, const std::string& device = "cpu");
  // Where the model runs, e.g. "cpu" or "cuda:0 (NVIDIA H200)".
  std::string device() const;

  Predictor(Predictor&&) noexcept;
  Predictor& operator=(Predictor&&) noexcept;
  ~Predictor();

  const ViTConfig& config() const;
  const std::vector<std::string>& classes() const;
  const Normalization& normalization() const;
  const std::string& weights_path() const;  // the file loaded
  const std::string& note() const;  // a remark on the weights (imported, preprocessing guessed) or ""
  PatchGrid grid() const;

  // What the model sees: the image converted to the model's channels and input size, before
  // normalization (CV_8UC1 or CV_8UC3 BGR, image_size x image_size). Throws std::invalid_argument
  // for an unusable image (check_image's message).
  cv::Mat model_image(const cv::Mat& image) const;

  // Top-k classes (k clamped to the number of classes; k < 1 throws std::invalid_argument).
  PredictResult predict(const cv::Mat& image, int topk = 5) const;
  std::vector<PredictResult> predict(const std::vector<cv::Mat>& images, int topk = 5) const;

  // One forward pass that keeps every block's attention, to draw many maps of one image.
  ImageAnalysis analyze(const cv::Mat& image, int topk = 5) const;
  // analyze(image).attention(request).
  AttentionMap attention(const cv::Mat& image, const AttentionRequest& request) const;

  // Cosine similarity of patch `patch`'s position embedding to every patch's: CV_32F grid x grid
  // in [-1, 1] (the ViT paper's figure 7).
  cv::Mat position_similarity(int patch) const;

  // Classifies every image of `data` (uint8, the model's channels, any size: resized like
  // training). Throws std::invalid_argument when channels or class count do not fit the model.
  Evaluation evaluate(const Dataset& data, const EvalOptions& options = {}) const;

 private:
  struct Impl;
  friend class ImageAnalysis;
  explicit Predictor(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// The attention of one image, kept from one forward pass (the model stays alive with it).
class ImageAnalysis {
 public:
  ImageAnalysis(ImageAnalysis&&) noexcept;
  ImageAnalysis& operator=(ImageAnalysis&&) noexcept;
  ~ImageAnalysis();

  const PredictResult& prediction() const;
  // A map for `request` (see attention_maps.h for what each option computes). Gradient rollout
  // runs one forward and backward pass per target class (kept for the next call); the others only
  // combine the stored attention. Throws std::invalid_argument for an impossible request.
  AttentionMap attention(const AttentionRequest& request) const;

 private:
  friend class Predictor;
  struct Impl;
  explicit ImageAnalysis(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vit
