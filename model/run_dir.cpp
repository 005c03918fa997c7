#include "run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace vit {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Paths

RunPaths::RunPaths(std::string run_dir) : dir(std::move(run_dir)) {}

namespace {
std::string join(const std::string& a, const std::string& b) { return (fs::path(a) / b).string(); }
}  // namespace

std::string RunPaths::config() const { return join(dir, "config.json"); }
std::string RunPaths::metrics() const { return join(dir, "metrics.csv"); }
std::string RunPaths::steps() const { return join(dir, "steps.csv"); }
std::string RunPaths::test() const { return join(dir, "test.json"); }
std::string RunPaths::state() const { return join(dir, "state.json"); }
std::string RunPaths::lock() const { return join(dir, ".lock"); }
std::string RunPaths::checkpoints() const { return join(dir, "checkpoints"); }
std::string RunPaths::current() const { return join(checkpoints(), "current"); }
std::string RunPaths::best_weights() const { return join(checkpoints(), "best.safetensors"); }
std::string RunPaths::last_weights() const { return join(checkpoints(), "last.safetensors"); }
std::string RunPaths::last_optimizer() const { return join(checkpoints(), "last.optim.pt"); }
std::string RunPaths::average_weights() const { return join(checkpoints(), "ema.safetensors"); }
std::string RunPaths::step_dir(int64_t global_step) const {
  char name[40];
  std::snprintf(name, sizeof name, "step-%09lld", static_cast<long long>(global_step));
  return join(checkpoints(), name);
}

// ---------------------------------------------------------------------------------------------
// State

nlohmann::json RunState::to_json() const {
  return {{"epoch", epoch},
          {"step_in_epoch", step_in_epoch},
          {"global_step", global_step},
          {"best_val_accuracy", best_val_accuracy},
          {"best_epoch", best_epoch},
          {"finished", finished},
          {"epoch_seconds", epoch_seconds},
          {"epoch_loss_sum", epoch_loss_sum},
          {"epoch_top1", epoch_top1},
          {"epoch_top5", epoch_top5},
          {"epoch_count", epoch_count},
          {"elapsed_seconds", elapsed_seconds},
          {"world_size", world_size}};
}

namespace {

[[noreturn]] void damaged(const std::string& what, const std::string& problem) {
  throw std::runtime_error(what + " is damaged (" + problem +
                           "): the run cannot be continued from it. Start a new run, or restore "
                           "the file from a backup");
}

// A whole number in [lo, hi] (a JSON float that is whole counts: other writers may emit 3.0).
int64_t whole(const nlohmann::json& j, const char* key, int64_t lo, int64_t hi,
              const std::string& what, std::optional<int64_t> fallback = std::nullopt) {
  if (!j.contains(key)) {
    if (fallback) return *fallback;
    damaged(what, std::string("no '") + key + "'");
  }
  const auto& v = j.at(key);
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(hi))
      damaged(what, std::string(key) + " " + v.dump() + " is out of range");
    const int64_t i = v.is_number_unsigned() ? int64_t(v.get<uint64_t>()) : v.get<int64_t>();
    if (i < lo || i > hi) damaged(what, std::string(key) + " " + v.dump() + " is out of range");
    return i;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && d >= double(lo) && d <= double(hi))
      return int64_t(d);
    damaged(what, std::string(key) + " " + v.dump() + " is not a whole number in range");
  }
  damaged(what, std::string(key) + " is " + v.dump() + ", not a number");
}

double number(const nlohmann::json& j, const char* key, double lo, double hi, const std::string& what,
              double fallback) {
  if (!j.contains(key)) return fallback;
  const auto& v = j.at(key);
  if (!v.is_number()) damaged(what, std::string(key) + " is " + v.dump() + ", not a number");
  const double d = v.get<double>();
  if (!(d >= lo && d <= hi)) damaged(what, std::string(key) + " " + v.dump() + " is out of range");
  return d;
}

}  // namespace

RunState RunState::from_json(const nlohmann::json& j, const std::string& what) {
  if (!j.is_object()) damaged(what, "not a JSON object");
  constexpr int64_t kMaxSteps = int64_t(1) << 50;
  RunState s;
  s.epoch = int(whole(j, "epoch", 0, 100000, what));
  s.step_in_epoch = whole(j, "step_in_epoch", 0, kMaxSteps, what);
  s.global_step = whole(j, "global_step", 0, kMaxSteps, what);
  s.best_val_accuracy = number(j, "best_val_accuracy", -1.0, 1.0, what, -1.0);
  s.best_epoch = int(whole(j, "best_epoch", -1, 100000, what, -1));
  if (j.contains("finished")) {
    if (!j["finished"].is_boolean()) damaged(what, "finished is not true or false");
    s.finished = j["finished"].get<bool>();
  }
  s.epoch_seconds = number(j, "epoch_seconds", 0, 1e12, what, 0);
  s.epoch_loss_sum = number(j, "epoch_loss_sum", -1e300, 1e300, what, 0);
  s.epoch_count = whole(j, "epoch_count", 0, kMaxSteps, what, 0);
  s.epoch_top1 = whole(j, "epoch_top1", 0, s.epoch_count, what, 0);
  s.epoch_top5 = whole(j, "epoch_top5", s.epoch_top1, s.epoch_count, what, 0);
  s.elapsed_seconds = number(j, "elapsed_seconds", 0, 1e12, what, 0);
  s.world_size = int(whole(j, "world_size", 1, 1 << 20, what, 1));
  if (s.best_epoch >= s.epoch)
    damaged(what, "best_epoch " + std::to_string(s.best_epoch) + " is not an epoch already done");
  if (s.global_step < s.step_in_epoch)
    damaged(what, "global_step " + std::to_string(s.global_step) + " is below step_in_epoch " +
                      std::to_string(s.step_in_epoch));
  return s;
}

// ---------------------------------------------------------------------------------------------
// Reader

RunReader::RunReader(std::string run_dir) : paths_(std::move(run_dir)) {}

bool RunReader::is_run(const std::string& run_dir) {
  std::error_code ec;
  return fs::is_regular_file(RunPaths(run_dir).config(), ec);
}

RunInfo RunReader::info() const { return read_run(paths_.dir); }

std::string RunReader::committed_dir() const {
  std::error_code ec;
  const fs::path link(paths_.current());
  if (!fs::is_symlink(link, ec)) return "";
  const fs::path target = fs::read_symlink(link, ec);
  if (ec) return "";
  const fs::path dir = target.is_absolute() ? target : link.parent_path() / target;
  return fs::is_directory(dir, ec) ? dir.string() : "";
}

std::optional<RunState> RunReader::state() const {
  const std::string unit = committed_dir();
  const std::string path = unit.empty() ? paths_.state() : join(unit, "state.json");
  std::ifstream in(path);
  if (!in) return std::nullopt;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    damaged(path, std::string("not valid JSON: ") + e.what());
  }
  return RunState::from_json(j, path);
}

std::string RunReader::weights(Weights which, bool fallback) const {
  std::error_code ec;
  const std::string unit = committed_dir();
  const std::string best = unit.empty() ? paths_.best_weights() : join(unit, "best.safetensors");
  const std::string last = unit.empty() ? paths_.last_weights() : join(unit, "last.safetensors");
  const std::string& first = which == Weights::Best ? best : last;
  const std::string& second = which == Weights::Best ? last : best;
  if (fs::is_regular_file(first, ec)) return first;
  if (fallback && fs::is_regular_file(second, ec)) return second;
  return "";
}

std::string RunReader::committed_file(const std::string& name, const std::string& legacy) const {
  std::error_code ec;
  const std::string unit = committed_dir();
  const std::string path = unit.empty() ? legacy : join(unit, name);
  return fs::is_regular_file(path, ec) ? path : "";
}

std::string RunReader::optimizer() const { return committed_file("last.optim.pt", paths_.last_optimizer()); }

std::string RunReader::average_weights() const {
  return committed_file("ema.safetensors", paths_.average_weights());
}

std::vector<EpochRow> RunReader::metrics() const { return read_metrics_csv(paths_.metrics()); }
std::vector<StepRow> RunReader::steps() const { return read_steps_csv(paths_.steps()); }

std::optional<nlohmann::json> RunReader::test() const {
  std::ifstream in(paths_.test());
  if (!in) return std::nullopt;
  auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

std::string run_dir_of_weights(const std::string& weights_path) {
  std::error_code ec;
  fs::path p = fs::absolute(weights_path, ec).parent_path();
  for (int up = 0; up < 2 && !p.empty(); ++up) {
    if (p.filename() == "checkpoints" && RunReader::is_run(p.parent_path().string()))
      return p.parent_path().string();
    p = p.parent_path();
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Lock

std::string LockHolder::describe() const {
  std::ostringstream out;
  out << (program.empty() ? "another process" : program) << " (pid " << pid;
  if (!host.empty()) out << " on " << host;
  if (!since.empty()) out << ", since " << since;
  out << ")";
  return out.str();
}

namespace {

std::optional<LockHolder> read_holder(int fd) {
  std::string text;
  char buf[512];
  ::lseek(fd, 0, SEEK_SET);
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0 && text.size() < 4096;) text.append(buf, size_t(n));
  LockHolder h;
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    if (j.contains("pid") && j["pid"].is_number_integer()) h.pid = j["pid"].get<int64_t>();
    if (j.contains("host") && j["host"].is_string()) h.host = j["host"];
    if (j.contains("program") && j["program"].is_string()) h.program = j["program"];
    if (j.contains("since") && j["since"].is_string()) h.since = j["since"];
  }
  return h;
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

}  // namespace

RunLock::RunLock(const std::string& run_dir, const std::string& program) {
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  const std::string path = RunPaths(run_dir).lock();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno) +
                             ": choose a writable run directory (--out)");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const auto holder = err == EWOULDBLOCK ? read_holder(fd_) : std::nullopt;
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      throw std::runtime_error(run_dir + " is being written by " + holder->describe() +
                               ": wait for it to finish (or stop it), or choose another run directory");
    throw std::runtime_error("cannot lock " + path + ": " + std::strerror(err));
  }
  const nlohmann::json info = {{"pid", int64_t(::getpid())},
                               {"host", hostname()},
                               {"program", program},
                               {"since", utc_timestamp()}};
  const std::string text = info.dump() + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    ::lseek(fd_, 0, SEEK_SET);
    [[maybe_unused]] const ssize_t n = ::write(fd_, text.data(), text.size());
  }
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

std::optional<LockHolder> run_lock_holder(const std::string& run_dir) {
  const std::string path = RunPaths(run_dir).lock();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::optional<LockHolder> holder;
  if (::flock(fd, LOCK_SH | LOCK_NB) == 0) {
    ::flock(fd, LOCK_UN);
  } else if (errno == EWOULDBLOCK) {
    holder = read_holder(fd);
  }
  ::close(fd);
  return holder;
}

// ---------------------------------------------------------------------------------------------
// Preparing a run

namespace {

std::string flag_of(const std::string& field) {
  if (const auto* f = find_field(vit_schema(), field)) return f->spec.cli_flags().front();
  if (const auto* f = find_field(train_schema(), field)) return f->spec.cli_flags().front();
  return field;
}

template <class C>
void keep_run_settings(const Schema<C>& schema, const C& requested, C& run,
                       const std::set<std::string>& given) {
  for (const auto& f : schema) {
    if (!given.count(f.spec.name)) continue;
    const auto want = f.get(requested), have = f.get(run);
    if (want == have) continue;
    if (f.spec.resumable) {
      f.set(run, want);
      continue;
    }
    throw std::invalid_argument(
        f.spec.name + " cannot change when a run is continued (the run has " + have.dump() +
        ", asked for " + want.dump() + "): drop " + flag_of(f.spec.name) +
        ", or start a new run with the new value");
  }
}

}  // namespace

void discard_unstarted_run(const std::string& run_dir) {
  const RunReader reader(run_dir);
  if (!RunReader::is_run(run_dir) || reader.state() || !reader.weights(Weights::Last).empty()) return;
  const RunPaths p(run_dir);
  std::error_code ec;
  for (const auto& f : {p.config(), p.metrics(), p.steps(), p.test()}) fs::remove(f, ec);
  for (const auto& e : fs::directory_iterator(run_dir, ec))
    if (e.path().filename().string().find("tfevents") != std::string::npos) fs::remove(e.path(), ec);
}

std::string new_run_dir(const std::string& root, const std::string& name) {
  char stamp[32];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  const std::string base = (fs::path(root) / ((name.empty() ? "custom" : name) + "-" + stamp)).string();
  std::error_code ec;
  std::string dir = base;
  for (int n = 2; fs::exists(dir, ec); ++n) dir = base + "-" + std::to_string(n);
  return dir;
}

PreparedRun prepare_run(const RunRequest& r) {
  PreparedRun run;
  std::error_code ec;
  if (!r.resume_dir.empty()) {
    if (!RunReader::is_run(r.resume_dir))
      throw std::invalid_argument(r.resume_dir + " is not a run directory (no config.json): give "
                                  "the directory `vit train` or the window wrote");
    const RunReader reader(r.resume_dir);
    RunInfo info;
    std::optional<RunState> state;
    try {
      info = reader.info();
      state = reader.state();
    } catch (const std::runtime_error& e) {
      throw std::invalid_argument(e.what());
    }
    if (!state)
      throw std::invalid_argument(r.resume_dir + " has no checkpoint to continue from (it stopped "
                                  "before its first one was saved): start it again as a new run");
    run.model = info.model;
    run.train = info.train;
    for (const auto& f : train_schema())  // a limit of the call that wrote the run ends with it
      if (f.spec.per_call) f.set(run.train, f.get(TrainConfig{}));
    keep_run_settings(vit_schema(), r.model, run.model, r.given);
    keep_run_settings(train_schema(), r.train, run.train, r.given);
    if (run.train.epochs < state->epoch + (state->step_in_epoch > 0 ? 1 : 0))
      throw std::invalid_argument("epochs " + std::to_string(run.train.epochs) + " is fewer than the " +
                                  std::to_string(state->epoch) + " the run has done: give --epochs " +
                                  std::to_string(state->epoch + 1) + " or more to train further");
    if (state->finished && run.train.epochs <= state->epoch)
      throw std::invalid_argument(r.resume_dir + " has already finished all its " +
                                  std::to_string(state->epoch) + " epochs: start a new run, or "
                                  "raise --epochs to train it further");
    if (run.train.epochs != info.train.epochs)
      run.notes.push_back("epochs changed from " + std::to_string(info.train.epochs) + " to " +
                          std::to_string(run.train.epochs) + ": the learning-rate schedule "
                          "stretches to the new length from here on");
    run.dir = r.resume_dir;
    run.resume = true;
  } else {
    run.model = r.model;
    run.train = r.train;
    if (!r.out_dir.empty()) {
      if (fs::exists(r.out_dir, ec) && !fs::is_directory(r.out_dir, ec))
        throw std::invalid_argument(r.out_dir + " is a file, not a directory: choose another --out");
      if (RunReader::is_run(r.out_dir))
        throw std::invalid_argument(r.out_dir + " already holds a run: continue it (--resume " +
                                    r.out_dir + ") or choose another --out");
      run.dir = r.out_dir;
    } else {
      run.dir = new_run_dir(r.runs_root, r.name);
    }
  }
  check(run.model);
  if (auto errors = validate(run.train); !errors.empty())
    throw std::invalid_argument(errors.front().message);
  return run;
}

void fit_to_data(PreparedRun& run, const std::set<std::string>& given, int channels, int classes) {
  auto fit = [&](const char* field, int& value, int data, const char* what) {
    if (value == data) return;
    if (run.resume)
      throw std::invalid_argument("the data set has " + std::to_string(data) + " " + what +
                                  " but the run's model has " + std::to_string(value) +
                                  ": continue it on the data it was trained on (--dataset)");
    if (given.count(field))
      throw std::invalid_argument(flag_of(field) + " " + std::to_string(value) +
                                  " but the data set has " + std::to_string(data) + " " + what +
                                  ": drop the flag to follow the data");
    run.notes.push_back(std::string("model ") + (std::string(field) == "in_channels" ? "input" : "head") +
                        " set to " + std::to_string(data) + " " + what + " to match the data");
    value = data;
  };
  fit("in_channels", run.model.in_channels, channels, "channel(s)");
  fit("num_classes", run.model.num_classes, classes, "classes");
  check(run.model);
}

}  // namespace vit
