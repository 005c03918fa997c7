// The float GEMMs of linear layers in the layouts their operands come in, against the layouts
// oneDNN's kernels like best, and what getting there costs. Figures only; the README's "Speed on
// any x86 CPU" quotes them (fifth session of 2026-12-07).
//
//   build/bench/gemm_layout_bench [repeats=200]      (one thread, as each data-parallel shard runs)
//
// Forward: y = x W^T. The layers hand oneDNN the weight (N, K) as W^T read through strides;
// oneDNN's brgemm copies it into its blocked layout inside every call. "packed" gives it the
// blocked layout made once (a reorder, timed on its own): what a step's two shards, or an
// inference session's many batches, could share.
// Weight gradient: dW = dy^T x. The layers read dy^T through strides; "rows" first copies dy
// transposed (a reorder, included in its time) and multiplies plain rows.
// Every pair is checked for the same bits (the same kernel summing in the same order).
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "median_ms.h"
#include "onednn_common.h"
#include "runtime.h"

namespace {

using namespace vit::onednn;

memory::desc rows(int64_t r, int64_t c) { return memory::desc({r, c}, dt::f32, {c, 1}); }
memory::desc cols(int64_t r, int64_t c) { return memory::desc({r, c}, dt::f32, {1, r}); }  // read transposed

struct Shape {
  const char* name;
  int64_t M, K, N;
};

float* data(torch::Tensor& t) { return t.data_ptr<float>(); }

}  // namespace

int main(int argc, char** argv) {
  vit::relaunch_with_best_settings(argv, "ACTIVE");
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 200;
  const auto runtime = vit::configure_runtime(1);
  std::printf("gemm_layout_bench: %s, 1 thread, oneDNN %s\n", runtime.cpu.c_str(), runtime.onednn_isa.c_str());
  const std::vector<Shape> shapes = {
      {"fmnist-small qkv", 544, 128, 384}, {"fmnist-small proj", 544, 128, 128},
      {"fmnist-small fc1", 544, 128, 256}, {"fmnist-small fc2", 544, 256, 128},
      {"keras-cifar qkv", 512, 64, 192},   {"keras-cifar fc2", 512, 128, 64},
      {"keras-cifar qkv", 18560, 64, 192}, {"vit-b16 qkv", 197, 768, 2304},
      {"vit-b16 fc2", 197, 3072, 768}};
  std::printf("  %-18s %6s %5s %5s | %9s %9s %8s %5s | %9s %9s %5s\n", "layer", "M", "K", "N", "fwd W^T",
              "packed", "packing", "bits", "dW dy^T", "rows", "bits");
  torch::manual_seed(0);
  for (const auto& s : shapes) {
    const int64_t M = s.M, K = s.K, N = s.N;
    auto x = torch::randn({M, K}), w = torch::randn({N, K}), dy = torch::randn({M, N});
    auto y1 = torch::empty({M, N}), y2 = torch::empty({M, N}), dw1 = torch::empty({N, K}), dw2 = torch::empty({N, K});
    auto dyt = torch::empty({N, M});

    const auto strided = make_matmul(rows(M, K), cols(K, N), rows(M, N));
    const auto pd = make_matmul_pd(rows(M, K), memory::desc({K, N}, dt::f32, memory::format_tag::any), rows(M, N));
    const dnnl::matmul packed(pd);
    auto packed_w = torch::empty({int64_t(pd.weights_desc().get_size())}, torch::kByte);
    const dnnl::reorder pack(dnnl::reorder::primitive_desc(cpu_engine(), cols(K, N), cpu_engine(), pd.weights_desc(),
                                                           user_scratchpad()));
    auto fwd = [&](const dnnl::matmul& mm, const memory::desc& wd, void* wp, torch::Tensor& y) {
      run(mm, {{DNNL_ARG_SRC, mem(rows(M, K), data(x))}, {DNNL_ARG_WEIGHTS, mem(wd, wp)}, {DNNL_ARG_DST, mem(rows(M, N), data(y))}});
      thread_stream().wait();
    };
    auto do_pack = [&] {
      run(pack, {{DNNL_ARG_FROM, mem(cols(K, N), data(w))}, {DNNL_ARG_TO, mem(pd.weights_desc(), packed_w.data_ptr())}});
      thread_stream().wait();
    };
    const double t_strided = median_ms([&] { fwd(strided, cols(K, N), data(w), y1); }, repeats, 3);
    const double t_pack = median_ms(do_pack, repeats, 3);
    const double t_packed = median_ms([&] { fwd(packed, pd.weights_desc(), packed_w.data_ptr(), y2); }, repeats, 3);
    const bool fwd_same = std::memcmp(data(y1), data(y2), size_t(M * N) * sizeof(float)) == 0;

    const auto dw_strided = make_matmul(cols(N, M), rows(M, K), rows(N, K));
    const auto dw_rows = make_matmul(rows(N, M), rows(M, K), rows(N, K));
    const dnnl::reorder transpose(dnnl::reorder::primitive_desc(cpu_engine(), rows(M, N), cpu_engine(), cols(M, N),
                                                                user_scratchpad()));
    const double t_dw_strided = median_ms([&] {
      run(dw_strided, {{DNNL_ARG_SRC, mem(cols(N, M), data(dy))}, {DNNL_ARG_WEIGHTS, mem(rows(M, K), data(x))},
                       {DNNL_ARG_DST, mem(rows(N, K), data(dw1))}});
      thread_stream().wait();
    }, repeats, 3);
    const double t_dw_rows = median_ms([&] {
      run(transpose, {{DNNL_ARG_FROM, mem(rows(M, N), data(dy))}, {DNNL_ARG_TO, mem(cols(M, N), data(dyt))}});
      run(dw_rows, {{DNNL_ARG_SRC, mem(rows(N, M), data(dyt))}, {DNNL_ARG_WEIGHTS, mem(rows(M, K), data(x))},
                    {DNNL_ARG_DST, mem(rows(N, K), data(dw2))}});
      thread_stream().wait();
    }, repeats, 3);
    const bool dw_same = std::memcmp(data(dw1), data(dw2), size_t(N * K) * sizeof(float)) == 0;
    std::printf("  %-18s %6lld %5lld %5lld | %6.3f ms %6.3f ms %5.3f ms %5s | %6.3f ms %6.3f ms %5s\n", s.name,
                (long long)M, (long long)K, (long long)N, t_strided, t_packed, t_pack, fwd_same ? "same" : "DIFF",
                t_dw_strided, t_dw_rows, dw_same ? "same" : "DIFF");
  }
  std::printf("  (fwd W^T: the weight read through strides, as the layers do; packed: the weight in oneDNN's\n"
              "   blocked layout, made beforehand by 'packing'; dW dy^T: dy^T read through strides, as the layers\n"
              "   do in float; rows: dy transposed by a reorder first, included)\n");
}
