// cpu_info.h: which bf16 instructions the CPU has, the measured rate of its bf16 dot product
// against its float FMA, and auto precision's choice from them (model/train_config.h).
//
// The probe's figures on the machines seen here: 0.49 on an Intel Xeon family 6 model 207 with AMX
// hidden by its hypervisor (86 against 176 GFLOP/s per core, matching what oneDNN's bf16 GEMMs
// reached there against its float ones); an AMD EPYC Zen 5 ran ViT-B/16 in bf16 at ~1.9x its
// float rate (README, "Speed on any x86 CPU").
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "cpu_info.h"
#include "train_config.h"

namespace {

struct DecisionRow {
  const char* name;
  bool avx512_bf16, amx_bf16;
  double dot_vs_fma;
  bool fast;
  bool gemm_on_float_units;  // onednn_linear.h: bf16 GEMMs as float GEMMs on the bf16 values
};

class Bf16Decision : public ::testing::TestWithParam<DecisionRow> {};

TEST_P(Bf16Decision, FollowsTheMeasuredRateNotTheInstruction) {
  const auto& row = GetParam();
  vit::Bf16Support s;
  s.avx512_bf16 = row.avx512_bf16;
  s.amx_bf16 = row.amx_bf16;
  s.dot_vs_fma = row.dot_vs_fma;
  EXPECT_EQ(s.fast(), row.fast);
  EXPECT_EQ(s.any(), row.avx512_bf16 || row.amx_bf16);
  EXPECT_EQ(s.gemm_on_float_units(), row.gemm_on_float_units);
}

INSTANTIATE_TEST_SUITE_P(
    Rows, Bf16Decision,
    ::testing::Values(DecisionRow{"none", false, false, 0, false, true},
                      // the Intel model 207 of 2026-12-06: AVX512_BF16 at half the float rate
                      DecisionRow{"half_rate", true, false, 0.49, false, true},
                      DecisionRow{"gemm_just_below", true, false, vit::kBf16GemmOnFloatRatio - 0.01, false, true},
                      DecisionRow{"gemm_at_threshold", true, false, vit::kBf16GemmOnFloatRatio, false, false},
                      DecisionRow{"equal_rate", true, false, 1.0, false, false},
                      DecisionRow{"just_below", true, false, vit::kFastBf16Ratio - 0.01, false, false},
                      DecisionRow{"at_threshold", true, false, vit::kFastBf16Ratio, true, false},
                      DecisionRow{"double_rate", true, false, 2.0, true, false},
                      // AMX's tiles decide, whatever the vector unit does
                      DecisionRow{"amx_half_rate_vectors", true, true, 0.49, true, false},
                      DecisionRow{"amx_only", false, true, 0, true, false}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Bf16Probe, MeasuresARateOnlyWhereTheInstructionExists) {
  const auto& s = vit::bf16_support();
  if (!s.avx512_bf16) {
    EXPECT_EQ(s.dot_vs_fma, 0.0);
    EXPECT_EQ(vit::measure_bf16_dot_vs_fma(), 0.0);
    GTEST_SKIP() << "this CPU has no AVX512_BF16 (" << s.describe() << "): nothing to measure";
  }
  // A dot product of bf16 pairs does 2x the lanes of a float FMA; no core retires it at more than
  // twice the FMA's instruction rate or at less than a tenth of it.
  EXPECT_GT(s.dot_vs_fma, 0.1);
  EXPECT_LT(s.dot_vs_fma, 8.0);
  // The rates themselves: one core of any AVX-512 CPU does between 10 and 1,000 GFLOP/s of FMAs
  // (16 lanes x 2 FLOPs x 1-2 per cycle at 0.5-6 GHz: 16-384).
  EXPECT_GT(s.fma_gflops, 10.0);
  EXPECT_LT(s.fma_gflops, 1000.0);
  EXPECT_NEAR(s.dot_gflops / s.fma_gflops, s.dot_vs_fma, 1e-9);
}

// The float FMA peak `vit train` states its FLOP rate against: measured on every x86 CPU with
// FMA, on the widest registers the CPU and OS allow.
TEST(Bf16Probe, MeasuresTheFloatFmaPeakOnTheWidestRegisters) {
  const auto& s = vit::bf16_support();
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("fma")) GTEST_SKIP() << "this CPU has no FMA: no float FMA peak";
  EXPECT_EQ(s.fma_bits, __builtin_cpu_supports("avx512f") ? 512 : 256);
  // Lanes x 2 FLOPs x 1-2 FMAs a cycle at 0.5-6 GHz: 8-192 GFLOP/s on 256-bit registers, 16-384
  // on 512-bit ones (measured: 93-103 on a Zen 3 core, 176 on the Intel model 207's).
  const double lanes = s.fma_bits / 32.0;
  EXPECT_GT(s.fma_gflops, lanes * 2 * 0.5) << s.fma_bits << "-bit";
  EXPECT_LT(s.fma_gflops, lanes * 2 * 2 * 6) << s.fma_bits << "-bit";
  if (!s.avx512_bf16) EXPECT_EQ(s.dot_gflops, 0.0);
#else
  EXPECT_EQ(s.fma_gflops, 0.0);
#endif
}

TEST(Bf16Probe, IsRepeatable) {
  // auto precision must not flip between two processes on one machine (two ranks of one run).
  const double first = vit::measure_bf16_dot_vs_fma();
  if (first == 0) GTEST_SKIP() << "no AVX512_BF16 here";
  for (int i = 0; i < 3; ++i) {
    const double again = vit::measure_bf16_dot_vs_fma();
    EXPECT_NEAR(again / first, 1.0, 0.25) << first << " then " << again;
    // and far enough from the threshold that the decision is the same each time
    EXPECT_EQ(again >= vit::kFastBf16Ratio, first >= vit::kFastBf16Ratio);
  }
}

TEST(Bf16Probe, AutoPrecisionFollowsIt) {
  const auto& s = vit::bf16_support();
  EXPECT_EQ(vit::resolve_precision("auto"), s.fast() ? "bf16" : "fp32") << s.describe();
  EXPECT_EQ(vit::resolve_precision("bf16"), "bf16");  // asked for: kept, slow or not
  EXPECT_EQ(vit::resolve_precision("fp32"), "fp32");
  EXPECT_EQ(vit::cpu_has_fast_bf16(), s.fast());
  EXPECT_EQ(vit::cpu_has_bf16(), s.any());
}

TEST(Bf16Probe, DescribesWhatDecided) {
  vit::Bf16Support s;
  EXPECT_EQ(s.describe(), "no bf16 instructions");
  s.avx512_bf16 = true;
  s.dot_vs_fma = 0.49;
  EXPECT_EQ(s.describe(), "AVX512_BF16 dot products at 0.49x the float FMA rate, no AMX");
  s.amx_bf16 = true;
  EXPECT_EQ(s.describe(), "AVX512_BF16 dot products at 0.49x the float FMA rate, AMX-BF16");
}

}  // namespace
