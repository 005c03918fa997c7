#include <torch/torch.h>

#include "trainer.h"

#include <chrono>
#include <cmath>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "checkpoint.h"
#include "data_parallel.h"
#include "datasets.h"
#include "device.h"
#include "distributed.h"
#include "dropout.h"
#include "dropout_stream.h"
#include "finetune.h"
#include "fused_attention.h"
#include "onednn_linear.h"  // bf16_gemms_on_float_units
#include "param_groups.h"
#include "run_writer.h"
#include "settings_schema.h"
#include "runtime.h"
#include "summary.h"  // training_macs
#include "vit.h"
#include "weights_import.h"

namespace vit {

using Clock = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------------------------------------
// Evaluation

// On the CPU, float logits are counted in one pass here: a label is in the top k when fewer than
// k logits of its row are larger. The same counts as topk where no logit of the row equals the
// label's or is NaN (then topk's order among equals decides, and the batch goes the tensor way).
// The tensor way is ~12 ATen ops, 72-81 µs a step on an Intel Xeon model 207 (0.4% of an
// fmnist-small step, serial between the parallel parts); this ~1-2 µs.
std::optional<torch::Tensor> host_batch_stats(const torch::Tensor& logits, const torch::Tensor& labels,
                                              const torch::Tensor& loss_sum, bool stop_vote) {
  if (!logits.is_cpu() || logits.scalar_type() != torch::kFloat || logits.dim() != 2 || !labels.is_cpu() ||
      labels.scalar_type() != torch::kLong || labels.dim() != 1 || labels.size(0) != logits.size(0))
    return std::nullopt;
  const auto x = logits.contiguous();
  const auto y = labels.contiguous();
  const int64_t B = x.size(0), C = x.size(1), k = std::min<int64_t>(5, C);
  const float* p = x.data_ptr<float>();
  const int64_t* lab = y.data_ptr<int64_t>();
  int64_t top1 = 0, topk = 0;
  for (int64_t i = 0; i < B; ++i) {
    const float* row = p + i * C;
    const int64_t l = lab[i];
    if (l < 0 || l >= C) return std::nullopt;  // the tensor way counts it as a miss
    const float v = row[l];
    int64_t larger = 0;
    for (int64_t j = 0; j < C; ++j) {
      if (std::isnan(row[j]) || (j != l && row[j] == v)) return std::nullopt;
      larger += row[j] > v;
    }
    top1 += larger == 0;
    topk += larger < k;
  }
  return torch::tensor({loss_sum.item<double>(), double(top1), double(topk), double(B), stop_vote ? 1.0 : 0.0},
                       torch::kDouble);
}

}  // namespace

uint64_t step_random_seed(uint64_t seed, int64_t step) {
  return dropout_chunk_start(splitmix64_mix(seed ^ 0x64726f706f757473ULL), step);
}

bool patch_drop_active(const TrainConfig& c, int epoch) { return epoch < c.epochs - c.full_token_epochs; }

// Built and summed without reading anything back from a GPU, so it never waits for them; the
// trainer reads them every log_every steps.
torch::Tensor batch_stats(const torch::Tensor& logits, const torch::Tensor& labels,
                          const torch::Tensor& loss_sum, bool stop_vote) {
  if (auto host = host_batch_stats(logits, labels, loss_sum, stop_vote)) return *host;
  const int64_t k = std::min<int64_t>(5, logits.size(1));
  auto hits = std::get<1>(logits.topk(k, 1)).eq(labels.unsqueeze(1));  // (B, k)
  const auto options = logits.options().dtype(torch::kDouble);
  return torch::stack({loss_sum.to(torch::kDouble), hits.select(1, 0).sum().to(torch::kDouble),
                       hits.any(1).sum().to(torch::kDouble),
                       torch::full({}, double(labels.size(0)), options),
                       torch::full({}, stop_vote ? 1.0 : 0.0, options)});
}

namespace {

struct Accumulator {
  double loss_sum = 0;
  int64_t top1 = 0, top5 = 0, count = 0;
  // A row of batch_stats, on the host.
  void add(const double* stats) {
    loss_sum += stats[0];
    top1 += int64_t(stats[1]);
    top5 += int64_t(stats[2]);
    count += int64_t(stats[3]);
  }
  void add(const Accumulator& other) {
    loss_sum += other.loss_sum;
    top1 += other.top1;
    top5 += other.top5;
    count += other.count;
  }
  // The same counts summed over every rank of `group` (no-op without one).
  void all_reduce(ProcessGroup* group, const std::string& what) {
    if (!group) return;
    auto t = torch::tensor({loss_sum, double(top1), double(top5), double(count)}, torch::kDouble);
    group->all_reduce_sum(t, what);
    const auto v = t.accessor<double, 1>();
    loss_sum = v[0], top1 = int64_t(v[1]), top5 = int64_t(v[2]), count = int64_t(v[3]);
  }
  EvalResult result() const {
    EvalResult r;
    r.count = count;
    if (count > 0) {
      r.loss = loss_sum / count;
      r.accuracy = double(top1) / count;
      r.top5_accuracy = double(top5) / count;
    }
    return r;
  }
};

// Loss, top-1 and top-5 over `indices`; with a group each rank takes its contiguous share of
// them and the counts are summed.
EvalResult evaluate(VisionTransformer& model, const Dataset& data, std::vector<int64_t> indices,
                    const Normalization& norm, int batch_size, bool data_parallel,
                    ProcessGroup* group = nullptr, const std::string& what = "evaluation",
                    c10::Device device = c10::kCPU, bool bf16 = false) {
  if (group) {
    const int64_t n = int64_t(indices.size()), r = group->rank(), w = group->size();
    indices = std::vector<int64_t>(indices.begin() + n * r / w, indices.begin() + n * (r + 1) / w);
  }
  model->eval();
  torch::NoGradGuard no_grad;
  LoaderOptions o;
  o.batch_size = batch_size;
  o.image_size = model->config().image_size;
  o.normalization = norm;
  o.shuffle = false;
  o.pin_memory = device.is_cuda();
  o.low_priority = device.is_cpu();
  DataLoader loader(data, indices, o);
  if (!indices.empty()) loader.start_epoch(0);
  Accumulator acc;
  if (!indices.empty()) {
    auto sum = torch::zeros({5}, torch::TensorOptions().dtype(torch::kDouble).device(device));
    while (auto batch = loader.next()) {
      const auto images = batch->images.to(device, /*non_blocking=*/true);
      const auto labels = batch->labels.to(device, /*non_blocking=*/true);
      auto logits = predict_logits(model, images, data_parallel, bf16);
      sum += batch_stats(logits, labels, torch::cross_entropy_loss(logits, labels, {}, at::Reduction::Sum));
    }
    acc.add(sum.cpu().contiguous().data_ptr<double>());
  }
  acc.all_reduce(group, what);
  return acc.result();
}

std::vector<int64_t> all_rows(const Dataset& d) {
  std::vector<int64_t> rows(d.size());
  std::iota(rows.begin(), rows.end(), 0);
  return rows;
}

// Every parameter, then every buffer.
std::vector<torch::Tensor> model_tensors(VisionTransformerImpl& model) {
  std::vector<torch::Tensor> out;
  for (const auto& p : model.parameters()) out.push_back(p);
  for (const auto& b : model.buffers()) out.push_back(b);
  return out;
}

// The values of `from`'s parameters and buffers into `to`'s (the same architecture).
void copy_tensors(VisionTransformerImpl& from, VisionTransformerImpl& to) {
  torch::NoGradGuard no_grad;
  const auto a = model_tensors(from), b = model_tensors(to);
  for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
}

double lr_at(const TrainConfig& c, int64_t step, int64_t total, int64_t steps_per_epoch) {
  const double warmup = c.warmup_epochs * steps_per_epoch;
  if (step < warmup) return c.lr * (step + 1) / warmup;
  const double span = std::max(1.0, total - warmup);
  const double progress = std::min(1.0, (step - warmup) / span);
  return c.min_lr + (c.lr - c.min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

// Seconds of work, pauses left out.
class ActiveClock {
 public:
  double seconds() const {
    return std::chrono::duration<double>(Clock::now() - start_).count() - paused_;
  }
  void add_pause(double s) { paused_ += s; }

 private:
  Clock::time_point start_ = Clock::now();
  double paused_ = 0;
};

// ---------------------------------------------------------------------------------------------
// One call of train(): setup, loop, finish.

// What rank 0 reads or decides in a step of the setup, for every rank: the state, the
// normalization and the shard count, or the error that stops them all.
struct SetupShare {
  std::string error;
  RunState state;
  Normalization norm;
  int shards = 1;
  bool has_optimizer_state = false;
  std::string precision;  // rank 0's resolved precision ("fp32" or "bf16")
};

class Training {
 public:
  Training(const PreparedRun& run, const DataSplits& data, const TrainCallbacks& cb, ProcessGroup* group)
      : run_(run), data_(data), cb_(cb), group_(group), rank_(group ? group->rank() : 0),
        world_(group ? group->size() : 1), writer_(run.dir, /*enabled=*/rank_ == 0) {}

  TrainResult run() {
    setup();
    try {
      while (state_.epoch < tc_.epochs && !stop_) {
        if (!train_epoch()) break;
        end_epoch();
      }
      finish();
    } catch (const DistributedError&) {
      // The weights are those of the last completed step (the failed collective came before the
      // optimizer): rank 0 keeps them, so the run continues from there.
      if (rank_ == 0 && read_statistics() && committed_step_ != state_.global_step) {
        try {
          commit(/*best=*/false);
          say("kept the last completed step (" + std::to_string(state_.global_step) + ") in " + run_.dir);
        } catch (const std::exception& e) {
          say(std::string("could not keep the last completed step: ") + e.what());
        }
      }
      throw;
    }
    return result_;
  }

 private:
  void say(const std::string& m) const {
    if (cb_.on_message) cb_.on_message(m);
  }

  // --- setup ----------------------------------------------------------------------------------

  // Runs `work` on rank 0 and shares its outcome: an error there stops every rank with it.
  void on_rank0(const std::function<void()>& work, SetupShare& share, const std::string& what) {
    std::exception_ptr failure;
    if (rank_ == 0) {
      try {
        work();
      } catch (const std::exception& e) {
        if (!group_) throw;
        failure = std::current_exception();
        share.error = e.what();
      }
    }
    if (!group_) return;
    nlohmann::json j = {{"error", share.error},
                        {"state", share.state.to_json()},
                        {"mean", share.norm.mean},
                        {"std", share.norm.std},
                        {"shards", share.shards},
                        {"has_optimizer_state", share.has_optimizer_state},
                        {"precision", share.precision}};
    j = nlohmann::json::parse(group_->broadcast_string(j.dump(), what));
    if (failure) std::rethrow_exception(failure);
    if (!j["error"].get<std::string>().empty())
      throw std::runtime_error("rank 0: " + j["error"].get<std::string>());
    share.state = RunState::from_json(j["state"], "rank 0's state");
    share.norm = {json_to<std::vector<float>>(j["mean"]), json_to<std::vector<float>>(j["std"])};
    share.shards = j["shards"];
    share.has_optimizer_state = j["has_optimizer_state"];
    share.precision = j["precision"];
  }

  void setup() {
    model_config_ = run_.model;
    tc_ = run_.train;
    check(model_config_);
    if (auto errors = validate(tc_); !errors.empty()) throw std::invalid_argument(errors.front().message);
    requested_precision_ = tc_.precision;
    tc_.precision = resolve_precision(tc_.precision);  // config.json records what ran
    bf16_ = tc_.precision == "bf16";
    const Dataset& full = data_.train;
    if (full.size() < 2) throw std::invalid_argument("the training set needs at least 2 images");
    if (int64_t(full.classes.size()) != model_config_.num_classes)
      throw std::invalid_argument("the data set has " + std::to_string(full.classes.size()) +
                                  " classes but the model has " +
                                  std::to_string(model_config_.num_classes) +
                                  " outputs: use --classes " + std::to_string(full.classes.size()));
    if (full.images.size(1) != model_config_.in_channels)
      throw std::invalid_argument("the data set has " + std::to_string(full.images.size(1)) +
                                  " channel(s) but the model expects " +
                                  std::to_string(model_config_.in_channels) + ": use --channels " +
                                  std::to_string(full.images.size(1)));
    if (tc_.batch_size < world_)
      throw std::invalid_argument("batch_size " + std::to_string(tc_.batch_size) + " is smaller than the " +
                                  std::to_string(world_) + " processes: give every rank at least one image (--batch-size " +
                                  std::to_string(world_) + " or more)");
    device_ = resolve_device(tc_.device, group_ ? group_->env().local_rank : 0);
    split();

    // Rank 0 reads the run (or the pretrained weights) and decides the normalization.
    std::optional<ImportedWeights> init;  // fine-tuning: the pretrained weights to start from
    const RunReader reader(run_.dir);
    SetupShare share;
    on_rank0([&] {
      if (run_.resume) {
        const auto state = reader.state();
        if (!state) throw std::invalid_argument(run_.dir + " has no checkpoint to continue from");
        share.state = *state;
        share.norm = reader.info().normalization;
      } else {
        if (!tc_.init_weights.empty())
          init = import_weights(tc_.init_weights, ImportOptions{model_config_.heads});
        if (!tc_.mean.empty()) share.norm = {tc_.mean, tc_.std};
        else if (init) share.norm = adapt_normalization(init->normalization, model_config_.in_channels);  // theirs
        else share.norm = compute_normalization(full, train_rows_);  // Keras Normalization.adapt
        if (int(share.norm.mean.size()) != model_config_.in_channels)
          throw std::invalid_argument("give one mean/std value per channel (" +
                                      std::to_string(model_config_.in_channels) + ")");
      }
      // Every rank runs as many shards as rank 0, so the global shard layout agrees.
      share.shards = shard_count(tc_.data_parallel, std::max<int64_t>(1, tc_.batch_size / world_), device_);
      // ... and in rank 0's arithmetic: `auto` may resolve otherwise on another machine's CPU.
      share.precision = tc_.precision;
    }, share, "the run's state");
    state_ = share.state;
    norm_ = share.norm;
    shards_ = share.shards;
    if (group_ && share.precision != tc_.precision) {
      say("rank " + std::to_string(rank_) + ": precision " + share.precision + " as rank 0 (this " +
          "rank resolved " + tc_.precision + "; every rank runs rank 0's arithmetic)");
      tc_.precision = share.precision;
      bf16_ = tc_.precision == "bf16";
    }

    torch::manual_seed(tc_.seed);
    model_ = VisionTransformer(model_config_);
    if (init) {
      say("starting from " + init->path + " (" + init->naming + " names)");
      for (const auto& note : load_pretrained(*model_, *init).notes) say(note);
      init.reset();  // release the file's tensors
    }
    if (tc_.freeze_backbone)
      say("backbone frozen: training the head only (" + std::to_string(freeze_backbone(*model_)) +
          " parameters fixed)");
    model_->to(device_);  // before the optimizer takes the parameters
    // AdamW groups: decay / no decay (timm), split by layer when layer_decay < 1.
    std::vector<torch::optim::OptimizerParamGroup> groups;
    for (auto& g : param_groups(*model_, tc_.weight_decay, tc_.layer_decay)) {
      groups.emplace_back(g.params, std::make_unique<torch::optim::AdamWOptions>(
                                        torch::optim::AdamWOptions(tc_.lr).weight_decay(g.weight_decay)));
      lr_scales_.push_back(g.lr_scale);
    }
    optimizer_ = std::make_unique<torch::optim::AdamW>(std::move(groups), torch::optim::AdamWOptions(tc_.lr));
    for (const auto& p : model_->parameters())
      if (p.requires_grad()) params_.push_back(p);
    if (tc_.ema_decay > 0) {
      // The moving average: a second model that validation and the test run, its tensors
      // starting as the weights' (a continued run loads its own below).
      average_ = VisionTransformer(model_config_);
      average_->to(device_);
      average_->eval();
      torch::NoGradGuard no_grad;
      for (const auto& p : average_->parameters()) p.requires_grad_(false);
      copy_tensors(*model_, *average_);
      averaged_ = model_tensors(*model_);
      averages_ = model_tensors(*average_);
    }

    LoaderOptions lo;
    lo.batch_size = tc_.batch_size;
    lo.image_size = model_config_.image_size;
    lo.normalization = norm_;
    lo.augment = tc_.augment;
    lo.shuffle = true;
    lo.drop_last = int64_t(train_rows_.size()) > tc_.batch_size;  // keep batch statistics steady
    lo.seed = tc_.seed;
    lo.part = rank_;
    lo.parts = world_;
    lo.pin_memory = device_.is_cuda();
    lo.low_priority = device_.is_cpu();
    loader_ = std::make_unique<DataLoader>(full, train_rows_, lo);
    steps_per_epoch_ = loader_->batches_per_epoch();
    total_steps_ = steps_per_epoch_ * tc_.epochs;

    // Rank 0 restores the checkpoint or writes the new run's config.json.
    SetupShare opened;
    opened.state = state_;
    opened.norm = norm_;
    opened.shards = shards_;
    on_rank0([&] {
      if (run_.resume) {
        // A checkpoint taken after an epoch's last step and before its validation has
        // step_in_epoch == steps per epoch: the epoch's validation runs first.
        if (state_.step_in_epoch > steps_per_epoch_ && !state_.finished)
          throw std::runtime_error(RunPaths(run_.dir).state() + " is damaged (step_in_epoch " +
                                   std::to_string(state_.step_in_epoch) + " is beyond the " +
                                   std::to_string(steps_per_epoch_) + " steps of an epoch): the run "
                                   "cannot be continued from it");
        load_weights(reader.weights(Weights::Last), *model_);
        const std::string optim = reader.optimizer();
        if (optim.empty())
          throw std::runtime_error(run_.dir + " has no optimizer state (checkpoints/last.optim.pt) "
                                   "to continue from");
        load_optimizer(*optimizer_, optim, device_);
        if (!adamw_states_fit(*optimizer_)) {
          optimizer_->state().clear();
          say("note: " + optim + " was written by another LibTorch release whose optimizer state "
              "this one maps onto the wrong parameters; Adam's moments start afresh (the weights, "
              "step and schedule continue)");
        }
        opened.has_optimizer_state = true;
        if (average_) {
          const std::string ema = reader.average_weights();
          if (!ema.empty()) {
            try {
              load_weights(ema, *average_);
            } catch (const std::exception& e) {
              // The weights and the optimizer state are whole, so the run can go on without the
              // average; say how rather than leave a run that cannot be continued.
              throw std::runtime_error(std::string(e.what()) + "; the moving average of the weights "
                                       "cannot be continued from it: remove " + ema + " and run the "
                                       "same command again to continue with the average restarted "
                                       "from the last weights");
            }
          } else {  // a checkpoint without it (damaged, or from a writer that did not keep one)
            copy_tensors(*model_, *average_);
            say("note: " + run_.dir + " has no moving average of the weights (checkpoints/"
                "ema.safetensors) to continue; it starts again from the last weights");
          }
        }
        writer_.reopen(state_);
      } else {
        RunData d;
        d.spec = tc_.dataset;
        d.name = full.name;
        d.classes = full.classes;
        d.train_size = int64_t(train_rows_.size());
        d.val_size = int64_t(val_rows_.size());
        d.test_size = data_.test ? data_.test->size() : 0;
        // The machine it ran on: the CPU, the BLAS and its kernel set, oneDNN's instruction set.
        writer_.create(run_config_json(model_config_, tc_, norm_, d, world_,
                                       {{"runtime", nlohmann::json::parse(runtime_json())}}));
      }
    }, opened, "opening the run directory");
    if (run_.resume) {
      committed_step_ = state_.global_step;
      for (const auto& n : run_.notes) say(n);
      say("resumed " + run_.dir + " at epoch " + std::to_string(state_.epoch + 1) + ", step " +
          std::to_string(state_.global_step));
    }
    if (group_) share_model(opened.has_optimizer_state);

    epoch_acc_.loss_sum = state_.epoch_loss_sum;
    epoch_acc_.top1 = state_.epoch_top1;
    epoch_acc_.top5 = state_.epoch_top5;
    epoch_acc_.count = state_.epoch_count;
    epoch_seconds_before_ = state_.epoch_seconds;

    if (!device_.is_cpu()) say("training on " + describe_device(device_));
    if (device_.is_cpu()) {
      // Why this precision, on this CPU: bf16 instructions are not always faster than float ones.
      const Bf16Support& cpu = bf16_support();
      if (requested_precision_ == "auto" && cpu.any())
        say("precision auto: " + tc_.precision + " (bf16 is " + (cpu.fast() ? "faster" : "slower") +
            " than fp32 on this CPU: " + cpu.describe() + ")");
      else if (bf16_ && !cpu.fast())
        say("bf16 will be slower than fp32 on this CPU (" + cpu.describe() +
            "): --precision fp32 or auto trains faster here");
    }
    if (device_.is_cpu() && model_config_.attn_dropout > 0.0) {
      // Attention dropout runs inside the fused attention kernels where they cover the heads;
      // elsewhere attention runs as ATen ops, several times slower in bf16 (fused_attention.h).
      const auto type = bf16_ ? at::kBFloat16 : at::kFloat;
      const auto kernels = fused_attention_kernels(model_config_.num_tokens(), model_config_.head_dim(), type);
      if (!fused_attention_drops_out(model_config_.num_tokens(), model_config_.head_dim(), type))
        say("attention dropout " + format_number(model_config_.attn_dropout) + " runs as separate ATen ops " +
            "here, slower than fused attention: this model's heads (" + std::to_string(model_config_.num_tokens()) +
            " tokens of " + std::to_string(model_config_.head_dim()) + " features) run on " + kernels +
            ", and dropout is fused only into our own kernels (up to 256 tokens, heads of up to 64 "
            "features in whole vectors); --attn-dropout 0 keeps attention fused");
    }
    if (bf16_)
      say(std::string("mixed precision: bf16 matrix products") +
          (device_.is_cpu() && bf16_gemms_on_float_units()
               ? " (the linear layers' on the float units: bf16 values widened, one rounding per result)"
               : "") +
          ", float weights and optimizer");
    if (average_)
      say("moving average of the weights (ema_decay " + format_number(tc_.ema_decay) +
          "): validation, the best checkpoint and the test use it");
    if (group_)
      say("distributed data parallel: " + std::to_string(world_) + " processes, each batch of " +
          std::to_string(tc_.batch_size) + " split into " + std::to_string(world_ * shards_) +
          " shards (" + std::to_string(shards_) + " per process)");
    else if (shards_ > 1)
      say("data parallel: each batch of " + std::to_string(tc_.batch_size) + " runs as " +
          std::to_string(shards_) + " shards on " + std::to_string(shards_) + " threads");
    result_.run_dir = run_.dir;
    if (cb_.on_ready) cb_.on_ready();
  }

  // Every rank starts from rank 0's weights and optimizer state (as DDP does: the same seed
  // initializes alike in C++, but not across languages or from a file only rank 0 read), and its
  // gradients become views of one flat buffer whose tail carries the step's statistics.
  void share_model(bool optimizer_state) {
    torch::NoGradGuard no_grad;
    auto weights = model_tensors(*model_);
    weights.insert(weights.end(), averages_.begin(), averages_.end());
    group_->broadcast(weights, "the model's weights");
    if (optimizer_state) {
      std::vector<torch::Tensor> tensors;
      std::vector<double> steps;
      const auto states = adamw_states(*optimizer_);
      for (auto* st : states) {
        tensors.push_back(st->exp_avg());
        tensors.push_back(st->exp_avg_sq());
        steps.push_back(double(st->step()));
      }
      auto step_tensor = torch::tensor(steps, torch::kDouble);
      tensors.push_back(step_tensor);
      group_->broadcast(tensors, "the optimizer's state");
      const auto v = step_tensor.accessor<double, 1>();
      for (size_t i = 0; i < states.size(); ++i) states[i]->step(int64_t(v[int64_t(i)]));
    }
    int64_t total = 0;
    for (const auto& p : params_) total += p.numel();
    flat_ = torch::zeros({total + kStats}, torch::TensorOptions().dtype(torch::kFloat).device(device_));
    int64_t offset = 0;
    for (auto& p : params_) {
      p.mutable_grad() = flat_.narrow(0, offset, p.numel()).view(p.sizes());
      offset += p.numel();
    }
    stats_ = flat_.narrow(0, total, kStats);
    // Batches are full (drop_last) unless the whole training split fits in one.
    const int64_t batch = std::min<int64_t>(tc_.batch_size, int64_t(train_rows_.size()));
    layout_ = {batch, rank_ * shards_, shards_, world_ * shards_, /*into_grads=*/true};
  }

  // Seeded split: the same seed always holds out the same validation images.
  void split() {
    const Dataset& full = data_.train;
    std::vector<int64_t> order = all_rows(full);
    std::mt19937_64 split_rng(tc_.seed);
    std::shuffle(order.begin(), order.end(), split_rng);
    const int64_t n_val =
        tc_.val_fraction > 0 ? std::max<int64_t>(1, int64_t(full.size() * tc_.val_fraction)) : 0;
    val_rows_.assign(order.begin(), order.begin() + n_val);
    train_rows_.assign(order.begin() + n_val, order.end());
    std::sort(val_rows_.begin(), val_rows_.end());
  }

  // --- the loop -------------------------------------------------------------------------------

  // Between steps: Pause blocks (its time is not training time); false for Stop.
  bool poll_continue() {
    if (!cb_.poll) return true;
    Control c = cb_.poll();
    if (c == Control::Pause) {
      const auto paused = Clock::now();
      while (c == Control::Pause) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        c = cb_.poll();
      }
      clock_.add_pause(std::chrono::duration<double>(Clock::now() - paused).count());
    }
    return c != Control::Stop;
  }

  // What the FLOP rate is measured against: the float FMA peak of the cores this process trains
  // on (cpu_info.h), where its GEMMs run on the float units (fp32, or bf16 widened to float); 0
  // where it is not known (a GPU, bf16 dot products or AMX tiles, the other ranks' machines).
  double peak_flops_per_second() const {
    if (!device_.is_cpu() || group_ || (bf16_ && !bf16_gemms_on_float_units())) return 0;
    return bf16_support().fma_gflops * 1e9 * at::get_num_threads();
  }

  void stop_with(const char* reason) {
    result_.stop_reason = reason;
    stop_ = true;
  }

  // The epoch's training steps; false when the run stops inside it.
  bool train_epoch() {
    epoch_start_ = clock_.seconds();
    mark_ = epoch_start_;
    loader_->start_epoch(state_.epoch, state_.step_in_epoch);
    model_->train();
    model_->enable_patch_drop(patch_drop_active(tc_, state_.epoch));
    step_flops_ = 2.0 * double(training_macs(model_config_, patch_drop_active(tc_, state_.epoch)));
    const int full_token_epochs = std::min(tc_.full_token_epochs, tc_.epochs);
    if (model_config_.patch_drop > 0 && state_.step_in_epoch == 0 && full_token_epochs > 0 &&
        state_.epoch == tc_.epochs - full_token_epochs)
      say("epoch " + std::to_string(state_.epoch + 1) + ": the last " + std::to_string(full_token_epochs) +
          " epoch(s) train on every patch (patch_drop off, full_token_epochs)");
    while (auto batch = loader_->next()) {
      // A stop request ends a single process before the step; in a distributed run it rides
      // in the step's all-reduce, so every rank stops at the same step.
      const bool stop_requested = !poll_continue();
      if (stop_requested && !group_) {
        if (!read_statistics()) return false;
        stop_with("stopped");
        return false;
      }
      lr_ = lr_at(tc_, state_.global_step, total_steps_, steps_per_epoch_);
      for (size_t g = 0; g < lr_scales_.size(); ++g)
        optimizer_->param_groups()[g].options().set_lr(lr_ * lr_scales_[g]);

      const auto images = batch->images.to(device_, /*non_blocking=*/true);
      const auto labels = batch->labels.to(device_, /*non_blocking=*/true);
      // The step's dropout, stochastic-depth and patch-dropout draws come from a stream of (seed,
      // step): a resumed run, on any number of processes, draws what the uninterrupted one did.
      RandomStreamScope draws(step_random_seed(tc_.seed, state_.global_step));
      const auto step = group_ ? forward_backward(model_, params_, images, labels,
                                                  tc_.label_smoothing, layout_, bf16_)
                               : forward_backward(model_, params_, images, labels,
                                                  tc_.label_smoothing, shards_, bf16_);
      // This process's part of the batch's loss sum (its shards' losses are weighted by their
      // rows over the whole batch); nothing is read back to the host here.
      const double batch_size = double(group_ ? layout_.global_batch : labels.size(0));
      torch::Tensor stats;
      {
        torch::NoGradGuard no_grad;
        stats = batch_stats(step.logits, labels, step.loss_tensor * batch_size, stop_requested);
      }
      if (group_) {
        stats_.copy_(stats);
        group_->all_reduce_sum(flat_, "the gradients of step " + std::to_string(state_.global_step + 1));
        stats = stats_.to(torch::kDouble);
      }
      // A NaN is looked for when the statistics are read (every log_every steps, before every
      // checkpoint): the weights after it are never saved.
      if (pending_.empty()) pending_first_step_ = state_.global_step + 1;
      pending_.push_back(stats);
      // Both as LibTorch's clip_grad_norm_ and AdamW::step, spread over the shards' threads; the
      // clipping factor is applied inside AdamW's pass over the gradients.
      const float grad_scale = tc_.grad_clip > 0 ? grad_clip(params_, tc_.grad_clip, shards_, step.grad_norms).scale : 1.0f;
      adamw_step(*optimizer_, shards_, grad_scale);
      if (average_) update_average(averages_, averaged_, ema_decay_at(tc_.ema_decay, state_.global_step), shards_);
      ++steps_this_call_;
      ++state_.global_step;
      ++state_.step_in_epoch;
      const bool limit = tc_.max_steps > 0 && steps_this_call_ >= tc_.max_steps;
      const bool checkpoint = tc_.checkpoint_every > 0 && state_.global_step % tc_.checkpoint_every == 0 &&
                              state_.step_in_epoch < steps_per_epoch_;
      // The first step of a call is read at once: throughput leaves it out (it pays one-time
      // allocations and the OpenMP pool start, which would skew short benchmark runs).
      if (steps_this_call_ == 1 || state_.global_step % tc_.log_every == 0 || limit || checkpoint) {
        if (!read_statistics()) return false;
        if (stop_) return false;
      }
      if (state_.global_step % tc_.log_every == 0 || limit) report_step();
      if (limit) {
        stop_with("max_steps");
        return false;
      }
      if (checkpoint) commit(/*best=*/false);
    }
    return read_statistics();
  }

  // Reads the steps' statistics since the last read (a GPU waits here, and only here): false
  // after a NaN (the run stops), and a stop vote of any rank stops the run after this step.
  bool read_statistics() {
    if (pending_.empty()) return true;
    const auto rows = torch::stack(pending_).cpu().contiguous();
    const double* v = rows.data_ptr<double>();
    const int64_t n = rows.size(0), first = pending_first_step_;
    pending_.clear();
    const double now = clock_.seconds();
    const bool first_step = steps_this_call_ <= 1;  // left out of the throughput
    for (int64_t i = 0; i < n; ++i) {
      const double* row = v + i * 5;
      if (!std::isfinite(row[0])) {
        stop_for_nan(row[0] / std::max(1.0, row[3]), first + i);
        return false;
      }
      Accumulator one;
      one.add(row);
      epoch_acc_.add(one);
      window_.add(one);
      if (row[4] > 0) stop_with("stopped");
      if (!first_step) {
        images_trained_ += one.count;
        model_flops_ += one.count * step_flops_;
      }
    }
    if (!first_step) step_seconds_ += now - mark_;
    mark_ = now;
    return true;
  }

  void report_step() {
    StepStats s;
    s.epoch = state_.epoch;
    s.step = state_.global_step;
    s.total_steps = total_steps_;
    s.step_in_epoch = state_.step_in_epoch;
    s.steps_per_epoch = steps_per_epoch_;
    const auto w = window_.result();
    s.loss = w.loss;
    s.accuracy = w.accuracy;
    s.lr = lr_;
    s.images_per_second = step_seconds_ > 0 ? images_trained_ / step_seconds_ : 0;
    const double session = clock_.seconds();
    s.elapsed_seconds = state_.elapsed_seconds + session - elapsed_committed_session_;
    s.eta_seconds = session / double(steps_this_call_) * double(total_steps_ - state_.global_step);
    writer_.log_step(s);
    if (cb_.on_step) cb_.on_step(s);
    window_ = Accumulator{};
  }

  void stop_for_nan(double loss, int64_t step) {
    std::ostringstream m;
    m << "the training loss became " << loss << " at step " << step << " (epoch "
      << state_.epoch + 1 << ", lr " << lr_at(tc_, step - 1, total_steps_, steps_per_epoch_)
      << "); training stopped and ";
    if (committed_step_ >= 0)
      m << "the last good checkpoint (step " << committed_step_ << ") stays in "
        << RunPaths(run_.dir).checkpoints();
    else
      m << "no checkpoint was saved (it happened before the first one)";
    m << ". Lower the learning rate (--lr) or keep gradient clipping on (--grad-clip 1)";
    stop_with("nan");
    result_.message = m.str();
    say(m.str());
  }

  // The state of the epoch in progress goes into the checkpoint with the weights (rank 0 writes
  // it; every rank keeps the same bookkeeping).
  void commit(bool best) {
    const double session = clock_.seconds();
    state_.elapsed_seconds += session - elapsed_committed_session_;
    elapsed_committed_session_ = session;
    const bool partial = state_.step_in_epoch > 0;
    state_.epoch_seconds = partial ? epoch_seconds_before_ + session - epoch_start_ : 0;
    state_.epoch_loss_sum = partial ? epoch_acc_.loss_sum : 0;
    state_.epoch_top1 = partial ? epoch_acc_.top1 : 0;
    state_.epoch_top5 = partial ? epoch_acc_.top5 : 0;
    state_.epoch_count = partial ? epoch_acc_.count : 0;
    state_.world_size = world_;
    writer_.commit(*model_, norm_, optimizer_.get(), state_, best, {}, average_ ? average_.get() : nullptr);
    committed_step_ = state_.global_step;
  }

  // End of epoch: validation, metrics.csv, the checkpoint (best when validation improved).
  void end_epoch() {
    EpochStats e;
    e.epoch = state_.epoch;
    const auto t = epoch_acc_.result();
    e.loss = t.loss;
    e.accuracy = t.accuracy;
    e.top5_accuracy = t.top5_accuracy;
    if (!val_rows_.empty()) {
      const auto v = evaluate(average_ ? average_ : model_, data_.train, val_rows_, norm_, tc_.eval_batch_size,
                              tc_.data_parallel, group_, "the validation of epoch " + std::to_string(e.epoch + 1),
                              device_, bf16_);
      e.val_loss = v.loss;
      e.val_accuracy = v.accuracy;
      e.val_top5_accuracy = v.top5_accuracy;
    }
    e.lr = lr_;
    e.seconds = epoch_seconds_before_ + clock_.seconds() - epoch_start_;
    const double score = val_rows_.empty() ? e.accuracy : e.val_accuracy;
    e.best = score > state_.best_val_accuracy;
    ++state_.epoch;
    state_.step_in_epoch = 0;
    if (e.best) {
      state_.best_val_accuracy = score;
      state_.best_epoch = e.epoch;
    }
    state_.finished = state_.epoch >= tc_.epochs;
    writer_.log_epoch(e, state_.global_step);
    epoch_acc_ = Accumulator{};
    epoch_seconds_before_ = 0;
    commit(e.best);
    if (cb_.on_epoch) cb_.on_epoch(e);
  }

  // --- finish ---------------------------------------------------------------------------------

  void finish() {
    if (result_.stop_reason.empty()) result_.stop_reason = "completed";
    // A stop mid-epoch keeps its progress (and a run stopped before its first step gets a
    // checkpoint it can be continued from).
    if ((result_.stop_reason == "stopped" || result_.stop_reason == "max_steps") &&
        committed_step_ != state_.global_step)
      commit(/*best=*/false);
    writer_.flush();

    result_.epochs = state_.epoch;
    result_.steps = state_.global_step;
    result_.train_seconds = step_seconds_;
    result_.images_per_second = step_seconds_ > 0 ? images_trained_ / step_seconds_ : 0;
    result_.model_flops = model_flops_;
    result_.flops_per_second = step_seconds_ > 0 ? model_flops_ / step_seconds_ : 0;
    result_.peak_flops_per_second = peak_flops_per_second();
    // Test with the best weights (the Keras example's ModelCheckpoint + evaluate). A user's stop
    // skips it so that stopping stays quick; NaN skips it as the weights are broken.
    if (data_.test && (result_.stop_reason == "completed" || result_.stop_reason == "max_steps")) {
      std::string best;
      if (rank_ == 0) {
        best = RunReader(run_.dir).weights(Weights::Best, /*fallback=*/false);
        if (!best.empty()) load_weights(best, *model_);
      }
      if (group_) {
        best = group_->broadcast_string(best, "the best checkpoint's name");
        std::vector<torch::Tensor> weights;
        for (const auto& p : model_->parameters()) weights.push_back(p);
        torch::NoGradGuard no_grad;
        group_->broadcast(weights, "the best weights");
      }
      say("evaluating on the test set (" + std::to_string(data_.test->size()) + " images)");
      // No best checkpoint (a run stopped before its first epoch ended): the weights as they are,
      // the average when there is one.
      result_.test = evaluate(best.empty() && average_ ? average_ : model_, *data_.test, all_rows(*data_.test), norm_,
                              tc_.eval_batch_size, tc_.data_parallel, group_, "the test", device_, bf16_);
      writer_.write_test({{"loss", result_.test->loss},
                          {"accuracy", result_.test->accuracy},
                          {"top5_accuracy", result_.test->top5_accuracy},
                          {"count", result_.test->count},
                          {"weights", best.empty() ? (average_ ? "ema" : "last") : "best"}});
    }
  }

  static constexpr int64_t kStats = 5;  // loss sum, top-1, top-5, images, stop votes

  const PreparedRun& run_;
  const DataSplits& data_;
  const TrainCallbacks& cb_;
  ProcessGroup* group_;
  int rank_, world_;
  RunWriter writer_;

  ViTConfig model_config_;
  TrainConfig tc_;
  bool bf16_ = false;
  std::string requested_precision_;  // as given ("auto" before resolve_precision)
  RunState state_;
  Normalization norm_;
  std::vector<int64_t> train_rows_, val_rows_;
  VisionTransformer model_{nullptr};
  // TrainConfig::ema_decay: the moving average of the weights, and the tensors it averages
  // (every parameter and buffer of model_, pairwise with average_'s).
  VisionTransformer average_{nullptr};
  std::vector<torch::Tensor> averaged_, averages_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::vector<double> lr_scales_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<DataLoader> loader_;
  int64_t steps_per_epoch_ = 0, total_steps_ = 0;
  int shards_ = 1;
  ShardLayout layout_;
  torch::Tensor flat_, stats_;  // distributed: every gradient, then the step's statistics

  TrainResult result_;
  bool stop_ = false;
  double lr_ = 0;
  ActiveClock clock_;
  double elapsed_committed_session_ = 0;  // this call's active seconds already in state_
  double epoch_start_ = 0;                // active seconds when this call's part of the epoch began
  double epoch_seconds_before_ = 0;       // the epoch's seconds from before a restart
  int64_t committed_step_ = -1;
  double step_seconds_ = 0;  // training time of this call after its first step (active seconds)
  double mark_ = 0;          // active seconds at the last read of the statistics
  int64_t images_trained_ = 0, steps_this_call_ = 0;
  double step_flops_ = 0;   // model FLOPs of one image's training step this epoch (summary.h)
  double model_flops_ = 0;  // those of the images in images_trained_
  c10::Device device_{c10::kCPU};
  std::vector<torch::Tensor> pending_;  // statistics of the steps not read yet, on the device
  int64_t pending_first_step_ = 0;
  Accumulator epoch_acc_, window_;
};

}  // namespace

TrainResult train(const PreparedRun& run, const DataSplits& data, const TrainCallbacks& cb,
                  ProcessGroup* group) {
  if (group && group->size() <= 1) group = nullptr;
  return Training(run, data, cb, group).run();
}

TrainResult train(const ViTConfig& model_config, const TrainConfig& train_config,
                  const DataSplits& data, const std::string& run_dir, const TrainCallbacks& cb,
                  bool resume) {
  RunRequest request;
  request.model = model_config;
  request.train = train_config;
  if (resume) {
    request.resume_dir = run_dir;
    request.given = {"max_steps", "log_every"};  // a resumed smoke run may set its own limit
  } else {
    request.out_dir = run_dir;
  }
  return train(prepare_run(request), data, cb);
}

EvalResult evaluate_run(const std::string& run_dir, const Dataset& data, const std::string& device_spec,
                        const std::string& precision) {
  const c10::Device device = resolve_device(device_spec);
  const RunReader reader(run_dir);
  const RunInfo info = reader.info();
  const std::string weights = reader.weights(Weights::Best);
  if (weights.empty()) throw std::runtime_error(run_dir + " has no checkpoint to evaluate");
  VisionTransformer model(info.model);
  load_weights(weights, *model);
  model->to(device);
  if (data.images.size(1) != info.model.in_channels)
    throw std::invalid_argument("the data set has " + std::to_string(data.images.size(1)) +
                                " channel(s) but the run's model expects " +
                                std::to_string(info.model.in_channels));
  const std::string arithmetic = resolve_precision(precision.empty() ? info.train.precision : precision);
  return evaluate(model, data, all_rows(data), info.normalization, info.train.eval_batch_size,
                  /*data_parallel=*/true, nullptr, "evaluation", device, arithmetic == "bf16");
}

}  // namespace vit
