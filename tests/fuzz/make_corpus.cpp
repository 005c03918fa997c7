// Writes the fuzz seed corpora: `fuzz_make_corpus tests/fuzz/corpus [tests/fixtures]`.
//
// Seeds are small valid files made with the core's own writers (serialize_safetensors, save_npz,
// save_checkpoint, TensorBoardWriter, OpenCV's encoders), slightly broken variants of them, and
// the hostile inputs that once crashed a reader or made it allocate without bound (named
// crash-*). Running it again rewrites the same files; new crashing inputs that scripts/fuzz.sh
// finds are copied into the corpus by hand and never regenerated.
#include <torch/torch.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "../support/pickle.h"
#include "checkpoint.h"
#include "config_json.h"
#include "npz.h"
#include "run_log.h"
#include "safetensors.h"
#include "tensorboard.h"
#include "train_config.h"
#include "vit.h"
#include "vit_config.h"
#include "zip_archive.h"

#include "fuzz_common.h"

namespace fs = std::filesystem;
using namespace vit_test::pickle;  // le, floats_bytes, pk_*


namespace {

fs::path g_root;
size_t g_files = 0, g_bytes = 0;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void put(const std::string& target, const std::string& name, const std::string& bytes) {
  const fs::path dir = g_root / target;
  fs::create_directories(dir);
  vit_fuzz::write_file(dir / name, bytes);
  ++g_files;
  g_bytes += bytes.size();
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? vit_fuzz::kSeparator : "") + parts[i];
  return out;
}

// A string literal with its embedded NUL bytes (a plain const char* would stop at the first).
template <size_t N>
std::string lit(const char (&s)[N]) {
  return std::string(s, N - 1);
}

std::string be32(uint32_t v) {
  return {char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)};
}

std::string gzip(const std::string& bytes) {
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);  // + 16: gzip wrapper
  std::string out(deflateBound(&z, uLong(bytes.size())) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = uInt(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = uInt(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// A zip archive's bytes, written by the core's write_zip.
std::string zip(const std::vector<std::pair<std::string, std::string>>& entries, bool deflate) {
  const fs::path path = vit_fuzz::scratch_dir() / "scratch.zip";
  vit::write_zip(path.string(), entries, deflate);
  return read_file(path);
}

vit::ViTConfig tiny_config() {
  vit::ViTConfig c;
  c.image_size = 8;
  c.patch_size = 4;
  c.in_channels = 3;
  c.num_classes = 3;
  c.dim = 8;
  c.depth = 1;
  c.heads = 2;
  c.mlp_hidden = 16;
  return c;
}

vit::NamedTensors tiny_state(const vit::ViTConfig& c) {
  torch::manual_seed(1);
  vit::VisionTransformer model(c);
  vit::NamedTensors out;
  for (const auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value().detach().clone());
  return out;
}

// --- pickles as torch.save writes them (protocol 2), as in tests/model/tst_weights_io.cpp ------

std::string floats(const std::vector<float>& v) { return floats_bytes(v); }

// A .pth zip around `pickle` with storage 0 (`storage`), as torch.save lays it out.
std::string pth(const std::string& pickle, const std::string& storage, bool deflate = false) {
  std::vector<std::pair<std::string, std::string>> e = {{"archive/data.pkl", pickle},
                                                        {"archive/byteorder", "little"},
                                                        {"archive/version", "3\n"}};
  if (!storage.empty()) e.emplace_back("archive/data/0", storage);
  return zip(e, deflate);
}

// ------------------------------------------------------------------------------------------------

void safetensors_seeds() {
  const vit::NamedTensors mixed = {
      {"f32", torch::arange(6, torch::kFloat32).view({2, 3})},
      {"f64", torch::tensor({1.5, -2.0}, torch::kFloat64)},
      {"f16", torch::tensor({1.0f}).to(torch::kHalf)},
      {"bf16", torch::tensor({1.0f, 2.0f}).to(torch::kBFloat16)},
      {"i64", torch::tensor({int64_t(-1), int64_t(7)})},
      {"i32", torch::tensor({3}, torch::kInt32)},
      {"i16", torch::tensor({3}, torch::kInt16)},
      {"i8", torch::tensor({-3}, torch::kInt8)},
      {"u8", torch::tensor({1, 2, 3, 4}, torch::kUInt8)},
      {"bool", torch::tensor({true, false, true})},
      {"empty", torch::zeros({0, 4})},
      {"scalar", torch::tensor(2.5f)},
  };
  const std::string good = vit::serialize_safetensors(mixed, {{"format", "pt"}, {"note", "seed"}});
  put("safetensors", "mixed-dtypes.safetensors", good);
  put("safetensors", "metadata-only.safetensors", vit::serialize_safetensors({}, {{"a", "b"}}));
  put("safetensors", "empty-header.safetensors", le(2, 8) + "{}");
  put("safetensors", "truncated.safetensors", good.substr(0, good.size() / 2));
  put("safetensors", "length-past-end.safetensors", le(4096, 8) + "{}");
  auto header = [](const std::string& json, const std::string& data) {
    return le(json.size(), 8) + json + data;
  };
  put("safetensors", "overlap.safetensors",
      header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
             std::string(12, '\0')));
  put("safetensors", "strides-overflow.safetensors",
      header(R"({"w":{"dtype":"U8","shape":[0,4611686018427387904,4],"data_offsets":[0,0]}})", ""));
  put("safetensors", "bool-byte-2.safetensors",
      header(R"({"w":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", std::string("\x01\x00\x02", 3)));
  std::string ones = "1";
  for (int k = 1; k < 65; ++k) ones += ",1";
  put("safetensors", "65-dims.safetensors",
      header(R"({"w":{"dtype":"U8","shape":[)" + ones + R"(],"data_offsets":[0,1]}})", std::string(1, '\0')));
}

void npy_seeds() {
  put("npy", "f32-2x3.npy", vit::serialize_npy(torch::arange(6, torch::kFloat32).view({2, 3})));
  put("npy", "f64.npy", vit::serialize_npy(torch::tensor({1.5, 2.5}, torch::kFloat64)));
  put("npy", "i64.npy", vit::serialize_npy(torch::tensor({int64_t(1), int64_t(-2)})));
  put("npy", "u8.npy", vit::serialize_npy(torch::tensor({1, 2, 3}, torch::kUInt8)));
  put("npy", "bool.npy", vit::serialize_npy(torch::tensor({true, false})));
  put("npy", "f16-0d.npy", vit::serialize_npy(torch::tensor(1.0f).to(torch::kHalf)));
  put("npy", "empty.npy", vit::serialize_npy(torch::zeros({0, 3})));
  auto npy = [](const std::string& dict, const std::string& data, int major = 1) {
    std::string h = dict;
    h += std::string((64 - (10 + h.size() + 1) % 64) % 64, ' ') + "\n";
    return std::string("\x93NUMPY") + char(major) + '\0' +
           (major == 1 ? le(h.size(), 2) : le(h.size(), 4)) + h + data;
  };
  put("npy", "fortran.npy",
      npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", floats({0, 1, 2, 3, 4, 5})));
  put("npy", "v2.npy", npy("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", le(7, 4) + le(9, 4), 2));
  put("npy", "v3-i2.npy", npy("{\"descr\": \"<i2\", \"fortran_order\": False, \"shape\": (1,)}", le(5, 2), 3));
  put("npy", "object.npy", npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", std::string(16, '\0')));
  put("npy", "big-endian.npy", npy("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", le(0, 4)));
  put("npy", "strides-overflow.npy",
      npy("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4611686018427387904, 4), }", ""));
  put("npy", "truncated.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", le(0, 4)));
}

void npz_seeds() {
  const vit::NamedTensors t = {{"embedding/kernel", torch::arange(8, torch::kFloat32).view({2, 2, 1, 2})},
                               {"cls", torch::zeros({1, 1, 2})},
                               {"bias", torch::tensor({1, 2}, torch::kInt32)}};
  const fs::path path = vit_fuzz::scratch_dir() / "seed.npz";
  vit::save_npz(path.string(), t, /*compressed=*/false);
  put("npz", "stored.npz", read_file(path));
  vit::save_npz(path.string(), t, /*compressed=*/true);
  put("npz", "deflated.npz", read_file(path));
  put("npz", "not-npy-entry.npz", zip({{"readme.txt", "hello"}}, false));
  put("npz", "empty.npz", zip({}, false));
}

void pth_seeds() {
  // Raw pickles: fuzz_pth wraps them with storages 0 (6 floats), 1 (2 halfs) and 2 (empty).
  const std::string state = pk_ordered_dict(
      pk_str("a") + pk_tensor("0", 6, 0, {2, 3}, {3, 1}) +
      pk_str("b") + pk_tensor("0", 6, 1, {3}, {2}) +
      pk_str("c") + pk_tensor("1", 2, 0, {2}, {1}, "HalfStorage") +
      pk_str("d") + pk_tensor("2", 0, 0, {0, 4}, {4, 1}));
  put("pth", "state-dict.pkl", pk_file(state));
  const std::string body = std::string("}q\x00(", 4) + pk_str("epoch") + pk_int(3) + pk_str("lr") +
                           "G\x3f\xb9\x99\x99\x99\x99\x99\x9a" + pk_str("model") + state + "u";
  put("pth", "checkpoint-dict.pkl", pk_file(body));
  std::string p4 = std::string("\x80\x04\x95", 3) + le(0, 8) + body + ".";
  p4.replace(p4.find(pk_str("epoch")), pk_str("epoch").size(), std::string("\x8c\x05") + "epoch\x94");
  put("pth", "protocol-4.pkl", p4);
  put("pth", "parameter.pkl",
      pk_file(pk_ordered_dict(pk_str("w") + pk_global("torch._utils", "_rebuild_parameter") + "(" +
                              pk_tensor("0", 6, 0, {6}, {1}) + "\x88" +
                              pk_global("collections", "OrderedDict") + ")Rt" + "R")));
  put("pth", "os-system.pkl", pk_file(pk_global("os", "system") + "(" + pk_str("true") + "tR"));
  put("pth", "memo.pkl", pk_file(lit("]q\x00h\x00" "0" "(K\x01K\x02" "l")));
  // Whole files.
  put("pth", "one-tensor.pth", pth(pk_file(pk_ordered_dict(pk_str("w") + pk_tensor("0", 6, 0, {6}, {1}))),
                                   floats({0, 1, 2, 3, 4, 5})));
  // Inputs that crashed the reader or made it allocate without bound (issue 17).
  // 200,000 nested tuples (EMPTY_TUPLE, then TUPLE1 200,000 times): recursive destruction
  // overflowed the stack (SIGSEGV).
  put("pth", "crash-nested-tuples.pth", pth(pk_file(")" + std::string(200000, '\x85')), "", true));
  // A 1-float storage viewed with stride 0 as 65536 x 65536: the dense copy was 16 GB (OOM killer).
  put("pth", "crash-stride-0-storage.pth",
      pth(pk_file(pk_ordered_dict(pk_str("w") + pk_tensor("0", 1, 0, {65536, 65536}, {0, 0}))),
          floats({1}), true));
  // 17 MB of None opcodes in ~17 KB: each became a heap value (2.9 GB).
  put("pth", "crash-none-flood.pth", pth(pk_file(std::string(17'000'000, 'N')), "", true));
  // A list appended to itself: a reference cycle (leaked).
  put("pth", "crash-self-containing-list.pth", pth(pk_file(lit("]q\x00h\x00" "a")), ""));
}

void weights_seeds(const fs::path& fixtures) {
  const vit::ViTConfig c = tiny_config();
  const vit::NamedTensors state = tiny_state(c);
  put("weights", "timm-tiny.safetensors", vit::serialize_safetensors(state));
  vit::VisionTransformer model(c);
  const fs::path ckpt = vit_fuzz::scratch_dir() / "ckpt.safetensors";
  vit::save_checkpoint(ckpt.string(), *model, {{0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f}});
  put("weights", "vit-studio-checkpoint.safetensors", read_file(ckpt));
  // Metadata describing ViT-L/16 (304 M parameters) over no tensors: load_model built the model
  // (1.2 GB; any size check() allows) before looking at the file's tensors.
  put("weights", "crash-hollow-checkpoint.safetensors",
      vit::serialize_safetensors({}, {{"format", "vit-studio"},
                                      {"vit_config", vit::to_json(vit::preset("vit-l16").config).dump()}}));
  const fs::path npz = vit_fuzz::scratch_dir() / "w.npz";
  vit::save_npz(npz.string(), state);
  put("weights", "timm-names.npz", read_file(npz));
  put("weights", "timm-tiny.pth",
      pth(pk_file(pk_ordered_dict(pk_str("cls_token") + pk_tensor("0", 6, 0, {1, 1, 6}, {6, 6, 1}))),
          floats({0, 1, 2, 3, 4, 5})));
  // The parity fixture: the same tiny ViT as written by numpy and by torch.save itself.
  for (const char* name : {"weights.npz", "weights.pth"})
    if (fs::exists(fixtures / "parity" / name))
      put("weights", std::string("parity-") + name, read_file(fixtures / "parity" / name));
}

void idx_seeds() {
  auto images = [](uint32_t n, uint32_t rows, uint32_t cols) {
    std::string b = be32(0x803) + be32(n) + be32(rows) + be32(cols);
    for (uint32_t i = 0; i < n * rows * cols; ++i) b.push_back(char(i * 7));
    return b;
  };
  auto labels = [](const std::string& values) { return be32(0x801) + be32(uint32_t(values.size())) + values; };
  const std::string tr_i = images(3, 4, 4), tr_l = labels(std::string("\x00\x05\x09", 3));
  const std::string te_i = images(2, 4, 4), te_l = labels(std::string("\x01\x02", 2));
  put("idx", "plain.idx", join({tr_i, tr_l, te_i, te_l}));
  put("idx", "gzip.idx", join({gzip(tr_i), gzip(tr_l), gzip(te_i), gzip(te_l)}));
  put("idx", "label-out-of-range.idx", join({tr_i, labels(std::string("\x00\x0a\x01", 3)), te_i, te_l}));
  put("idx", "count-mismatch.idx", join({tr_i, labels(std::string("\x00", 1)), te_i, te_l}));
  put("idx", "wrong-magic.idx", join({tr_l, tr_i, te_i, te_l}));
  put("idx", "truncated-gzip.idx", join({gzip(tr_i).substr(0, 20), gzip(tr_l), gzip(te_i), gzip(te_l)}));
  put("idx", "test-size-differs.idx", join({tr_i, tr_l, images(2, 5, 5), te_l}));
  put("idx", "huge-dims.idx", join({be32(0x803) + be32(0xffffffff) + be32(0xffffffff) + be32(0xffffffff), tr_l}));
}

void cifar_seeds() {
  auto records = [](const std::vector<std::string>& labels) {
    std::string b;
    for (size_t i = 0; i < labels.size(); ++i) {
      b += labels[i];
      for (int p = 0; p < 3072; ++p) b.push_back(char(p + int(i)));
    }
    return b;
  };
  std::string names10;
  for (int i = 0; i < 10; ++i) names10 += "class" + std::to_string(i) + "\n";
  put("cifar", "cifar10.bin", lit("\x00") + join({records({lit("\x01"), lit("\x09")}), records({std::string(1, '\0')}), names10}));
  put("cifar", "cifar10-no-names.bin", lit("\x00") + join({records({lit("\x03")}), records({lit("\x04")})}));
  put("cifar", "cifar10-label-10.bin", lit("\x00") + join({records({lit("\x0a")}), records({lit("\x04")})}));
  put("cifar", "cifar10-ragged.bin", lit("\x00") + join({records({lit("\x03")}) + "x", records({lit("\x04")})}));
  std::string names100;
  for (int i = 0; i < 100; ++i) names100 += "n" + std::to_string(i) + "\n";
  put("cifar", "cifar100.bin", "\x01" + join({records({lit("\x01\x63"), lit("\x02\x05")}), records({lit("\x00\x00")}), names100}));
}

void image_seeds() {
  cv::Mat rgb(6, 5, CV_8UC3);
  cv::randu(rgb, 0, 256);
  auto encode = [](const std::string& ext, const cv::Mat& m) {
    std::vector<uint8_t> out;
    if (!cv::imencode(ext, m, out)) {
      std::cerr << "cannot encode " << ext << "\n";
      return std::string();
    }
    return std::string(out.begin(), out.end());
  };
  cv::Mat gray(5, 7, CV_8UC1);
  cv::randu(gray, 0, 256);
  for (const char* ext : {".png", ".jpg", ".bmp", ".tiff", ".ppm", ".pam"})
    put("image", std::string("rgb") + ext, encode(ext, rgb));
  put("image", "gray.pgm", encode(".pgm", gray));
  put("image", "gray.jpg", encode(".jpg", gray));
  if (cv::haveImageWriter(".webp")) {
    put("image", "lossy.webp", encode(".webp", rgb));
    put("image", "lossless.webp", [&] {
      std::vector<uint8_t> out;
      cv::imencode(".webp", rgb, out, {cv::IMWRITE_WEBP_QUALITY, 101});
      return std::string(out.begin(), out.end());
    }());
  }
  cv::Mat gray16(4, 3, CV_16UC1, cv::Scalar(40000));
  put("image", "gray16.png", encode(".png", gray16));
  cv::Mat rgba(3, 3, CV_8UC4, cv::Scalar(10, 20, 30, 128));
  put("image", "rgba.png", encode(".png", rgba));
  put("image", "rgb16.tiff", encode(".tiff", cv::Mat(3, 4, CV_16UC3, cv::Scalar(1000, 2000, 3000))));
  put("image", "ascii.pbm", "P1\n# a comment\n3 2\n0 1 0\n1 0 1\n");
  put("image", "ascii.pgm", "P2\n2 2\n255\n0 64\n128 255\n");
  const std::string png = encode(".png", rgb);
  put("image", "truncated.png", png.substr(0, png.size() / 2));
  put("image", "raster.ras", encode(".ras", rgb));  // a format OpenCV reads and we refuse
  // PNG IHDR declaring 4143380037 x 4143380214: the pixel guard's product overflowed int64 (UB)
  // and the check could be bypassed.
  std::string overflow = png;
  overflow.replace(16, 4, be32(4143380037u));
  overflow.replace(20, 4, be32(4143380214u));
  put("image", "crash-png-size-overflow.png", overflow);
  std::string tiff = std::string("II*\0", 4) + le(8, 4) + le(2, 2);
  for (uint16_t tag : {256, 257}) tiff += le(tag, 2) + le(4, 2) + le(1, 4) + le(20000, 4);
  put("image", "huge-header.tiff", tiff + le(0, 4));
  put("image", "huge-header.pgm", "P5\n20000 20000\n255\n" + std::string(16, 'x'));
}

void config_json_seeds() {
  auto config = [](const vit::ViTConfig& model, const vit::TrainConfig& train) {
    nlohmann::json j;
    j["model"] = vit::to_json(model);
    j["train"] = vit::to_json(train);
    j["normalization"] = {{"mean", std::vector<float>{0.5f}}, {"std", std::vector<float>{0.25f}}};
    j["version"] = "0.1.0";
    return j.dump(1);
  };
  const vit::TrainConfig train;
  put("config_json", "fmnist-small.json", config(vit::preset("fmnist-small").config, train));
  put("config_json", "keras-cifar.json", config(vit::preset("keras-cifar").config, train));
  vit::ViTConfig widest = vit::preset("vit-l16").config;
  widest.dim = 16384;
  widest.heads = 16;
  widest.mlp_hidden = 131072;
  widest.depth = 256;
  widest.image_size = 4096;
  widest.patch_size = 1;
  widest.num_classes = 1000000;
  widest.head_hidden = {131072, 131072};
  widest.pool = vit::Pool::Flatten;
  put("config_json", "largest-valid.json", config(widest, train));
  put("config_json", "wrong-type.json", R"({"model": {"dim": "wide"}, "train": {}, "normalization": {"mean": [0], "std": [1]}})");
  put("config_json", "huge-number.json", R"({"model": {"dim": 1e+31, "depth": -1e300}, "train": {"epochs": 1e+31}, "normalization": {"mean": [1e+40], "std": [0]}})");
  put("config_json", "not-json.json", "{\"model\": ");
}

void csv_seeds() {
  const std::string m = vit::kMetricsHeader, s = vit::kStepsHeader;
  put("csv", "metrics.csv", m + "\n0,1.5,0.6,0.9,1.25,0.7,0.95,0.002,30.5\n1,1.2,0.7,0.95,1.1,0.75,0.97,0.001,61\n");
  put("csv", "metrics-crlf.csv", m + "\r\n0,1.5,0.6,0.9,1.25,0.7,0.95,0.002,30.5\r\n");
  put("csv", "steps.csv", s + "\n10,0,2.5,0.1,0.001,900,1.5\n20,0,2.25,0.2,0.002,950,3\n30,0,2.");
  put("csv", "steps-malformed.csv", s + "\n10,0,x,0.1,0.001,900,1.5\n10,0,1\nnan,inf,-inf,1e-320,0x1p3,1,2\n");
  // A huge number in an integer column: the double -> int conversion was undefined behaviour.
  put("csv", "crash-steps-1e31.csv", s + "\n1e+31,0,2.5,0.1,0.001,900,1.5\n");
  put("csv", "crash-metrics-1e31.csv", m + "\n1e+31,1.5,0.6,0.9,1.25,0.7,0.95,0.002,30.5\n");
}

void tensorboard_seeds() {
  const fs::path dir = vit_fuzz::fresh_dir("tb");
  {
    vit::TensorBoardWriter writer(dir.string());
    writer.add_scalar("train/loss", 2.5, 1, 1700000000.0);
    writer.add_scalar("train/accuracy", 0.25, 2, 1700000001.0);
    writer.add_scalar("val/top5", 0.75, 3, 1700000002.0);
    writer.flush();
  }
  std::string events;
  for (const auto& entry : fs::directory_iterator(dir)) events = read_file(entry.path());
  put("tensorboard", "events.tfevents", events);
  put("tensorboard", "truncated.tfevents", events.substr(0, events.size() - 5));
  // The same records as payloads (fuzz_tensorboard frames them with valid CRCs).
  std::vector<std::string> payloads;
  for (size_t at = 0; at + 12 <= events.size();) {
    uint64_t length = 0;
    for (int i = 7; i >= 0; --i) length = length << 8 | uint8_t(events[at + size_t(i)]);
    if (at + 16 + length > events.size()) break;
    payloads.push_back(events.substr(at + 12, length));
    at += 16 + length;
  }
  put("tensorboard", "payloads.bin", join(payloads));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [FIXTURES_DIR]\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  const fs::path fixtures = argc > 2 ? fs::path(argv[2]) : g_root / ".." / ".." / "fixtures";
  safetensors_seeds();
  npy_seeds();
  npz_seeds();
  pth_seeds();
  weights_seeds(fixtures);
  idx_seeds();
  cifar_seeds();
  image_seeds();
  config_json_seeds();
  csv_seeds();
  tensorboard_seeds();
  std::printf("wrote %zu seeds (%zu bytes) under %s\n", g_files, g_bytes, g_root.c_str());
  return 0;
}
