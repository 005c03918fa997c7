// `vit import` and `vit export`: pretrained weights in (timm / Hugging Face safetensors, PyTorch
// .pth/.bin state_dicts, Google .npz) as a run directory, and a run's weights out as a safetensors
// file Python loads with no key changes. Also the model config `vit train --init` builds.
#include <torch/types.h>  // torch before anything that might pull Qt-like macros

#include "commands.h"

#include <cstdio>
#include <iostream>
#include <sstream>

#include "config_json.h"
#include "runtime.h"
#include "summary.h"
#include "weights_io.h"

namespace vit::cli {

namespace {

std::vector<float> parse_floats(const std::string& text, const char* flag) {
  std::vector<float> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    try {
      size_t used = 0;
      out.push_back(std::stof(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw UsageError(std::string(flag) + " must be numbers separated by commas, e.g. "
                       "0.485,0.456,0.406 (got '" + text + "')");
    }
  }
  if (out.empty()) throw UsageError(std::string(flag) + " needs at least one number");
  return out;
}

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string floats(const std::vector<float>& v) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < v.size(); ++i) out << (i ? ", " : "") << v[i];
  return out.str() + "]";
}

std::string describe_model(const ViTConfig& c, const std::string& heads_source) {
  std::ostringstream out;
  out << "dim " << c.dim << ", depth " << c.depth << ", heads " << c.heads;
  if (!heads_source.empty()) out << " (" << heads_source << ")";
  out << ", patch " << c.patch_size << ", image " << c.image_size << "x" << c.image_size << "x"
      << c.in_channels << ", MLP " << c.mlp_hidden << ", "
      << (c.num_classes > 0 ? std::to_string(c.num_classes) + " classes" : std::string("no head"))
      << (c.class_token ? ", class token" : ", no class token") << ", " << to_string(c.pool)
      << " pooling" << (c.qkv_bias ? ", qkv bias" : "");
  return out.str();
}

// A JSON object of timm kwargs as Python source: img_size=224, qkv_bias=True, ...
std::string python_kwargs(const std::string& json_text) {
  const auto j = nlohmann::json::parse(json_text);
  std::string out;
  for (const auto& [key, value] : j.items()) {
    std::string v = value.dump();
    if (value.is_boolean()) v = value.get<bool>() ? "True" : "False";
    else if (value.is_string()) v = "'" + value.get<std::string>() + "'";
    out += (out.empty() ? "" : ", ") + key + "=" + v;
  }
  return out;
}

struct ImportCli {
  std::string file, out, mean, std;
  std::optional<int> heads, classes;
  bool json = false;
};

int run_import(const ImportCli& o) {
  ImportOptions options;
  options.heads = o.heads;
  ImportedWeights w = import_weights(o.file, options);
  if (!o.mean.empty() || !o.std.empty()) {
    if (o.mean.empty() || o.std.empty()) throw UsageError("give --mean and --std together");
    Normalization n{parse_floats(o.mean, "--mean"), parse_floats(o.std, "--std")};
    if (n.mean.size() != n.std.size()) throw UsageError("give as many --mean values as --std values");
    for (float s : n.std)
      if (!(s > 0)) throw UsageError("every --std value must be positive");
    w.normalization = adapt_normalization(n, w.config.in_channels);
    w.normalization_source = "given";
  }
  ViTConfig config = w.config;
  if (o.classes) config.num_classes = *o.classes;
  if (config.num_classes == 0)
    throw UsageError(o.file + " has no classification head (a feature extractor): give --classes "
                     "N to add a new, untrained head, or fine-tune it directly with "
                     "`vit train --init " + o.file + "`");
  if (const auto errors = validate(config); !errors.empty()) throw UsageError(errors.front().message);
  const PretrainedLoad r = write_imported_run(w, config, o.out);
  std::vector<std::string> notes = w.notes;
  notes.insert(notes.end(), r.notes.begin(), r.notes.end());
  const int64_t params = summarize(config).params;

  if (o.json) {
    std::cout << nlohmann::json{{"run_dir", o.out},
                                {"file", w.path},
                                {"format", to_string(w.format)},
                                {"naming", w.naming},
                                {"config", to_json(config)},
                                {"params", params},
                                {"has_head", w.has_head},
                                {"new_head", r.new_head},
                                {"heads_source", w.heads_source},
                                {"normalization",
                                 {{"mean", w.normalization.mean},
                                  {"std", w.normalization.std},
                                  {"source", w.normalization_source}}},
                                {"notes", notes}}
                     .dump()
              << std::endl;
    return 0;
  }
  std::printf("imported %s (%s, %s names)\n", w.path.c_str(), to_string(w.format), w.naming.c_str());
  std::printf("  model: %s\n", describe_model(config, w.heads_source).c_str());
  std::printf("  parameters: %s\n", with_commas(params).c_str());
  std::printf("  preprocessing: mean %s, std %s (%s)\n", floats(w.normalization.mean).c_str(),
              floats(w.normalization.std).c_str(), w.normalization_source.c_str());
  for (const auto& n : notes) std::printf("  note: %s\n", n.c_str());
  std::printf("run: %s  (evaluate: vit eval --run %s --dataset SPEC; fine-tune: vit train --init %s)\n",
              o.out.c_str(), o.out.c_str(), o.out.c_str());
  return 0;
}

struct ExportCli {
  std::string run, out;
  bool json = false;
};

int run_export(const ExportCli& o) {
  const std::string ext = ".safetensors";
  if (o.out.size() <= ext.size() || o.out.compare(o.out.size() - ext.size(), ext.size(), ext) != 0)
    throw UsageError("--out must name a .safetensors file (got '" + o.out + "')");
  const ExportResult r = export_weights(o.run, o.out);
  for (const auto& w : r.warnings) std::cerr << "vit: warning: " << w << "\n";
  const auto cfg = nlohmann::json::parse(r.metadata.at("pretrained_cfg"));
  const std::string arch = cfg.at("architecture").get<std::string>();
  const std::string kwargs = python_kwargs(r.metadata.at("timm_model_args"));
  if (o.json) {
    std::cout << nlohmann::json{{"file", o.out},
                                {"checkpoint", r.checkpoint},
                                {"tensors", r.tensors},
                                {"params", r.parameters},
                                {"pretrained_cfg", cfg},
                                {"timm_model_args", nlohmann::json::parse(r.metadata.at("timm_model_args"))},
                                {"warnings", r.warnings}}
                     .dump()
              << std::endl;
    return 0;
  }
  std::printf("exported %lld tensors (%s parameters) from %s to %s, with timm names\n",
              static_cast<long long>(r.tensors), with_commas(r.parameters).c_str(),
              r.checkpoint.c_str(), o.out.c_str());
  std::printf("in Python:\n"
              "  import timm, safetensors.torch\n"
              "  model = timm.create_model('%s', %s)\n"
              "  model.load_state_dict(safetensors.torch.load_file('%s'))\n"
              "or: timm.create_model('%s', pretrained=True, pretrained_cfg_overlay=dict(file='%s', "
              "num_classes=%d), %s)\n"
              "preprocessing (also in the file's metadata 'pretrained_cfg'): mean %s, std %s\n",
              arch.c_str(), kwargs.c_str(), o.out.c_str(), arch.c_str(), o.out.c_str(),
              cfg.at("num_classes").get<int>(), kwargs.c_str(),
              cfg.at("mean").dump().c_str(), cfg.at("std").dump().c_str());
  return 0;
}

}  // namespace

ViTConfig pretrained_model_config(const std::string& init, const ModelFlags& f) {
  const auto given = f.given();
  const ViTConfig requested = apply_model_flags(f, preset(kDefaultPreset).config);
  ImportOptions options;
  if (given.count("heads")) options.heads = requested.heads;
  const ImportedWeights w = import_weights(init, options);
  try {
    ViTConfig c = finetuned_config(w.config, requested, given, init);
    if (const auto errors = validate(c); !errors.empty()) throw UsageError(with_flag(errors.front(), given));
    return c;
  } catch (const UsageError&) {
    throw;
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
}

void add_weights_commands(CLI::App& app, SetAction set_action) {
  auto i = std::make_shared<ImportCli>();
  auto* imp = app.add_subcommand(
      "import", "Import pretrained ViT weights (timm/Hugging Face safetensors, .pth/.bin, Google "
                ".npz) as a run directory");
  imp->add_option("file", i->file, "Weights file")->required();
  imp->add_option("--out", i->out, "Run directory to write")->required();
  imp->add_option("--heads", i->heads, "Attention heads, when the file cannot tell (non-standard widths)");
  imp->add_option("--classes", i->classes, "Classes of a new head (needed when the file has none)");
  imp->add_option("--mean", i->mean, "Preprocessing mean per channel, e.g. 0.485,0.456,0.406");
  imp->add_option("--std", i->std, "Preprocessing std per channel, e.g. 0.229,0.224,0.225");
  imp->add_flag("--json", i->json, "Print one JSON object");
  imp->callback([i, set_action] { set_action([i] { return run_import(*i); }); });

  auto e = std::make_shared<ExportCli>();
  auto* exp = app.add_subcommand(
      "export", "Export a run's weights as safetensors with timm names, for Python");
  exp->add_option("--run", e->run, "Run directory (its best weights) or a .safetensors checkpoint")
      ->required();
  exp->add_option("--out", e->out, "Output .safetensors file")->required();
  exp->add_flag("--json", e->json, "Print one JSON object");
  exp->callback([e, set_action] { set_action([e] { return run_export(*e); }); });
}

}  // namespace vit::cli
