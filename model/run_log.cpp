#include "run_log.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <ctime>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>

#include "config_json.h"

namespace vit {

namespace fs = std::filesystem;

std::string utc_timestamp() {
  const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

RunInfo read_run(const std::string& run_dir) {
  const fs::path path = fs::path(run_dir) / "config.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path.string() + ": is this a run directory?");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path.string() + " is not valid JSON: " + e.what());
  }
  RunInfo info;
  try {
    info.model = config_from_json(j.at("model"));
    info.train = train_config_from_json(j.at("train"));
    info.normalization.mean = j.at("normalization").at("mean").get<std::vector<float>>();
    info.normalization.std = j.at("normalization").at("std").get<std::vector<float>>();
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path.string() + " is missing a field: " + e.what());
  }
  check(info.model);
  return info;
}

namespace {

// Splits a CSV line of numbers; false when a field is missing or not a number.
bool parse_numbers(const std::string& line, std::vector<double>& out, size_t expected) {
  out.clear();
  const char* p = line.c_str();
  while (true) {
    char* end = nullptr;
    const double v = std::strtod(p, &end);
    if (end == p) return false;
    out.push_back(v);
    if (*end == '\0') break;
    if (*end != ',') return false;
    p = end + 1;
  }
  return out.size() == expected;
}

// Whether `v` is a whole number that fits T. The integer columns (epoch, step) are converted only
// then: converting 1e+31, NaN or infinity from double to an integer is undefined behaviour.
template <class T>
bool whole_in_range(double v) {
  const double lo = double(std::numeric_limits<T>::min());  // -2^(n-1) and 2^(n-1): exact doubles
  return v >= lo && v < -lo && v == std::trunc(v);
}

// `valid` rejects a row whose integer columns `make` could not convert.
template <class Row, class Valid, class Make>
std::vector<Row> read_csv(const std::string& path, const char* header, size_t columns, Valid valid,
                          Make make) {
  std::vector<Row> rows;
  std::ifstream in(path);
  if (!in) return rows;
  std::string line;
  if (!std::getline(in, line)) return rows;  // created but not written yet
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line != header)
    throw std::runtime_error(path + ": unexpected header '" + line + "' (expected '" + header +
                             "'); is this a ViT Studio run directory?");
  std::vector<double> v;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (in.eof()) break;  // no newline yet: a row still being written
    if (parse_numbers(line, v, columns) && valid(v)) rows.push_back(make(v));
  }
  return rows;
}

}  // namespace

std::vector<EpochRow> read_metrics_csv(const std::string& path) {
  auto valid = [](const std::vector<double>& v) { return whole_in_range<int>(v[0]); };
  return read_csv<EpochRow>(path, kMetricsHeader, 9, valid, [](const std::vector<double>& v) {
    EpochRow r;
    r.epoch = int(v[0]);
    r.loss = v[1], r.accuracy = v[2], r.top5_accuracy = v[3];
    r.val_loss = v[4], r.val_accuracy = v[5], r.val_top5_accuracy = v[6];
    r.lr = v[7], r.seconds = v[8];
    return r;
  });
}

std::vector<StepRow> read_steps_csv(const std::string& path) {
  auto valid = [](const std::vector<double>& v) {
    return whole_in_range<int64_t>(v[0]) && whole_in_range<int>(v[1]);
  };
  return read_csv<StepRow>(path, kStepsHeader, 7, valid, [](const std::vector<double>& v) {
    StepRow r;
    r.step = int64_t(v[0]);
    r.epoch = int(v[1]);
    r.loss = v[2], r.accuracy = v[3], r.lr = v[4], r.images_per_second = v[5];
    r.elapsed_seconds = v[6];
    return r;
  });
}

}  // namespace vit
