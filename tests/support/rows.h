// Data-driven tests (the Qt suites' `_data()` rows) as value-parameterized GoogleTest tests: each
// row is a struct deriving from Row, so it carries the row's name, which names the test
// (`Suite/Test.row/<name>`) and is printed in failure messages.
//
//   struct SizeRow : vit_test::Row { int size; };
//   class Sizes : public testing::TestWithParam<SizeRow> {};
//   TEST_P(Sizes, row) { ... GetParam().size ... }
//   INSTANTIATE_TEST_SUITE_P(Suite, Sizes, testing::ValuesIn(std::vector<SizeRow>{
//       {{"zero"}, 0}, {{"one"}, 1}}), vit_test::RowName());
#pragma once

#include <gtest/gtest.h>

#include <cctype>
#include <ostream>
#include <string>

namespace vit_test {

struct Row {
  std::string name;  // as the Qt row was named: "dim not divisible by heads"
};

inline std::ostream& operator<<(std::ostream& os, const Row& row) {
  return os << '"' << row.name << '"';
}

// GoogleTest accepts only [A-Za-z0-9_] in parameter names: every other run of characters becomes
// one '_' ("dim not divisible by heads" -> "dim_not_divisible_by_heads").
inline std::string param_name(const std::string& row_name) {
  std::string out;
  for (const char c : row_name) {
    if (std::isalnum(static_cast<unsigned char>(c))) out += c;
    else if (!out.empty() && out.back() != '_') out += '_';
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out.empty() ? "row" : out;
}

struct RowName {
  template <class R>
  std::string operator()(const testing::TestParamInfo<R>& info) const {
    return param_name(info.param.name);
  }
};

}  // namespace vit_test
