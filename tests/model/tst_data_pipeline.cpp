// Normalization, per-image transforms and the prefetching DataLoader.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "data_pipeline.h"
#include "datasets.h"

#include "support/text.h"

using vit_test::contains;

namespace {

// N images of C x H x W whose pixel values encode (row, channel, position) so order is visible.
vit::Dataset make_dataset(int64_t n, int c, int h, int w) {
  vit::Dataset d;
  d.name = "synthetic";
  d.images = torch::empty({n, c, h, w}, torch::kUInt8);
  auto* p = d.images.data_ptr<uint8_t>();
  for (int64_t i = 0; i < d.images.numel(); ++i) p[i] = uint8_t((i * 37 + i / (h * w)) % 256);
  d.labels = torch::arange(n, torch::kInt64).remainder(3);
  d.classes = {"a", "b", "c"};
  return d;
}

vit::Normalization unit(int c) {
  return {std::vector<float>(c, 0.0f), std::vector<float>(c, 1.0f)};
}

// Whether `out` (S x S) is the source moved by (dx, dy), mirrored first when `mirror`, black (0)
// where it runs out: same(out pixel, source pixel value) for every pixel.
template <class Same>
bool is_shift(const std::vector<float>& out, const std::vector<uint8_t>& src, int S, int dx, int dy, bool mirror,
              Same same) {
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const int sy = y + dy, sx = x + dx;
      const bool inside = sy >= 0 && sy < S && sx >= 0 && sx < S;
      if (!same(out[y * S + x], inside ? float(src[sy * S + (mirror ? S - 1 - sx : sx)]) : 0.0f)) return false;
    }
  return true;
}

}  // namespace

TEST(DataPipeline, normalizationMatchesHandComputedValues) {
  vit::Dataset d;
  d.images = torch::tensor({0, 255, 0, 255, 51, 51, 51, 51}, torch::kUInt8).view({2, 1, 2, 2});
  d.labels = torch::zeros({2}, torch::kInt64);
  const auto n = vit::compute_normalization(d);
  // Pixels in [0,1]: {0,1,0,1,.2,.2,.2,.2}: mean 2.8 / 8 = .35, E[x^2] = 2.16 / 8 = .27,
  // variance .27 - .35^2 = .1475.
  ASSERT_EQ(n.mean.size(), size_t(1));
  ASSERT_TRUE(std::abs(n.mean[0] - 0.35f) < 1e-6);
  ASSERT_TRUE(std::abs(n.std[0] - std::sqrt(0.1475f)) < 1e-5);
  const auto only_second = vit::compute_normalization(d, {1});
  ASSERT_TRUE(std::abs(only_second.mean[0] - 0.2f) < 1e-6);
  ASSERT_TRUE(std::abs(only_second.std[0] - 1e-3f) < 1e-6);  // constant image: floor, not zero
}

TEST(DataPipeline, identityTransformNormalizesExactly) {
  const std::vector<uint8_t> src = {0, 64, 128, 255, 10, 20, 30, 40};  // 2 channels of 2x2
  vit::Normalization n{{0.5f, 0.1f}, {0.25f, 2.0f}};
  std::vector<float> out(8);
  vit::prepare_image(src.data(), 2, 2, 2, 2, n, {}, 0, out.data());
  for (int i = 0; i < 8; ++i) {
    const int c = i / 4;
    const float expected = (src[i] / 255.0f - n.mean[c]) / n.std[c];
    ASSERT_TRUE(std::abs(out[i] - expected) < 1e-5) << i;
  }
}

TEST(DataPipeline, resizeKeepsConstantImagesConstant) {
  std::vector<uint8_t> src(3 * 32 * 32, 200);
  std::vector<float> out(3 * 72 * 72);
  vit::AugmentConfig keras;  // the Keras example's set, including reflect padding at borders
  keras.hflip = true;
  keras.rotation = 0.02;
  keras.zoom = 0.2;
  vit::prepare_image(src.data(), 3, 32, 32, 72, unit(3), keras, 7, out.data());
  for (float v : out) ASSERT_TRUE(std::abs(v - 200 / 255.0f) < 1e-6);
}

TEST(DataPipeline, flipIsExactMirrorOrIdentity) {
  const int S = 6;
  std::vector<uint8_t> src(S * S);
  for (int i = 0; i < S * S; ++i) src[i] = uint8_t(i * 7);
  vit::AugmentConfig flip;
  flip.hflip = true;
  int mirrored = 0, same = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    std::vector<float> out(S * S);
    vit::prepare_image(src.data(), 1, S, S, S, unit(1), flip, seed, out.data());
    bool is_same = true, is_mirror = true;
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x) {
        const float v = out[y * S + x] * 255.0f;
        is_same &= std::abs(v - src[y * S + x]) < 1e-3;
        is_mirror &= std::abs(v - src[y * S + (S - 1 - x)]) < 1e-3;
      }
    ASSERT_TRUE(is_same || is_mirror);
    mirrored += is_mirror;
    same += is_same;
  }
  ASSERT_TRUE(mirrored > 5 && same > 5);  // both happen, about half each
}

TEST(DataPipeline, cropShiftsWholePixelsWithBlackBorder) {
  // torchvision RandomCrop(S, padding=3): the output is the source moved by (dx, dy) in
  // [-3, 3]^2, exact, with black (0, normalized) where the image runs out.
  const int S = 10, pad = 3;
  std::vector<uint8_t> src(S * S);
  for (int i = 0; i < S * S; ++i) src[i] = uint8_t(1 + i * 2);  // no zero inside the image
  vit::AugmentConfig crop;
  crop.crop = pad;
  const vit::Normalization n{{0.2f}, {0.5f}};
  std::set<std::pair<int, int>> seen;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    std::vector<float> out(S * S);
    vit::prepare_image(src.data(), 1, S, S, S, n, crop, seed, out.data());
    int found = 0;
    for (int dy = -pad; dy <= pad; ++dy)
      for (int dx = -pad; dx <= pad; ++dx) {
        const bool match = is_shift(out, src, S, dx, dy, false, [](float o, float pixel) {
          return std::abs(o - (pixel / 255.0f - 0.2f) / 0.5f) < 1e-5;
        });
        if (match) {
          ++found;
          seen.insert({dx, dy});
        }
      }
    ASSERT_TRUE(found == 1) << "seed " << seed << " matches " << found << " shifts";
  }
  ASSERT_EQ(int(seen.size()), (2 * pad + 1) * (2 * pad + 1));  // every shift, the zero one too
}

TEST(DataPipeline, augmentationEngineIsMt19937_64) {
  // prepare_image computes only the part of the Mersenne Twister's state its first draws need;
  // every draw must still be std::mt19937_64's, past the 156 it computes lazily too.
  for (uint64_t seed : {uint64_t(0), uint64_t(1), uint64_t(42), uint64_t(0x9e3779b97f4a7c15ULL), ~uint64_t(0)}) {
    std::mt19937_64 reference(seed);
    for (int k = 0; k < 400; ++k) ASSERT_EQ(vit::augmentation_engine_draw(seed, k), reference()) << "seed " << seed << " draw " << k;
  }
}

TEST(DataPipeline, flippedCropMatchesPixelByPixelDefinition) {
  // Flip and crop together, and crops at least as wide as the image: the output is exactly one
  // (mirror, dx, dy) shift of the source as defined pixel by pixel, or all black when the shift
  // leaves the image (the source has no black pixel, so only such a shift gives black).
  const int S = 9;
  std::vector<uint8_t> src(S * S);
  for (int i = 0; i < S * S; ++i) src[i] = uint8_t(1 + i * 3);
  const vit::Normalization n{{0.1f}, {0.3f}};
  const float black = 0.0f * (1.0f / (255.0f * 0.3f)) + -0.1f / 0.3f;
  for (int pad : {2, 9, 12}) {
    vit::AugmentConfig a;
    a.hflip = true;
    a.crop = pad;
    int mirrored = 0, blacks = 0;
    for (uint64_t seed = 0; seed < 200; ++seed) {
      std::vector<float> out(S * S);
      vit::prepare_image(src.data(), 1, S, S, S, n, a, seed, out.data());
      if (std::all_of(out.begin(), out.end(), [&](float v) { return v == black; })) {
        ++blacks;
        continue;
      }
      int found = 0;
      for (int mirror = 0; mirror < 2; ++mirror)
        for (int dy = -pad; dy <= pad; ++dy)
          for (int dx = -pad; dx <= pad; ++dx) {
            const bool match = is_shift(out, src, S, dx, dy, mirror == 1, [](float o, float pixel) {
              return o == pixel * (1.0f / (255.0f * 0.3f)) + -0.1f / 0.3f;  // exactly prepare_image's
            });
            if (match) {
              ++found;
              mirrored += mirror;
            }
          }
      ASSERT_EQ(found, 1) << "pad " << pad << " seed " << seed;
    }
    ASSERT_GT(mirrored, 0) << "pad " << pad;
    if (pad >= S) ASSERT_GT(blacks, 0) << "pad " << pad;
  }
}

TEST(DataPipeline, erasingBlanksOneRectangleToTheMean) {
  // Random erasing with probability 1: exactly one rectangle of 2-40% of the image (aspect
  // 0.3-3.3) becomes 0, the normalized mean; every other pixel is untouched.
  const int S = 28;
  std::vector<uint8_t> src(S * S);
  for (int i = 0; i < S * S; ++i) src[i] = uint8_t(100 + i % 100);  // never the mean below
  const vit::Normalization n{{0.1f}, {0.3f}};
  std::vector<float> plain(S * S);
  vit::prepare_image(src.data(), 1, S, S, S, n, {}, 0, plain.data());
  vit::AugmentConfig erase;
  erase.erase = 1.0;
  std::set<int> areas;
  for (uint64_t seed = 0; seed < 100; ++seed) {
    std::vector<float> out(S * S);
    vit::prepare_image(src.data(), 1, S, S, S, n, erase, seed, out.data());
    int x0 = S, y0 = S, x1 = -1, y1 = -1, zeros = 0;
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x) {
        if (out[y * S + x] == 0.0f) {
          ++zeros;
          x0 = std::min(x0, x), y0 = std::min(y0, y), x1 = std::max(x1, x), y1 = std::max(y1, y);
        } else {
          ASSERT_FLOAT_EQ(out[y * S + x], plain[y * S + x]);
        }
      }
    const int w = x1 - x0 + 1, h = y1 - y0 + 1;
    ASSERT_EQ(zeros, w * h);  // one solid rectangle
    ASSERT_TRUE(zeros >= 0.02 * S * S - 2 * S && zeros <= 0.4 * S * S + 2 * S) << zeros;
    ASSERT_TRUE(double(h) / w > 0.2 && double(h) / w < 5.0);
    areas.insert(zeros);
  }
  ASSERT_TRUE(areas.size() > 20);  // sizes vary
  erase.erase = 0.5;           // and with probability 1/2 about half the images keep every pixel
  int kept = 0;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    std::vector<float> out(S * S);
    vit::prepare_image(src.data(), 1, S, S, S, n, erase, seed, out.data());
    kept += out == plain;
  }
  ASSERT_TRUE(kept > 70 && kept < 130) << kept;
}

TEST(DataPipeline, augmentSettingsSurviveConfigJsonAndAreValidated) {
  vit::TrainConfig c;
  c.augment.hflip = true;
  c.augment.crop = 3;
  c.augment.erase = 0.25;
  const auto back = vit::train_config_from_json(vit::to_json(c)).augment;  // config.json
  ASSERT_TRUE(back.hflip);
  ASSERT_EQ(back.crop, 3);
  ASSERT_DOUBLE_EQ(back.erase, 0.25);
  ASSERT_TRUE(vit::validate(c).empty());
  c.augment.crop = -1;
  c.augment.erase = 1.5;
  const auto errors = vit::validate(c);
  ASSERT_EQ(int(errors.size()), 2);
  ASSERT_TRUE(contains(errors[0].message, "crop")) << errors[0].message;
  ASSERT_TRUE(contains(errors[1].message, "erase")) << errors[1].message;
}

TEST(DataPipeline, augmentationPresetsByName) {
  const auto flip = vit::augmentation_preset("flip", 28);  // mirror only: exact, no resampling
  ASSERT_TRUE(flip.hflip);
  ASSERT_DOUBLE_EQ(flip.translate, 0.0);
  ASSERT_DOUBLE_EQ(flip.rotation, 0.0);
  ASSERT_DOUBLE_EQ(flip.zoom, 0.0);
  const auto light = vit::augmentation_preset("light", 28);
  ASSERT_TRUE(light.hflip && light.translate > 0);
  const auto crop = vit::augmentation_preset("crop", 32);  // CIFAR: RandomCrop(32, padding=4)
  ASSERT_TRUE(crop.hflip);
  ASSERT_EQ(crop.crop, 4);
  ASSERT_DOUBLE_EQ(crop.translate, 0.0);
  const auto small = vit::augmentation_preset("default", 28);  // small inputs: a 1-pixel crop only
  ASSERT_EQ(small.crop, 1);
  ASSERT_TRUE(!small.hflip && small.translate == 0 && small.erase == 0);
  ASSERT_TRUE(vit::augmentation_preset("default", 72).zoom > 0);    // the Keras example's set
  for (const auto& name : vit::augmentation_preset_names())
    (void)vit::augmentation_preset(name, 28);  // every listed name is accepted
  try {
    vit::augmentation_preset("mixup", 28);
    FAIL() << "an unknown name must throw";
  } catch (const std::invalid_argument& e) {
    ASSERT_TRUE(contains(e.what(), "flip")) << e.what();  // the message lists the choices
  }
}

TEST(DataPipeline, augmentationIsSeededAndStaysInRange) {
  std::vector<uint8_t> src(28 * 28);
  for (size_t i = 0; i < src.size(); ++i) src[i] = uint8_t((i * 13) % 256);
  vit::AugmentConfig a;
  a.rotation = 0.05;
  a.zoom = 0.2;
  a.translate = 0.1;
  std::vector<float> x(28 * 28), y(28 * 28), z(28 * 28);
  vit::prepare_image(src.data(), 1, 28, 28, 28, unit(1), a, 123, x.data());
  vit::prepare_image(src.data(), 1, 28, 28, 28, unit(1), a, 123, y.data());
  vit::prepare_image(src.data(), 1, 28, 28, 28, unit(1), a, 124, z.data());
  ASSERT_TRUE(x == y);
  ASSERT_TRUE(x != z);
  for (float v : x) ASSERT_TRUE(v >= 0.0f && v <= 1.0f);
}

TEST(DataPipeline, loaderCoversEveryRowOncePerEpoch) {
  const auto d = make_dataset(50, 1, 4, 4);
  std::vector<int64_t> rows(45);
  std::iota(rows.begin(), rows.end(), 5);
  vit::LoaderOptions o;
  o.batch_size = 8;
  o.image_size = 4;
  o.normalization = unit(1);
  o.seed = 3;
  vit::DataLoader loader(d, rows, o);
  ASSERT_EQ(loader.batches_per_epoch(), int64_t(6));
  std::vector<int64_t> first_order;
  for (int epoch = 0; epoch < 2; ++epoch) {
    loader.start_epoch(epoch);
    std::multiset<int64_t> seen;
    std::vector<int64_t> order;
    while (auto b = loader.next()) {
      ASSERT_EQ(b->images.sizes().vec(), (std::vector<int64_t>{int64_t(b->indices.size()), 1, 4, 4}));
      for (size_t k = 0; k < b->indices.size(); ++k) {
        seen.insert(b->indices[k]);
        order.push_back(b->indices[k]);
        ASSERT_EQ(b->labels[k].item<int64_t>(), b->indices[k] % 3);
        // The image really is that row's pixels.
        ASSERT_FLOAT_EQ(b->images[k][0][0][1].item<float>() * 255.0f,
                        float(d.images[b->indices[k]][0][0][1].item<uint8_t>()));
      }
    }
    ASSERT_EQ(seen, std::multiset<int64_t>(rows.begin(), rows.end()));
    if (epoch == 0) {
      first_order = order;
    } else {
      ASSERT_TRUE(order != first_order);  // reshuffled each epoch
    }
  }
}

TEST(DataPipeline, epochOrderDependsOnlyOnSeedAndEpoch) {
  const auto d = make_dataset(40, 1, 4, 4);
  std::vector<int64_t> rows(40);
  std::iota(rows.begin(), rows.end(), 0);
  vit::LoaderOptions o;
  o.batch_size = 6;
  o.image_size = 4;
  o.normalization = unit(1);
  o.seed = 9;
  o.drop_last = true;
  auto collect = [&](int epoch, int64_t skip) {
    vit::DataLoader loader(d, rows, o);
    loader.start_epoch(epoch, skip);
    std::vector<int64_t> order;
    while (auto b = loader.next()) order.insert(order.end(), b->indices.begin(), b->indices.end());
    return order;
  };
  const auto full = collect(2, 0);
  ASSERT_EQ(full.size(), size_t(36));  // drop_last: 6 full batches of 6
  const auto resumed = collect(2, 4);
  ASSERT_EQ(resumed, std::vector<int64_t>(full.begin() + 24, full.end()));
  ASSERT_EQ(collect(2, 0), full);
}

TEST(DataPipeline, destroyingMidEpochDoesNotHang) {
  const auto d = make_dataset(200, 3, 8, 8);
  std::vector<int64_t> rows(200);
  std::iota(rows.begin(), rows.end(), 0);
  vit::LoaderOptions o;
  o.batch_size = 4;
  o.image_size = 16;
  o.normalization = unit(3);
  for (int i = 0; i < 20; ++i) {
    vit::DataLoader loader(d, rows, o);
    loader.start_epoch(i);
    ASSERT_TRUE(loader.next().has_value());
    loader.start_epoch(i + 1);  // restart while the producer is blocked on a full queue
    ASSERT_TRUE(loader.next().has_value());
  }
}

namespace {

// The nice values of this process's threads (Linux: field 19 of /proc/self/task/TID/stat).
std::multiset<int> thread_nice_values() {
  std::multiset<int> out;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream f(task.path() / "stat");
    std::string line;
    std::getline(f, line);
    const auto close = line.rfind(')');  // the name, in parentheses, may hold spaces
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string field;
    for (int i = 3; i <= 19 && rest >> field; ++i)
      if (i == 19) out.insert(std::stoi(field));
  }
  return out;
}

}  // namespace

TEST(DataPipeline, lowPriorityLoaderRunsAtNice19) {
  // Training on the CPU: the producer must not preempt the trainer's threads on every hand-off.
  const auto d = make_dataset(200, 1, 4, 4);
  std::vector<int64_t> rows(200);
  std::iota(rows.begin(), rows.end(), 0);
  vit::LoaderOptions o;
  o.batch_size = 4;
  o.image_size = 4;
  o.normalization = unit(1);
  const int before = int(thread_nice_values().count(19));
  for (const bool low : {false, true}) {
    SCOPED_TRACE(low ? "low priority" : "normal priority");
    o.low_priority = low;
    vit::DataLoader loader(d, rows, o);
    loader.start_epoch(0);
    const auto first = loader.next();  // the producer has started; it now waits on a full queue
    ASSERT_TRUE(first.has_value());
    for (int tries = 0; tries < 200 && int(thread_nice_values().count(19)) == before && low; ++tries)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(int(thread_nice_values().count(19)), before + (low ? 1 : 0));
    int64_t images = int64_t(first->indices.size());
    while (auto b = loader.next()) images += int64_t(b->indices.size());
    EXPECT_EQ(images, 200) << "a low-priority producer still delivers every batch";
  }
}

TEST(DataPipeline, badOptionsAreRejected) {
  const auto d = make_dataset(4, 3, 4, 4);
  vit::LoaderOptions o;
  o.image_size = 4;
  o.normalization = unit(1);  // one channel's values for a 3-channel data set
  ASSERT_THROW(vit::DataLoader(d, {0, 1}, o), std::invalid_argument);
  o.normalization = unit(3);
  o.batch_size = 0;
  ASSERT_THROW(vit::DataLoader(d, {0, 1}, o), std::invalid_argument);
  o.batch_size = 2;
  ASSERT_THROW(vit::DataLoader(d, {0, 9}, o), std::out_of_range);
}
