#include "model_flags.h"

#include "commands.h"
#include "schema_flags.h"
#include "train_config.h"

namespace vit::cli {

nlohmann::json flag_value(const FieldSpec& spec, const std::string& flag, const std::string& text) {
  auto whole = [&](const std::string& item) {
    try {
      size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used == item.size()) return nlohmann::json(v);
    } catch (const std::exception&) {
    }
    throw UsageError(flag + " must be a whole number (got '" + item + "')");
  };
  auto real = [&](const std::string& item) {
    try {
      size_t used = 0;
      const double v = std::stod(item, &used);
      if (used == item.size()) return nlohmann::json(v);
    } catch (const std::exception&) {
    }
    throw UsageError(flag + " must be a number (got '" + item + "')");
  };
  switch (spec.kind) {
    case FieldKind::Int: return whole(text);
    case FieldKind::Real: return real(text);
    case FieldKind::Bool: return nlohmann::json(text != "false" && text != "0");
    case FieldKind::Text: return nlohmann::json(text);
    case FieldKind::Choice: {
      for (const auto& c : spec.choices)
        if (c == text) return nlohmann::json(text);
      std::string list;
      for (size_t i = 0; i < spec.choices.size(); ++i)
        list += (i == 0 ? "" : i + 1 == spec.choices.size() ? " or " : ", ") + spec.choices[i];
      throw UsageError(flag + " must be " + list + " (got '" + text + "')");
    }
    case FieldKind::IntList:
    case FieldKind::RealList: {
      nlohmann::json list = nlohmann::json::array();
      std::stringstream in(text);
      for (std::string item; std::getline(in, item, ',');) {
        if (item.empty()) continue;
        list.push_back(spec.kind == FieldKind::IntList ? whole(item) : real(item));
      }
      return list;
    }
  }
  return nullptr;
}

namespace {
std::vector<std::string> g_arguments;
}  // namespace

void set_program_arguments(int argc, char** argv) { g_arguments.assign(argv, argv + argc); }
const std::vector<std::string>& program_arguments() { return g_arguments; }

ModelFlags::ModelFlags() : fields(std::make_unique<SchemaFlags<ViTConfig>>()) {}
ModelFlags::~ModelFlags() = default;

bool ModelFlags::preset_given() const { return preset_option && preset_option->count() > 0; }
std::set<std::string> ModelFlags::given() const { return fields->given(); }

void add_model_flags(CLI::App& cmd, ModelFlags& f) {
  std::string names;
  for (const auto& p : presets()) names += (names.empty() ? "" : ", ") + p.name;
  f.preset_option = cmd.add_option("--preset", f.preset, "Model preset: " + names)->capture_default_str();
  f.fields->add(cmd, vit_schema(), /*defaults=*/nullptr);
}

ViTConfig apply_model_flags(const ModelFlags& f, ViTConfig c) {
  const int preset_dim = c.dim, preset_mlp = c.mlp_hidden;
  f.fields->apply(c);
  const auto given = f.given();
  // Keep the preset's MLP ratio when only the width changes.
  if (given.count("dim") && !given.count("mlp_hidden") && preset_dim > 0 && c.dim > 0)
    c.mlp_hidden = static_cast<int>(int64_t(preset_mlp) * c.dim / preset_dim);
  return c;
}

ViTConfig resolve(const ModelFlags& f) {
  ViTConfig c;
  try {
    c = preset(f.preset).config;
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  c = apply_model_flags(f, c);
  const auto errors = validate(c);
  if (!errors.empty()) throw UsageError(with_flag(errors.front(), f.given()));
  return c;
}

std::string with_flag(const ConfigError& e, const std::set<std::string>& given) {
  if (!given.count(e.field)) return e.message;
  const auto* m = find_field(vit_schema(), e.field);
  const auto* t = find_field(train_schema(), e.field);
  const std::string flag = m ? m->spec.cli_flags().front() : t ? t->spec.cli_flags().front() : "";
  return flag.empty() ? e.message : flag + ": " + e.message;
}

}  // namespace vit::cli
