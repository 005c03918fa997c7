// The settings as data. Each config (ViTConfig, TrainConfig) has one table of fields: name, type,
// range, default (the struct's own), one-line doc, panel label and accessor. That table drives
// config.json reading and writing, the range checks and their messages, the `vit` flags (one per
// field, app/schema_flags.h) and the window's editors, ranges and tooltips (ui/config_panel.cpp),
// so adding a setting is one row here plus its use. As nanoGPT's config + override script and
// timm's model_args: the config is data; cross-field rules (dim divisible by heads, min_lr <= lr)
// stay hand-written in each config's validate().
//
// Torch-free: the window's widgets and the CLI parser include this.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <type_traits>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vit {

// One broken rule: the field (as named in the CLI/JSON/panel) and a message that starts with the
// field's name and offers a valid alternative. The window shows it under the field.
struct ConfigError {
  std::string field;
  std::string message;
};

enum class FieldKind {
  Int,       // whole number
  Real,      // number
  Bool,      // on/off
  Text,      // free text (paths, data set specs)
  Choice,    // one of `choices`
  IntList,   // whole numbers, comma-separated on the command line
  RealList,  // numbers, comma-separated on the command line
};

// Where the window shows a field; None: the command line and config.json only.
enum class FieldGroup { None, Model, Data, Training, Augmentation, FineTuning };

struct FieldSpec {
  std::string name;   // "heads": messages, the panel's field, the flag --heads ('_' -> '-')
  FieldKind kind = FieldKind::Int;
  std::string label;  // the panel's row label ("Heads"); empty for a check box's own text
  std::string doc;    // one line: the panel's tooltip and the flag's --help
  // Valid range of the value (of each element for lists), inclusive unless *_open. NaN is never
  // valid. Lists and text have no range unless given.
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_open = false, max_open = false;
  std::string example;               // ends range messages: "...; for example 0.1"
  std::vector<std::string> choices;  // FieldKind::Choice
  // The panel's text for a choice when it says more than the value ("auto (fp32 on this CPU)");
  // null: the value itself. Called when the panel is built, not when the schema is.
  std::string (*choice_text)(const std::string& choice) = nullptr;
  std::string key;                   // path in config.json when not `name` ("augment.crop")
  std::vector<std::string> flags;    // CLI names when not --name ({"--classes"})
  FieldGroup group = FieldGroup::None;
  double step = 0;         // the panel's spin-box step; 0 for a Real: a text field (1e-3 notation)
  bool resumable = false;  // may differ when a run is continued (epochs, threads, ...)
  bool architecture = false;  // fixed by pretrained weights when fine-tuning (dim, depth, ...)
  bool per_call = false;      // applies to one `vit train` call: a continued run starts without it
  std::string check_text;  // for a Bool: the check box's text in the panel

  const std::string& json_key() const { return key.empty() ? name : key; }
  std::vector<std::string> cli_flags() const;  // flags, or {"--" + name with '-' for '_'}
};

// A field of config type C: its spec and a get/set pair that speak JSON, so every generic
// operation (files, flags, widgets, comparisons) goes through one representation.
template <class C>
struct Field {
  FieldSpec spec;
  std::function<nlohmann::json(const C&)> get;
  // Throws nlohmann::json::exception when the value has the wrong type.
  std::function<void(C&, const nlohmann::json&)> set;
};

template <class C>
using Schema = std::vector<Field<C>>;

// `j` as a T: whole numbers must be whole and fit T (a file's 1e300 or 2.5 for an int is an
// error, not undefined behaviour); everything else as nlohmann::json converts it.
template <class T>
T json_to(const nlohmann::json& j) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (j.is_number_float()) {
      const double v = j.get<double>();
      // 2^digits is the first value above T's range, exactly representable as a double (T's
      // max itself rounds up to it for int64, so `v > max` would let 2^63 through).
      const double upper = std::ldexp(1.0, std::numeric_limits<T>::digits);
      const double lower = std::is_signed_v<T> ? -upper : 0.0;
      if (!(v == std::floor(v)) || v < lower || v >= upper)
        throw std::invalid_argument("not a whole number in range: " + j.dump());
      return static_cast<T>(v);
    }
    if (j.is_number_unsigned() && j.get<uint64_t>() > uint64_t(std::numeric_limits<T>::max()))
      throw std::invalid_argument("out of range: " + j.dump());
    if (j.is_number_integer() && !j.is_number_unsigned()) {
      const int64_t v = j.get<int64_t>();
      if (std::is_unsigned_v<T> ? v < 0 : (v < int64_t(std::numeric_limits<T>::lowest()) ||
                                           v > int64_t(std::numeric_limits<T>::max())))
        throw std::invalid_argument("out of range: " + j.dump());
    }
    if (!j.is_number()) throw std::invalid_argument("not a number: " + j.dump());
    return j.get<T>();
  } else if constexpr (std::is_same_v<T, float>) {
    // double to float is undefined behaviour above FLT_MAX (a file's 1e+40).
    if (!j.is_number()) throw std::invalid_argument("not a number: " + j.dump());
    const double v = j.get<double>();
    if (std::isfinite(v) && std::fabs(v) > double(std::numeric_limits<float>::max()))
      throw std::invalid_argument("out of range for a 32-bit float: " + j.dump());
    return static_cast<float>(v);
  } else if constexpr (std::is_same_v<T, std::vector<int>> || std::is_same_v<T, std::vector<float>>) {
    if (!j.is_array()) throw std::invalid_argument("not a list: " + j.dump());
    T out;
    for (const auto& e : j) out.push_back(json_to<typename T::value_type>(e));
    return out;
  } else {
    return j.get<T>();
  }
}

// A field stored in a member (or a member of a member, such as TrainConfig::augment.crop).
template <class C, class T>
Field<C> member_field(T C::*member, FieldSpec spec) {
  return {std::move(spec), [member](const C& c) { return nlohmann::json(c.*member); },
          [member](C& c, const nlohmann::json& j) { c.*member = json_to<T>(j); }};
}
template <class C, class S, class T>
Field<C> member_field(S C::*outer, T S::*inner, FieldSpec spec) {
  return {std::move(spec), [outer, inner](const C& c) { return nlohmann::json(c.*outer.*inner); },
          [outer, inner](C& c, const nlohmann::json& j) { c.*outer.*inner = json_to<T>(j); }};
}

// The fields of `schema` seen through a member of a larger config O (O::*part is a C), for
// configs composed of others, and for tests that extend a schema.
template <class O, class C>
Schema<O> lift(const Schema<C>& schema, C O::*part) {
  Schema<O> out;
  for (const auto& f : schema)
    out.push_back({f.spec, [get = f.get, part](const O& o) { return get(o.*part); },
                   [set = f.set, part](O& o, const nlohmann::json& j) { set(o.*part, j); }});
  return out;
}

// --- generic operations ---------------------------------------------------------------------

// Range and choice problems of one value (a list checks each element), "" when it is valid.
// `value` is what Field::get returns.
std::string range_problem(const FieldSpec& spec, const nlohmann::json& value);
// A number as people write it: 0.1, 1e-05, 3 (never "0.000000").
std::string format_number(double value);

template <class C>
const Field<C>* find_field(const Schema<C>& schema, const std::string& name) {
  for (const auto& f : schema)
    if (f.spec.name == name) return &f;
  return nullptr;
}

// Every field that is out of its range or not one of its choices, in table order.
template <class C>
std::vector<ConfigError> check_ranges(const Schema<C>& schema, const C& config) {
  std::vector<ConfigError> errors;
  for (const auto& f : schema) {
    std::string problem = range_problem(f.spec, f.get(config));
    if (!problem.empty()) errors.push_back({f.spec.name, std::move(problem)});
  }
  return errors;
}

// The config as a JSON object, nested by the fields' keys ("augment.crop" -> {"augment": {...}}).
template <class C>
nlohmann::json to_json(const Schema<C>& schema, const C& config);
// `base` with every field found in `j` set from it. Unknown keys throw std::invalid_argument when
// `strict` (model configs: a typo would silently train another model), else are ignored (newer
// files). A value of the wrong type throws std::invalid_argument naming the field. The result is
// not validated.
template <class C>
C from_json(const Schema<C>& schema, const nlohmann::json& j, C base, bool strict);
// Names of the fields whose values differ.
template <class C>
std::vector<std::string> differences(const Schema<C>& schema, const C& a, const C& b) {
  std::vector<std::string> names;
  for (const auto& f : schema)
    if (f.get(a) != f.get(b)) names.push_back(f.spec.name);
  return names;
}

namespace detail {
std::vector<std::string> split_key(const std::string& key);
[[noreturn]] void wrong_type(const FieldSpec& spec, const nlohmann::json& value,
                             const std::string& what);
bool known_key(const std::vector<std::string>& keys, const nlohmann::json& j,
               const std::string& prefix, std::string* unknown);
}  // namespace detail

template <class C>
nlohmann::json to_json(const Schema<C>& schema, const C& config) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& f : schema) {
    nlohmann::json* at = &out;
    for (const auto& part : detail::split_key(f.spec.json_key())) at = &(*at)[part];
    *at = f.get(config);
  }
  return out;
}

template <class C>
C from_json(const Schema<C>& schema, const nlohmann::json& j, C base, bool strict) {
  if (!j.is_object()) throw std::invalid_argument("settings must be a JSON object, got " + j.dump());
  if (strict) {
    std::vector<std::string> keys;
    for (const auto& f : schema) keys.push_back(f.spec.json_key());
    std::string unknown;
    if (!detail::known_key(keys, j, "", &unknown))
      throw std::invalid_argument("unknown config field '" + unknown + "'");
  }
  for (const auto& f : schema) {
    const nlohmann::json* at = &j;
    for (const auto& part : detail::split_key(f.spec.json_key())) {
      if (!at->is_object() || !at->contains(part)) {
        at = nullptr;
        break;
      }
      at = &(*at)[part];
    }
    if (!at) continue;
    try {
      f.set(base, *at);
    } catch (const nlohmann::json::exception& e) {
      detail::wrong_type(f.spec, *at, e.what());
    } catch (const std::invalid_argument& e) {
      detail::wrong_type(f.spec, *at, e.what());
    }
  }
  return base;
}

}  // namespace vit
