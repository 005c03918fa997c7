#include "run_log.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "config_json.h"
#include "settings_schema.h"

namespace vit {

namespace fs = std::filesystem;

std::string utc_timestamp() {
  const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

nlohmann::json run_config_json(const ViTConfig& model, const TrainConfig& train,
                               const Normalization& normalization, const RunData& data,
                               int world_size, const nlohmann::json& extra) {
  nlohmann::json j = {{"program", "ViT Studio"},
                      {"version", VIT_VERSION},
                      {"created", utc_timestamp()},
                      {"model", to_json(model)},
                      {"train", to_json(train)},
                      {"normalization", {{"mean", normalization.mean}, {"std", normalization.std}}},
                      {"data",
                       {{"spec", data.spec},
                        {"name", data.name},
                        {"classes", data.classes},
                        {"train_size", data.train_size},
                        {"val_size", data.val_size},
                        {"test_size", data.test_size}}},
                      {"world_size", world_size}};
  if (extra.is_object())
    for (const auto& [key, value] : extra.items()) j[key] = value;
  return j;
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
    info.normalization.mean = json_to<std::vector<float>>(j.at("normalization").at("mean"));
    info.normalization.std = json_to<std::vector<float>>(j.at("normalization").at("std"));
    if (j.contains("data") && j["data"].contains("classes") && j["data"]["classes"].is_array())
      for (const auto& c : j["data"]["classes"])
        if (c.is_string()) info.classes.push_back(c.get<std::string>());
    if (j.contains("created") && j["created"].is_string()) info.created = j["created"];
    if (j.contains("world_size") && j["world_size"].is_number_integer())
      info.world_size = int(std::clamp<int64_t>(j["world_size"].get<int64_t>(), 1, 1 << 20));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path.string() + " is missing a field: " + e.what());
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(path.string() + ": " + e.what());
  }
  try {
    check(info.model);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(path.string() + ": " + e.what());
  }
  return info;
}

// ---------------------------------------------------------------------------------------------
// CSV

namespace {

template <class Row>
Column<Row> real(const char* name, double Row::*member) {
  return {name, false, [member](const Row& r) { return r.*member; },
          [member](Row& r, double v) { r.*member = v; }};
}
template <class Row, class T>
Column<Row> whole(const char* name, T Row::*member) {
  return {name, true, [member](const Row& r) { return double(r.*member); },
          [member](Row& r, double v) { r.*member = static_cast<T>(v); }};
}

std::string header(const char* const* names, size_t n) {
  std::string h;
  for (size_t i = 0; i < n; ++i) h += (i ? "," : "") + std::string(names[i]);
  return h;
}

template <class Row>
std::string format(const std::vector<Column<Row>>& columns, const Row& row) {
  std::ostringstream out;
  out.precision(6);
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i) out << ',';
    if (columns[i].whole)
      out << static_cast<long long>(columns[i].get(row));
    else
      out << columns[i].get(row);
  }
  return out.str();
}

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

// A whole-number column holds a whole number that fits an int64 (and an int for `epoch`, which
// the int range below covers as well as any epoch count we allow).
bool fits(const std::vector<double>& v, const std::vector<bool>& whole) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!whole[i]) continue;
    if (!std::isfinite(v[i]) || v[i] != std::floor(v[i]) || std::fabs(v[i]) > 2147483647.0)
      return false;
  }
  return true;
}

template <class Row>
std::vector<Row> read_csv(const std::string& path, const std::vector<Column<Row>>& columns,
                          const char* expected_header) {
  std::vector<Row> rows;
  std::ifstream in(path);
  if (!in) return rows;
  std::string line;
  if (!std::getline(in, line)) return rows;  // created but not written yet
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line != expected_header)
    throw std::runtime_error(path + ": unexpected header '" + line + "' (expected '" +
                             expected_header + "'); is this a ViT Studio run directory?");
  std::vector<bool> whole;
  for (const auto& c : columns) whole.push_back(c.whole);
  std::vector<double> v;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (in.eof()) break;  // no newline yet: a row still being written
    if (!parse_numbers(line, v, columns.size()) || !fits(v, whole)) continue;
    Row row;
    for (size_t i = 0; i < columns.size(); ++i) columns[i].set(row, v[i]);
    rows.push_back(row);
  }
  return rows;
}

template <class Row>
bool header_matches(const std::vector<Column<Row>>& columns, const char* expected) {
  std::vector<const char*> names;
  for (const auto& c : columns) names.push_back(c.name);
  return header(names.data(), names.size()) == expected;
}

}  // namespace

const std::vector<Column<EpochRow>>& metrics_columns() {
  using R = EpochRow;
  static const std::vector<Column<R>> columns = [] {
    std::vector<Column<R>> c = {
        whole("epoch", &R::epoch),           real("loss", &R::loss),
        real("accuracy", &R::accuracy),      real("top5_accuracy", &R::top5_accuracy),
        real("val_loss", &R::val_loss),      real("val_accuracy", &R::val_accuracy),
        real("val_top5_accuracy", &R::val_top5_accuracy), real("lr", &R::lr),
        real("seconds", &R::seconds)};
    if (!header_matches(c, kMetricsHeader)) std::abort();  // the table and the header disagree
    return c;
  }();
  return columns;
}

const std::vector<Column<StepRow>>& steps_columns() {
  using R = StepRow;
  static const std::vector<Column<R>> columns = [] {
    std::vector<Column<R>> c = {
        whole("step", &R::step),  whole("epoch", &R::epoch),
        real("loss", &R::loss),   real("accuracy", &R::accuracy),
        real("lr", &R::lr),       real("images_per_second", &R::images_per_second),
        real("elapsed_seconds", &R::elapsed_seconds)};
    if (!header_matches(c, kStepsHeader)) std::abort();
    return c;
  }();
  return columns;
}

std::string format_row(const EpochRow& row) { return format(metrics_columns(), row); }
std::string format_row(const StepRow& row) { return format(steps_columns(), row); }

std::vector<EpochRow> read_metrics_csv(const std::string& path) {
  return read_csv(path, metrics_columns(), kMetricsHeader);
}

std::vector<StepRow> read_steps_csv(const std::string& path) {
  return read_csv(path, steps_columns(), kStepsHeader);
}

}  // namespace vit
