// The bias gradients' column sums (model/column_sums.h) against float64 sums: float and bfloat16,
// shapes around the kernels' vector and register-block widths, non-contiguous input, thread-count
// independence, and what it leaves to ATen. CTest runs this suite twice: as is (AVX-512 where the
// CPU has it) and with ATEN_CPU_CAPABILITY=avx2, so both kernel sets are checked on an AVX-512
// machine.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "column_sums.h"

namespace {

// Columns: 1, under one AVX2/AVX-512 vector, exactly a vector pair, a pair and one, the register
// blocks (64 with AVX2, 256 with AVX-512) and one past them, ViT-B/16's qkv width and an odd width
// over two blocks. Rows: one, a few, a training shard's.
const std::vector<int64_t> kCols = {1, 10, 32, 33, 64, 65, 192, 256, 257, 384, 600};
const std::vector<int64_t> kRows = {1, 7, 544};

std::string shape(int64_t r, int64_t c) { return std::to_string(r) + "x" + std::to_string(c); }

}  // namespace

TEST(ColumnSums, KernelsRunHere) {
  // The default build on x86-64 has them (libsleef-dev, scripts/setup.sh); without them every
  // other test here would only see ATen's sum. Under ATEN_CPU_CAPABILITY=avx2 (the suite's second
  // run) the AVX2 set must be the one chosen.
  const std::string isa = vit::column_sums_isa();
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "no AVX2 on this CPU: " << isa;
  EXPECT_NE(isa.rfind("off", 0), 0u) << isa;
  const char* cap = std::getenv("ATEN_CPU_CAPABILITY");
  if (cap && std::string(cap) == "avx2") EXPECT_EQ(isa, "avx2");
#else
  GTEST_SKIP() << "kernels are x86-64 only: " << isa;
#endif
}

TEST(ColumnSums, FloatMatchesFloat64Sums) {
  torch::manual_seed(3);
  for (const int64_t rows : kRows)
    for (const int64_t cols : kCols) {
      SCOPED_TRACE(shape(rows, cols));
      const auto x = torch::randn({rows, cols}) * 3.0 + 1.0;
      const auto got = vit::column_sums(x);
      ASSERT_EQ(got.scalar_type(), torch::kFloat);
      ASSERT_EQ(got.sizes(), torch::IntArrayRef({cols}));
      const auto want = x.to(torch::kDouble).sum(0);
      // A float sum of `rows` terms in order: within rows x 2^-24 of the sum of magnitudes.
      const auto bound = x.to(torch::kDouble).abs().sum(0) * (double(rows) * 6e-8) + 1e-30;
      EXPECT_TRUE(((got.to(torch::kDouble) - want).abs() <= bound).all().item<bool>())
          << "max error " << (got.to(torch::kDouble) - want).abs().max().item<double>();
    }
}

TEST(ColumnSums, Bfloat16IsTheFloatSumRoundedOnce) {
  torch::manual_seed(4);
  for (const int64_t rows : kRows)
    for (const int64_t cols : kCols) {
      SCOPED_TRACE(shape(rows, cols));
      const auto x = (torch::randn({rows, cols}) + 0.5).to(torch::kBFloat16);
      const auto got = vit::column_sums(x);
      ASSERT_EQ(got.scalar_type(), torch::kBFloat16) << "the bias gradient has the bias's type";
      // The same bf16 inputs summed in float64, then rounded to bf16: our float sum rounded once
      // may differ from it by at most one bf16 step.
      const auto want = x.to(torch::kDouble).sum(0);
      const auto step = want.abs() * (1.0 / 128) + 1e-30;
      EXPECT_TRUE(((got.to(torch::kDouble) - want).abs() <= step).all().item<bool>())
          << "max error " << (got.to(torch::kDouble) - want).abs().max().item<double>();
    }
}

TEST(ColumnSums, NonContiguousInputIsReadAsItsValues) {
  torch::manual_seed(5);
  const auto base = torch::randn({300, 70});
  const auto x = base.t();  // (70, 300), column-major
  ASSERT_FALSE(x.is_contiguous());
  const auto got = vit::column_sums(x);
  const auto want = x.to(torch::kDouble).sum(0);
  EXPECT_LT((got.to(torch::kDouble) - want).abs().max().item<double>(), 1e-4);
}

TEST(ColumnSums, ResultsDoNotDependOnTheThreadCount) {
  torch::manual_seed(6);
  const auto x = torch::randn({1000, 600});  // three blocks of columns
  const int before = at::get_num_threads();
  at::set_num_threads(1);
  const auto one = vit::column_sums(x);
  at::set_num_threads(3);
  const auto three = vit::column_sums(x);
  at::set_num_threads(before);
  EXPECT_TRUE(torch::equal(one, three));
}

TEST(ColumnSums, OtherTensorsGoToATen) {
  const auto d = torch::randn({5, 3}, torch::kDouble);
  const auto got = vit::column_sums(d);
  EXPECT_EQ(got.scalar_type(), torch::kDouble);
  EXPECT_TRUE(torch::equal(got, d.sum(0)));
  const auto empty = torch::zeros({0, 4});
  EXPECT_TRUE(torch::equal(vit::column_sums(empty), torch::zeros({4})));
}
