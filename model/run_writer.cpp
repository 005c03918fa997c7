#include <torch/optim/optimizer.h>
#include <torch/serialize.h>

#include "run_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "atomic_file.h"
#include "checkpoint.h"
#include "tensorboard.h"
#include "vit.h"

namespace vit {

namespace fs = std::filesystem;

std::string serialize_optimizer(torch::optim::Optimizer& optimizer) {
  std::ostringstream out(std::ios::binary);
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  archive.save_to(out);
  return out.str();
}

void load_optimizer(torch::optim::Optimizer& optimizer, const std::string& path, c10::Device device) {
  try {
    torch::load(optimizer, path, device);
  } catch (const c10::Error& e) {
    throw std::runtime_error(path + " is not a readable optimizer state (" +
                             std::string(e.what_without_backtrace()).substr(0, 200) +
                             "): the run cannot be continued from this checkpoint");
  }
}

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path, int err) {
  std::string hint;
  if (err == ENOSPC || err == EDQUOT) hint = ": free some disk space, then continue the run";
  throw std::runtime_error("cannot " + what + " " + path + ": " + std::strerror(err) + hint);
}

void sync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// Makes `link` a symbolic link to `target`, replacing whatever is there in one rename(2).
void replace_with_symlink(const std::string& target, const std::string& link) {
  std::error_code ec;
  if (fs::is_symlink(link, ec) && fs::read_symlink(link, ec).string() == target) return;
  const std::string tmp = (fs::path(link).parent_path() /
                           ("." + fs::path(link).filename().string() + ".tmp-link")).string();
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) != 0) fail("create the link", tmp, errno);
  if (::rename(tmp.c_str(), link.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("switch", link, err);
  }
}

bool is_leftover(const std::string& name) {
  // write_file_atomically's temporaries (".NAME.tmpN"), our link temporaries, unfinished steps.
  return (name.size() > 1 && name[0] == '.' && name.find(".tmp") != std::string::npos) ||
         (name.rfind("step-", 0) == 0 && name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0);
}

}  // namespace

RunWriter::RunWriter(const std::string& run_dir, bool enabled, const std::string& program)
    : enabled_(enabled), paths_(run_dir), program_(program) {}

RunWriter::~RunWriter() = default;

void RunWriter::open_logs() {
  tensorboard_ = std::make_unique<TensorBoardWriter>(paths_.dir);
  steps_.open(paths_.steps(), std::ios::app);
  if (!steps_) fail("open", paths_.steps(), errno ? errno : EIO);
}

void RunWriter::create(const nlohmann::json& config) {
  if (!enabled_) return;
  std::error_code ec;
  fs::create_directories(paths_.checkpoints(), ec);
  if (ec) fail("create", paths_.checkpoints(), ec.value());
  lock_ = std::make_unique<RunLock>(paths_.dir, program_);
  if (RunReader::is_run(paths_.dir))
    throw std::invalid_argument(paths_.dir + " already holds a run: continue it (--resume " +
                                paths_.dir + ") or choose another --out");
  // Class names come from folder names, which need not be UTF-8: replace what is not, rather
  // than fail after the data has loaded.
  write_file_atomically(paths_.config(),
                        config.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  metric_rows_.clear();
  write_metrics();
  write_file_atomically(paths_.steps(), std::string(kStepsHeader) + "\n");
  open_logs();
}

void RunWriter::remove_leftovers() {
  std::error_code ec;
  const RunReader reader(paths_.dir);
  std::string keep;
  if (fs::is_symlink(paths_.current(), ec)) keep = fs::read_symlink(paths_.current(), ec).filename().string();
  for (const std::string& dir : {paths_.dir, paths_.checkpoints()}) {
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      const bool stale_step = dir == paths_.checkpoints() && name.rfind("step-", 0) == 0 &&
                              name != keep && !keep.empty();
      if (is_leftover(name) || stale_step) fs::remove_all(entry.path(), ec);
    }
  }
}

void RunWriter::reopen(const RunState& state) {
  if (!enabled_) return;
  lock_ = std::make_unique<RunLock>(paths_.dir, program_);
  remove_leftovers();
  // Rows after the checkpoint belong to work that is about to be redone.
  metric_rows_.clear();
  for (const auto& row : read_metrics_csv(paths_.metrics()))
    if (row.epoch < state.epoch) metric_rows_.push_back(format_row(row));
  write_metrics();
  std::string steps = std::string(kStepsHeader) + "\n";
  for (const auto& row : read_steps_csv(paths_.steps()))
    if (row.step <= state.global_step) steps += format_row(row) + "\n";
  write_file_atomically(paths_.steps(), steps);
  open_logs();
}

void RunWriter::write_metrics() {
  std::string text = std::string(kMetricsHeader) + "\n";
  for (const auto& r : metric_rows_) text += r + "\n";
  write_file_atomically(paths_.metrics(), text);
}

void RunWriter::log_step(const StepRow& row) {
  if (!enabled_) return;
  const std::string line = format_row(row) + "\n";
  steps_ << line.substr(0, line.size() / 2);
  steps_.flush();
  crash_point("half a steps.csv row written");
  steps_ << line.substr(line.size() / 2);
  steps_.flush();
  if (!steps_) fail("append to", paths_.steps(), errno ? errno : EIO);
  tensorboard_->add_scalar("train/loss", row.loss, row.step);
  tensorboard_->add_scalar("train/accuracy", row.accuracy, row.step);
  tensorboard_->add_scalar("train/lr", row.lr, row.step);
}

void RunWriter::log_epoch(const EpochRow& e, int64_t global_step) {
  if (!enabled_) return;
  metric_rows_.push_back(format_row(e));
  write_metrics();
  tensorboard_->add_scalar("epoch/loss", e.loss, global_step);
  tensorboard_->add_scalar("epoch/accuracy", e.accuracy, global_step);
  tensorboard_->add_scalar("epoch/val_loss", e.val_loss, global_step);
  tensorboard_->add_scalar("epoch/val_accuracy", e.val_accuracy, global_step);
  tensorboard_->add_scalar("epoch/val_top5_accuracy", e.val_top5_accuracy, global_step);
  tensorboard_->flush();
}

bool RunWriter::has_checkpoint() const {
  return !RunReader(paths_.dir).weights(Weights::Last).empty();
}

void RunWriter::commit(VisionTransformerImpl& model, const Normalization& normalization,
                       torch::optim::Optimizer* optimizer, const RunState& state, bool best,
                       const std::map<std::string, std::string>& metadata, VisionTransformerImpl* average) {
  if (!enabled_) return;
  std::error_code ec;
  const RunReader reader(paths_.dir);
  const std::string previous_best = reader.weights(Weights::Best, /*fallback=*/false);

  // A new step directory (a fresh name even when this step was committed before).
  std::string unit = paths_.step_dir(state.global_step);
  for (int n = 1; fs::exists(unit, ec); ++n) unit = paths_.step_dir(state.global_step) + "." + std::to_string(n);
  const std::string tmp = unit + ".tmp";
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) fail("create", tmp, ec.value());
  try {
    std::map<std::string, std::string> meta = metadata;
    meta["epoch"] = std::to_string(state.epoch);
    meta["global_step"] = std::to_string(state.global_step);
    const std::string last = (fs::path(tmp) / "last.safetensors").string();
    save_checkpoint(last, model, normalization, meta);
    if (optimizer)
      write_file_atomically((fs::path(tmp) / "last.optim.pt").string(), serialize_optimizer(*optimizer));
    std::string averaged;
    if (average) {
      auto average_meta = meta;
      average_meta["weights"] = "exponential moving average (ema_decay)";
      averaged = (fs::path(tmp) / "ema.safetensors").string();
      save_checkpoint(averaged, *average, normalization, average_meta);
    }
    const std::string best_file = (fs::path(tmp) / "best.safetensors").string();
    const std::string best_source = best ? (average ? averaged : last) : previous_best;
    if (!best_source.empty() && ::link(best_source.c_str(), best_file.c_str()) != 0)
      fail("link", best_file, errno);
    write_file_atomically((fs::path(tmp) / "state.json").string(), state.to_json().dump(2) + "\n");
    sync_dir(tmp);
    crash_point("a checkpoint's step directory written, not yet renamed");
    if (::rename(tmp.c_str(), unit.c_str()) != 0) fail("rename", tmp, errno);
    crash_point("a checkpoint's step directory in place, not yet current");
    sync_dir(paths_.checkpoints());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  // The commit point: `current` names the new unit.
  const std::string unit_name = fs::path(unit).filename().string();
  try {
    replace_with_symlink(unit_name, paths_.current());
  } catch (...) {
    fs::remove_all(unit, ec);
    throw;
  }
  sync_dir(paths_.checkpoints());
  crash_point("a checkpoint made current, its links not yet updated");
  // The fixed names users and older readers open, each a link through `current`. A run from
  // before this layout has regular files there: replacing them now is safe, the unit is committed.
  replace_with_symlink("current/last.safetensors", paths_.last_weights());
  if (fs::exists(fs::path(unit) / "best.safetensors", ec))
    replace_with_symlink("current/best.safetensors", paths_.best_weights());
  if (optimizer) replace_with_symlink("current/last.optim.pt", paths_.last_optimizer());
  if (average) replace_with_symlink("current/ema.safetensors", paths_.average_weights());
  replace_with_symlink("checkpoints/current/state.json", paths_.state());
  sync_dir(paths_.dir);
  crash_point("a checkpoint's links updated, older step directories not yet removed");
  // Earlier units: the best weights live on in the new unit's hard link.
  for (const auto& entry : fs::directory_iterator(paths_.checkpoints(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("step-", 0) == 0 && name != unit_name) fs::remove_all(entry.path(), ec);
  }
}

void RunWriter::write_test(const nlohmann::json& test) {
  if (!enabled_) return;
  write_file_atomically(paths_.test(), test.dump(2) + "\n");
}

void RunWriter::flush() {
  if (!enabled_) return;
  if (steps_.is_open()) steps_.flush();
  if (tensorboard_) tensorboard_->flush();
}

}  // namespace vit
