#include "settings_schema.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace vit {

std::vector<std::string> FieldSpec::cli_flags() const {
  if (!flags.empty()) return flags;
  std::string flag = "--" + name;
  for (char& ch : flag)
    if (ch == '_') ch = '-';
  return {flag};
}

std::string format_number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    std::ostringstream out;
    out << static_cast<long long>(value);
    return out.str();
  }
  std::ostringstream out;
  out.precision(6);
  out << value;
  return out.str();
}

namespace {

std::string number_of(const FieldSpec& spec, double v) {
  (void)spec;
  return format_number(v);
}

// "[0, 1)", "(0, 10)", "1..64" (whole numbers) or ">= 0".
std::string range_text(const FieldSpec& s, bool whole) {
  const bool lo = std::isfinite(s.min), hi = std::isfinite(s.max);
  if (whole && lo && hi) return format_number(s.min) + ".." + format_number(s.max);
  if (lo && hi)
    return std::string(s.min_open ? "(" : "[") + format_number(s.min) + ", " +
           format_number(s.max) + (s.max_open ? ")" : "]");
  if (lo) return std::string(s.min_open ? "> " : ">= ") + format_number(s.min);
  if (hi) return std::string(s.max_open ? "< " : "<= ") + format_number(s.max);
  return "";
}

bool in_range(const FieldSpec& s, double v) {
  if (std::isnan(v)) return false;
  if (s.min_open ? !(v > s.min) : !(v >= s.min)) return false;
  if (s.max_open ? !(v < s.max) : !(v <= s.max)) return false;
  return true;
}

std::string example(const FieldSpec& s) { return s.example.empty() ? "" : "; for example " + s.example; }

std::string scalar_problem(const FieldSpec& s, double v) {
  if (in_range(s, v)) return "";
  const bool whole = s.kind == FieldKind::Int;
  std::ostringstream out;
  if (whole && s.min == 1 && !s.min_open && v < 1) {
    out << s.name << " must be a positive whole number (got " << number_of(s, v) << ")";
  } else if (whole && std::isfinite(s.max) && v > s.max && s.min == 1) {
    out << s.name << " " << number_of(s, v) << " is too large (at most " << format_number(s.max)
        << ")";
  } else if (std::isfinite(s.min) && std::isfinite(s.max)) {
    out << s.name << " must be in " << range_text(s, whole) << " (got " << number_of(s, v) << ")";
  } else {
    out << s.name << " must be " << range_text(s, whole) << " (got " << number_of(s, v) << ")";
  }
  out << example(s);
  return out.str();
}

}  // namespace

std::string range_problem(const FieldSpec& s, const nlohmann::json& value) {
  switch (s.kind) {
    case FieldKind::Int:
    case FieldKind::Real: {
      // JSON has no NaN: a NaN double is stored as a float value that compares unequal to itself.
      const double v = value.is_number() ? value.get<double>() : std::nan("");
      return scalar_problem(s, v);
    }
    case FieldKind::Choice: {
      const std::string v = value.is_string() ? value.get<std::string>() : value.dump();
      for (const auto& c : s.choices)
        if (c == v) return "";
      std::string list;
      for (size_t i = 0; i < s.choices.size(); ++i)
        list += (i == 0 ? "" : i + 1 == s.choices.size() ? " or " : ", ") + s.choices[i];
      return s.name + " must be " + list + " (got '" + v + "')";
    }
    case FieldKind::IntList:
    case FieldKind::RealList: {
      if (!std::isfinite(s.min) && !std::isfinite(s.max)) {
        for (const auto& e : value)
          if (!e.is_number() || std::isnan(e.get<double>()))
            return s.name + " must be numbers (got " + value.dump() + ")" + example(s);
        return "";
      }
      size_t i = 0;
      for (const auto& e : value) {
        const double v = e.is_number() ? e.get<double>() : std::nan("");
        if (!in_range(s, v)) {
          std::ostringstream out;
          out << s.name << "[" << i << "] must be in " << range_text(s, s.kind == FieldKind::IntList)
              << " (got " << format_number(v) << ")" << example(s);
          return out.str();
        }
        ++i;
      }
      return "";
    }
    case FieldKind::Bool:
    case FieldKind::Text:
      return "";
  }
  return "";
}

namespace detail {

std::vector<std::string> split_key(const std::string& key) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(key);
  while (std::getline(in, part, '.')) parts.push_back(part);
  return parts;
}

void wrong_type(const FieldSpec& spec, const nlohmann::json& value, const std::string& what) {
  std::string expected;
  switch (spec.kind) {
    case FieldKind::Int: expected = "a whole number"; break;
    case FieldKind::Real: expected = "a number"; break;
    case FieldKind::Bool: expected = "true or false"; break;
    case FieldKind::Text: expected = "a string"; break;
    case FieldKind::Choice: {
      for (size_t i = 0; i < spec.choices.size(); ++i)
        expected += (i == 0 ? "" : i + 1 == spec.choices.size() ? " or " : ", ") + spec.choices[i];
      break;
    }
    case FieldKind::IntList: expected = "a list of whole numbers"; break;
    case FieldKind::RealList: expected = "a list of numbers"; break;
  }
  (void)what;
  throw std::invalid_argument("config field '" + spec.json_key() + "' must be " + expected +
                              " (got " + value.dump() + ")");
}

bool known_key(const std::vector<std::string>& keys, const nlohmann::json& j,
               const std::string& prefix, std::string* unknown) {
  for (const auto& [key, value] : j.items()) {
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    bool exact = false, parent = false;
    for (const auto& k : keys) {
      if (k == path) exact = true;
      if (k.size() > path.size() && k.compare(0, path.size() + 1, path + ".") == 0) parent = true;
    }
    if (exact) continue;
    if (parent && value.is_object()) {
      if (!known_key(keys, value, path, unknown)) return false;
      continue;
    }
    *unknown = path;
    return false;
  }
  return true;
}

}  // namespace detail

}  // namespace vit
