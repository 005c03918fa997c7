#include "column_sums.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>

#ifdef VIT_HAVE_ELTWISE_KERNELS
#include "column_sum_kernels.h"
#include "kernel_isa.h"  // x86 only: __builtin_cpu_supports
#endif

namespace vit {

std::string column_sums_isa() {
#ifdef VIT_HAVE_ELTWISE_KERNELS
  return eltwise_kernel_isa_name();
#else
  return "off (built without SLEEF's headers, libsleef-dev)";
#endif
}

at::Tensor column_sums(const at::Tensor& x) {
#ifdef VIT_HAVE_ELTWISE_KERNELS
  // The element-wise family's set (kernel_isa.h): VIT_FUSED_ELTWISE=0 turns it off.
  const KernelIsa isa = eltwise_kernel_isa();
  const auto type = x.scalar_type();
  if (isa == KernelIsa::None || x.dim() != 2 || !x.device().is_cpu() ||
      (type != at::kFloat && type != at::kBFloat16) || x.size(0) == 0)
    return x.sum(0);
  const auto xc = x.contiguous();
  const int64_t rows = xc.size(0), cols = xc.size(1);
  auto out = at::empty({cols}, xc.options().dtype(at::kFloat));
  float* o = out.data_ptr<float>();
  // Blocks of columns in parallel where the caller allows threads (a data-parallel shard runs
  // with one); each column is summed by one thread, its rows in order.
  const int64_t blocks = (cols + kColumnSumBlock - 1) / kColumnSumBlock;
  at::parallel_for(0, blocks, 1, [&](int64_t b, int64_t e) {
    const int64_t c0 = b * kColumnSumBlock, c1 = std::min(cols, e * kColumnSumBlock);
    if (type == at::kFloat) {
      const float* p = xc.data_ptr<float>();
      VIT_KERNEL_CALL(isa, column_sums, p, rows, cols, c0, c1, o);
    } else {
      const auto* p = xc.data_ptr<c10::BFloat16>();
      VIT_KERNEL_CALL(isa, column_sums, p, rows, cols, c0, c1, o);
    }
  });
  return type == at::kFloat ? out : out.to(type);
#else
  return x.sum(0);
#endif
}

}  // namespace vit
