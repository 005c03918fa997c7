// Data set loaders: Fashion-MNIST (gzip or plain IDX files, as Debian's dataset-fashion-mnist
// installs them), CIFAR-10/100 (the "binary version" archives) and image folders laid out like
// torchvision's ImageFolder, plus the single-image decoder used for inference.
//
// The whole data set is held in memory as uint8 (N, C, H, W): our data sets are small (60k
// Fashion-MNIST images are 47 MB) and uint8 is 4x smaller than float. The data pipeline converts
// to normalized float per batch (data_pipeline.h).
//
// Errors: bad data throws std::runtime_error whose message names the file, the problem and the
// fix when there is one; a malformed spec or argument throws std::invalid_argument. One deliberate
// leniency: in an image folder, files that cannot be read or decoded (a stray README, a
// truncated download, a zero-byte file) are skipped and counted in DataSplits::skipped_files
// with the first few paths and reasons, because one bad file among thousands of photos should
// not stop training, while a whole class or folder without images still is an error.
//
// Image conversion (folders and load_image): decoded with OpenCV, cv::IMREAD_UNCHANGED (so EXIF
// orientation is ignored, as torchvision's PIL loader does); 16-bit scaled to 8-bit (65535 ->
// 255); transparent images composited over white; converted to 1 channel (OpenCV's
// 0.299 R + 0.587 G + 0.114 B, the same weights as PIL's "L") or 3 channels in RGB order (gray
// replicated); then stretched to image_size x image_size without keeping the aspect ratio (as
// torchvision's Resize((S, S))) with cv::INTER_AREA when shrinking in both directions (averages,
// so no aliasing) and cv::INTER_LINEAR otherwise.
#pragma once

// Only the Tensor type is needed here: <ATen/core/Tensor.h> costs ~3 s to compile,
// <torch/types.h> ~9 s. at::Tensor is the same type as torch::Tensor.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cv {
class Mat;
}

namespace vit {

struct Dataset {
  std::string name;                  // "fashion-mnist/train", "cifar10/test", "folder:/path"...
  at::Tensor images;                 // uint8 (N, C, H, W), contiguous
  at::Tensor labels;                 // int64 (N), each in [0, classes.size())
  std::vector<std::string> classes;  // class names, index = label
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

struct DataSplits {
  Dataset train;
  std::optional<Dataset> test;  // the data set's own test set when it has one
  int64_t skipped_files = 0;    // image folders: unreadable/non-image files skipped
  std::vector<std::string> skipped_examples;  // up to 10 of their paths, with the reason
};

// The Fashion-MNIST class names (index = label).
const std::vector<std::string>& fashion_mnist_classes();

// Fashion-MNIST from IDX files: train-images-idx3-ubyte, train-labels-idx1-ubyte,
// t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each gzip-compressed (.gz) or plain. Also
// accepts torchvision's layout (DIR/FashionMNIST/raw or DIR/raw). Images are (N, 1, 28, 28).
DataSplits load_fashion_mnist(const std::string& dir = "/usr/share/datasets/fashion-mnist");

// CIFAR-10 (data_batch_1..5.bin + test_batch.bin, names from batches.meta.txt) or CIFAR-100
// (train.bin + test.bin, fine labels, names from fine_label_names.txt) in the binary format;
// `dir` is the extracted folder or its parent. Standard class names when the name file is missing.
// Images are (N, 3, 32, 32) RGB. num_classes other than 10 or 100: std::invalid_argument.
DataSplits load_cifar(const std::string& dir, int num_classes);

// One sub-folder per class (like torchvision ImageFolder, searched recursively, hidden files
// ignored), class names sorted. If dir has `train/` and `test/` (or `val/`) sub-folders each laid
// out that way, they become train and test; the test classes must be among the train classes.
// Files with extensions other than jpg/jpeg/png/bmp/webp, or that cannot be read or decoded, are
// skipped (see above). Images are (N, channels, image_size, image_size).
DataSplits load_image_folder(const std::string& dir, int image_size, int channels);

// "fashion-mnist" | "fashion-mnist:DIR" | "cifar10:DIR" | "cifar100:DIR" | "folder:DIR".
// image_size/channels only matter for folders. Unknown kinds: std::invalid_argument listing the
// valid forms.
DataSplits load_dataset(const std::string& spec, int image_size, int channels);

// Decodes one image file for inference (drag & drop, `vit predict`) with the same conversion as
// image folders: uint8 (channels, image_size, image_size). Throws std::runtime_error naming the
// file when it is missing, unreadable or not a decodable image.
at::Tensor load_image(const std::string& path, int image_size, int channels);

// The conversion above for an image already decoded with cv::IMREAD_UNCHANGED (1-4 channels,
// 8/16-bit or float): writes `channels` x image_size x image_size uint8 planes (RGB order) to
// `out`. Returns "" on success, else why the image cannot be used.
std::string convert_decoded_image(const cv::Mat& image, int image_size, int channels, uint8_t* out);

// Alpha-blends an 8-bit gray+alpha or BGRA image over a white background, dropping alpha (how
// transparent images are seen in training and in inference alike).
cv::Mat composite_over_white(const cv::Mat& src);

}  // namespace vit
