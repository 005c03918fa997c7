// `vit summary`: the per-layer table with parameters and MACs, optionally a forward benchmark.
#include "commands.h"

#include <cstdio>
#include <iostream>

#include "benchmark.h"
#include "config_json.h"
#include "onednn_linear.h"
#include "runtime.h"
#include "summary.h"

namespace vit::cli {

namespace {

struct SummaryOptions {
  ModelFlags model;
  bool json = false;
  bool benchmark = false;
  int threads = 0;
  std::string precision = "fp32";
};

int run_summary(const SummaryOptions& o) {
  const ViTConfig config = resolve(o.model);
  const ModelSummary summary = summarize(config);
  nlohmann::json out = to_json(summary);
  out["preset"] = o.model.preset;
  if (!o.json) std::cout << "Preset " << o.model.preset << "\n" << format_table(summary);

  if (o.benchmark) {
    const RuntimeInfo runtime = configure_runtime(o.threads);
    if (!runtime.warning.empty()) std::cerr << "vit: warning: " << runtime.warning << "\n";
    if (o.precision != "fp32" && o.precision != "bf16")
      throw UsageError("--precision must be fp32 or bf16 (got '" + o.precision + "')");
    if (o.precision == "bf16" && !bf16_support().fast())
      std::cerr << "vit: note: bf16 is slower than fp32 on this CPU (" << bf16_support().describe()
                << "); measuring it anyway\n";
    const auto timings = benchmark_forward(config, {1, 8}, 2.0, o.precision == "bf16");
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& t : timings) {
      rows.push_back({{"batch", t.batch},
                      {"runs", t.runs},
                      {"latency_ms", t.latency_ms},
                      {"images_per_second", t.images_per_second},
                      {"gflops", t.gflops}});
    }
    out["benchmark"] = {{"runtime", describe(runtime)},
                        {"threads", runtime.threads},
                        {"cpu", runtime.cpu},
                        {"blas_core", runtime.blas_core},
                        {"blas_core_source", runtime.blas_core_source},
                        {"blas_check_error", runtime.blas_check_error},
                        {"onednn_isa", runtime.onednn_isa},
                        {"allocator", runtime.allocator},
                        {"huge_pages", runtime.huge_pages},
                        {"bf16", bf16_support().describe()},
                        {"bf16_dot_vs_fma", bf16_support().dot_vs_fma},
                        {"core_fp32_fma_gflops", bf16_support().fma_gflops},
                        {"core_bf16_dot_gflops", bf16_support().dot_gflops},
                        {"bf16_faster_than_fp32", bf16_support().fast()},
                        {"bf16_gemms_on_float_units", bf16_gemms_on_float_units()},
                        {"precision", o.precision},
                        {"forward", rows}};
    if (!o.json) {
      std::cout << "\nForward benchmark, " << o.precision << " (" << describe(runtime) << ")\n";
      for (const auto& t : timings) {
        std::printf("  batch %2d: %9.2f ms  %8.1f images/s  %7.1f GFLOP/s  (median of %d)\n",
                    t.batch, t.latency_ms, t.images_per_second, t.gflops, t.runs);
      }
    }
  }
  if (o.json) std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

void add_summary_command(CLI::App& app, SetAction set_action) {
  auto options = std::make_shared<SummaryOptions>();
  auto* cmd = app.add_subcommand("summary", "Show the layers, parameters, MACs and FLOPs of a ViT");
  add_model_flags(*cmd, options->model);
  cmd->add_flag("--json", options->json, "Print one JSON object instead of the table");
  cmd->add_flag("--benchmark", options->benchmark,
                "Also time forward passes at batch 1 and 8 and report GFLOP/s");
  cmd->add_option("--threads", options->threads, "Intra-op threads (default: one per core)");
  cmd->add_option("--precision", options->precision,
                  "--benchmark in fp32, or bf16 (weights and input converted to bfloat16 once)")
      ->capture_default_str();
  cmd->callback([options, set_action] { set_action([options] { return run_summary(*options); }); });
}

}  // namespace vit::cli
