#include <torch/types.h>

#include "data_pipeline.h"

#include <opencv2/imgproc.hpp>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>

#include "datasets.h"

namespace vit {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t mix(uint64_t a, uint64_t b) { return splitmix64(a ^ splitmix64(b)); }

void check_normalization(const Normalization& norm, int channels) {
  if (static_cast<int>(norm.mean.size()) != channels || static_cast<int>(norm.std.size()) != channels)
    throw std::invalid_argument("normalization has " + std::to_string(norm.mean.size()) +
                                " means and " + std::to_string(norm.std.size()) +
                                " stds for images with " + std::to_string(channels) +
                                " channel(s): give one mean and one std per channel");
  for (float s : norm.std)
    if (!(s > 0.0f)) throw std::invalid_argument("normalization std must be positive");
}

// std::mt19937_64 seeded with one number, computing only what its first draws need. An image's
// augmentation draws 0-12 numbers from its own engine, and the standard engine's constructor
// and first draw fill and twist all 312 words of its state (~1.2 us, a fifth of an image's
// preparation). Draw k < 156 depends only on words 0..k+1 and k+156 of the seeded state, so
// these are computed as far as needed; the 157th draw on replays a standard engine. The same
// numbers as std::mt19937_64 (test DataPipeline.augmentationEngineIsMt19937_64), so the
// augmentation of a seed is unchanged.
class LazyMt19937_64 {
 public:
  using result_type = uint64_t;
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return ~uint64_t(0); }
  explicit LazyMt19937_64(uint64_t seed) : seed_(seed) { x_[0] = seed; }

  result_type operator()() {
    constexpr int64_t kMid = 156;  // std::mt19937_64's m
    if (drawn_ >= kMid) {
      if (!full_) {
        full_ = std::make_unique<std::mt19937_64>(seed_);
        full_->discard(uint64_t(drawn_));
      }
      ++drawn_;
      return (*full_)();
    }
    const int64_t k = drawn_++;
    seeded_up_to(k + kMid);
    const uint64_t y = (x_[k] & 0xFFFFFFFF80000000ULL) | (x_[k + 1] & 0x7FFFFFFFULL);
    uint64_t z = x_[k + kMid] ^ (y >> 1) ^ ((y & 1) ? 0xB5026F5AA96619E9ULL : 0);
    z ^= (z >> 29) & 0x5555555555555555ULL;
    z ^= (z << 17) & 0x71D67FFFEDA60000ULL;
    z ^= (z << 37) & 0xFFF7EEE000000000ULL;
    z ^= z >> 43;
    return z;
  }

 private:
  void seeded_up_to(int64_t i) {
    for (; filled_ < i; ++filled_)
      x_[filled_ + 1] = 6364136223846793005ULL * (x_[filled_] ^ (x_[filled_] >> 62)) + uint64_t(filled_ + 1);
  }
  uint64_t seed_;
  uint64_t x_[312];
  int64_t filled_ = 0;  // x_[0..filled_] hold the seeded state
  int64_t drawn_ = 0;
  std::unique_ptr<std::mt19937_64> full_;
};

}  // namespace

uint64_t augmentation_engine_draw(uint64_t seed, int k) {
  LazyMt19937_64 lazy(seed);
  uint64_t v = 0;
  for (int i = 0; i <= k; ++i) v = lazy();
  return v;
}

Normalization compute_normalization(const Dataset& data, const std::vector<int64_t>& indices) {
  const auto images = data.images.contiguous();
  const int64_t N = images.size(0), C = images.size(1), HW = images.size(2) * images.size(3);
  const uint8_t* base = images.data_ptr<uint8_t>();
  std::vector<double> sum(C, 0.0), sq(C, 0.0);
  const int64_t count = indices.empty() ? N : static_cast<int64_t>(indices.size());
  if (count == 0) throw std::invalid_argument("cannot compute normalization of an empty data set");
  for (int64_t k = 0; k < count; ++k) {
    const int64_t row = indices.empty() ? k : indices[k];
    for (int64_t c = 0; c < C; ++c) {
      const uint8_t* p = base + (row * C + c) * HW;
      uint64_t s = 0, s2 = 0;
      for (int64_t i = 0; i < HW; ++i) {
        s += p[i];
        s2 += uint64_t(p[i]) * p[i];
      }
      sum[c] += double(s);
      sq[c] += double(s2);
    }
  }
  Normalization norm;
  for (int64_t c = 0; c < C; ++c) {
    const double n = double(count) * HW;
    const double mean = sum[c] / n / 255.0;
    const double var = std::max(sq[c] / n / (255.0 * 255.0) - mean * mean, 0.0);
    norm.mean.push_back(float(mean));
    norm.std.push_back(float(std::max(std::sqrt(var), 1e-3)));  // constant images: avoid 1/0
  }
  return norm;
}

void prepare_image(const uint8_t* src, int C, int H, int W, int S, const Normalization& norm,
                   const AugmentConfig& augment, uint64_t rng_seed, float* out) {
  const int64_t plane = int64_t(S) * S;
  // (v / 255 - mean) / std = v * scale + shift
  thread_local std::vector<float> scale, shift;
  scale.resize(size_t(C));
  shift.resize(size_t(C));
  for (int c = 0; c < C; ++c) {
    scale[c] = 1.0f / (255.0f * norm.std[c]);
    shift[c] = -norm.mean[c] / norm.std[c];
  }
  if (!augment.enabled() && H == S && W == S) {
    for (int c = 0; c < C; ++c) {
      const uint8_t* p = src + c * plane;
      float* o = out + c * plane;
      for (int64_t i = 0; i < plane; ++i) o[i] = p[i] * scale[c] + shift[c];
    }
    return;
  }
  // Draws, in a fixed order so that adding a transform keeps the others' draws: flip, rotation,
  // zoom, translation, crop, erasing.
  LazyMt19937_64 rng(rng_seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  double zx = 1.0, zy = 1.0, angle = 0.0, tx = 0.0, ty = 0.0;
  bool flip = false;
  if (augment.hflip) flip = rng() & 1;
  if (augment.rotation > 0) angle = u(rng) * augment.rotation * 2.0 * M_PI;
  if (augment.zoom > 0) {
    zx = 1.0 + u(rng) * augment.zoom;
    zy = 1.0 + u(rng) * augment.zoom;
  }
  if (augment.translate > 0) {
    tx = u(rng) * augment.translate * S;
    ty = u(rng) * augment.translate * S;
  }
  int dx = 0, dy = 0;  // crop offset: output (y, x) reads (y + dy, x + dx)
  if (augment.crop > 0) {
    std::uniform_int_distribution<int> d(-augment.crop, augment.crop);
    dx = d(rng);
    dy = d(rng);
  }
  int ex0 = 0, ey0 = 0, ex1 = 0, ey1 = 0;  // erased rectangle [ex0, ex1) x [ey0, ey1)
  if (augment.erase > 0 && std::uniform_real_distribution<double>(0, 1)(rng) < augment.erase) {
    std::uniform_real_distribution<double> area(0.02, 0.4), log_aspect(std::log(0.3), std::log(1 / 0.3));
    for (int attempt = 0; attempt < 10; ++attempt) {  // torchvision's retry rule
      const double a = area(rng) * plane, r = std::exp(log_aspect(rng));
      const int h = int(std::lround(std::sqrt(a * r))), w = int(std::lround(std::sqrt(a / r)));
      if (h < 1 || w < 1 || h > S || w > S) continue;
      ey0 = std::uniform_int_distribution<int>(0, S - h)(rng);
      ex0 = std::uniform_int_distribution<int>(0, S - w)(rng);
      ey1 = ey0 + h;
      ex1 = ex0 + w;
      break;
    }
  }

  // The geometric part as an S x S uint8 plane per channel: the source itself when only flip and
  // crop apply (exact, no resampling), else an affine warp.
  const bool warp = H != S || W != S || augment.rotation > 0 || augment.zoom > 0 || augment.translate > 0;
  cv::Mat warped;
  cv::Matx23d M;
  if (warp) {
    // Inverse map, output pixel -> source pixel: src = A (dst - centre_out - shift) + centre_in,
    // A = resize . flip . rotate(-angle) . zoom^-1.
    const double cs = std::cos(angle), sn = std::sin(angle), f = flip ? -1.0 : 1.0;
    const double rx = double(W) / S, ry = double(H) / S;
    const double a00 = rx * f * cs / zx, a01 = rx * f * sn / zy;
    const double a10 = ry * -sn / zx, a11 = ry * cs / zy;
    const double cox = (S - 1) / 2.0 + tx, coy = (S - 1) / 2.0 + ty;
    const double cix = (W - 1) / 2.0, ciy = (H - 1) / 2.0;
    M = cv::Matx23d(a00, a01, cix - (a00 * cox + a01 * coy), a10, a11, ciy - (a10 * cox + a11 * coy));
    warped.create(S, S, CV_8UC1);
  }
  for (int c = 0; c < C; ++c) {
    const uint8_t* p = src + int64_t(c) * H * W;
    bool mirror = flip;
    if (warp) {
      cv::Mat in(H, W, CV_8UC1, const_cast<uint8_t*>(p));
      cv::warpAffine(in, warped, M, cv::Size(S, S), cv::INTER_LINEAR | cv::WARP_INVERSE_MAP,
                     cv::BORDER_REFLECT_101);
      p = warped.ptr<uint8_t>();
      mirror = false;  // the warp has flipped already
    }
    float* o = out + c * plane;
    const float zero = shift[c];  // a black pixel, normalized
    for (int y = 0; y < S; ++y) {
      const int sy = y + dy;
      float* row = o + int64_t(y) * S;
      if (sy < 0 || sy >= S) {
        std::fill(row, row + S, zero);
        continue;
      }
      const uint8_t* in = p + int64_t(sy) * S;
      // Columns whose source x + dx lies in the image: [x0, x1); black outside. Branch-free
      // inner loops the compiler vectorises (the same products as pixel by pixel).
      const int x0 = std::min(S, std::max(0, -dx)), x1 = std::max(x0, std::min(S, S - dx));
      const float sc = scale[c], sh = shift[c];
      for (int x = 0; x < x0; ++x) row[x] = zero;
      if (mirror) {
        const int last = S - 1 - dx;  // column x reads in[S - 1 - (x + dx)]
        for (int x = x0; x < x1; ++x) row[x] = float(in[last - x]) * sc + sh;
      } else {
        for (int x = x0; x < x1; ++x) row[x] = float(in[x + dx]) * sc + sh;
      }
      for (int x = x1; x < S; ++x) row[x] = zero;
    }
    for (int y = ey0; y < ey1; ++y) std::fill(o + int64_t(y) * S + ex0, o + int64_t(y) * S + ex1, 0.0f);
  }
}

struct DataLoader::Impl {
  const Dataset& data;
  std::vector<int64_t> indices;
  LoaderOptions options;
  int C = 0, H = 0, W = 0;

  std::mutex mutex;
  std::condition_variable changed;
  std::deque<Batch> ready;
  bool producing = false;  // the producer has batches left to make
  bool cancel = false;
  std::thread producer;

  Impl(const Dataset& d, std::vector<int64_t> idx, LoaderOptions o)
      : data(d), indices(std::move(idx)), options(std::move(o)) {
    if (options.batch_size <= 0) throw std::invalid_argument("batch_size must be positive");
    if (options.parts < 1 || options.part < 0 || options.part >= options.parts)
      throw std::invalid_argument("data loader part out of range");
    C = int(data.images.size(1));
    H = int(data.images.size(2));
    W = int(data.images.size(3));
    check_normalization(options.normalization, C);
    for (int64_t i : indices)
      if (i < 0 || i >= data.size()) throw std::out_of_range("data loader index out of range");
  }

  ~Impl() { stop(); }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      cancel = true;
    }
    changed.notify_all();
    if (producer.joinable()) producer.join();
    ready.clear();
    cancel = false;
    producing = false;
  }

  int64_t batches() const {
    const int64_t n = static_cast<int64_t>(indices.size()), b = options.batch_size;
    return options.drop_last ? n / b : (n + b - 1) / b;
  }

  Batch make(const std::vector<int64_t>& order, int64_t batch, int epoch) {
    const int64_t first = batch * options.batch_size;
    const int64_t whole = std::min<int64_t>(first + options.batch_size, order.size()) - first;
    const int64_t begin = first + whole * options.part / options.parts;
    const int64_t end = first + whole * (options.part + 1) / options.parts;
    const int64_t B = end - begin, S = options.image_size;
    Batch out;
    const auto pinned = torch::TensorOptions().pinned_memory(options.pin_memory);
    out.images = torch::empty({B, C, S, S}, pinned.dtype(torch::kFloat32));
    out.labels = torch::empty({B}, pinned.dtype(torch::kInt64));
    const uint8_t* pixels = data.images.data_ptr<uint8_t>();
    const int64_t* labels = data.labels.data_ptr<int64_t>();
    float* dst = out.images.data_ptr<float>();
    int64_t* lab = out.labels.data_ptr<int64_t>();
    for (int64_t k = 0; k < B; ++k) {
      const int64_t row = order[begin + k];
      out.indices.push_back(row);
      lab[k] = labels[row];
      prepare_image(pixels + row * C * H * W, C, H, W, int(S), options.normalization,
                    options.augment, mix(mix(options.seed, uint64_t(epoch)), uint64_t(row)),
                    dst + k * C * S * S);
    }
    return out;
  }

  void start(int epoch, int64_t skip) {
    stop();
    std::vector<int64_t> order = indices;
    if (options.shuffle) {
      std::mt19937_64 rng(mix(options.seed, 0x5eed0000ULL + uint64_t(epoch)));
      std::shuffle(order.begin(), order.end(), rng);
    }
    producing = true;
    producer = std::thread([this, order = std::move(order), epoch, skip] {
      // Lowering one's own priority needs no privilege; if it fails, the thread runs as before.
      if (options.low_priority) (void)setpriority(PRIO_PROCESS, id_t(syscall(SYS_gettid)), 19);
      const int64_t total = batches();
      for (int64_t b = skip; b < total; ++b) {
        {
          std::unique_lock<std::mutex> lock(mutex);
          changed.wait(lock, [&] { return cancel || int(ready.size()) < options.prefetch; });
          if (cancel) return;
        }
        Batch batch = make(order, b, epoch);
        {
          std::lock_guard<std::mutex> lock(mutex);
          ready.push_back(std::move(batch));
        }
        changed.notify_all();
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        producing = false;
      }
      changed.notify_all();
    });
  }

  std::optional<Batch> next() {
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait(lock, [&] { return !ready.empty() || !producing; });
    if (ready.empty()) return std::nullopt;
    Batch b = std::move(ready.front());
    ready.pop_front();
    lock.unlock();
    changed.notify_all();
    return b;
  }
};

DataLoader::DataLoader(const Dataset& data, std::vector<int64_t> indices, LoaderOptions options)
    : impl_(std::make_unique<Impl>(data, std::move(indices), std::move(options))) {}
DataLoader::~DataLoader() = default;
void DataLoader::start_epoch(int epoch, int64_t skip_batches) { impl_->start(epoch, skip_batches); }
std::optional<Batch> DataLoader::next() { return impl_->next(); }
int64_t DataLoader::batches_per_epoch() const { return impl_->batches(); }
int64_t DataLoader::size() const { return static_cast<int64_t>(impl_->indices.size()); }

}  // namespace vit
