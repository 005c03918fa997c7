// Command-line flags from a settings schema (model/settings_schema.h): one flag per field, named
// --field-name (or the field's own spelling, e.g. --classes), with its doc as help. Values are
// kept as text while parsing and converted through the field's JSON setter afterwards, so range
// messages come from the core's validate(), the same words the window shows. Bool fields get
// --name and --no-name.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>

#include "model_flags.h"  // UsageError
#include "settings_schema.h"

namespace vit::cli {

// The JSON value a flag's text stands for; throws UsageError naming the flag.
nlohmann::json flag_value(const FieldSpec& spec, const std::string& flag, const std::string& text);

template <class C>
class SchemaFlags {
 public:
  // Adds a flag for every field of `schema` but those in `except` (fields a command sets
  // another way). `defaults` gives the help's default values (nullptr: "the preset's").
  void add(CLI::App& cmd, const Schema<C>& schema, const C* defaults,
           const std::set<std::string>& except = {}) {
    schema_ = &schema;
    for (const auto& f : schema) {
      if (except.count(f.spec.name)) continue;
      auto slot = std::make_shared<Slot>();
      slot->field = &f;
      slot->flag = f.spec.cli_flags().front();
      std::string names;
      for (const auto& n : f.spec.cli_flags()) names += (names.empty() ? "" : ",") + n;
      std::string help = f.spec.doc;
      if (defaults) {
        const auto d = f.get(*defaults);
        help += " (default: " + (d.is_string() ? d.template get<std::string>() : d.dump()) + ")";
      }
      if (f.spec.kind == FieldKind::Bool) {
        names += ",!--no-" + slot->flag.substr(2);
        slot->option = cmd.add_flag(names, slot->on, help);
      } else {
        slot->option = cmd.add_option(names, slot->text, help);
        if (f.spec.kind == FieldKind::Choice) {
          std::string choices;
          for (const auto& c : f.spec.choices) choices += (choices.empty() ? "" : "|") + c;
          slot->option->type_name(choices);
        }
      }
      slots_.push_back(slot);
    }
  }

  // Names of the fields given on the command line.
  std::set<std::string> given() const {
    std::set<std::string> names;
    for (const auto& s : slots_)
      if (s->option->count() > 0) names.insert(s->field->spec.name);
    return names;
  }
  bool given(const std::string& name) const { return given().count(name) > 0; }

  // Writes every given flag into `config`. Throws UsageError for a value of the wrong form.
  void apply(C& config) const {
    for (const auto& s : slots_) {
      if (s->option->count() == 0) continue;
      const auto value = s->field->spec.kind == FieldKind::Bool
                             ? nlohmann::json(s->on)
                             : flag_value(s->field->spec, s->flag, s->text);
      try {
        s->field->set(config, value);
      } catch (const std::exception&) {
        throw UsageError(s->flag + " " + s->text + " is out of range for " + s->field->spec.name);
      }
    }
  }

 private:
  struct Slot {
    const Field<C>* field = nullptr;
    std::string flag, text;
    bool on = false;
    CLI::Option* option = nullptr;
  };
  const Schema<C>* schema_ = nullptr;
  std::vector<std::shared_ptr<Slot>> slots_;
};

}  // namespace vit::cli
