// The few QString/QByteArray operations the Qt suites used, on std::string (UTF-8 bytes).
#pragma once

#include <string>

namespace vit_test {

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

inline bool starts_with(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

// Without ASCII whitespace at both ends, as QByteArray::trimmed.
inline std::string trimmed(const std::string& text) {
  const char* space = " \t\n\v\f\r";
  const auto begin = text.find_first_not_of(space);
  if (begin == std::string::npos) return {};
  return text.substr(begin, text.find_last_not_of(space) - begin + 1);
}

// What follows the last '\n' (all of `text` without one), as split('\n').last().
inline std::string last_line(const std::string& text) {
  const auto at = text.rfind('\n');
  return at == std::string::npos ? text : text.substr(at + 1);
}

}  // namespace vit_test
