#include "patchify.h"

#include <ATen/ATen.h>

#include <sstream>
#include <stdexcept>

namespace vit {

at::Tensor patchify(const at::Tensor& x, int P) {
  if (P <= 0) throw std::invalid_argument("patch size must be positive, got " + std::to_string(P));
  if (x.dim() != 4 || x.size(2) % P != 0 || x.size(3) % P != 0) {
    std::ostringstream out;
    out << "patchify needs images (batch, channels, height, width) with height and width multiples "
           "of the patch size "
        << P << ", got " << x.sizes();
    throw std::invalid_argument(out.str());
  }
  const int64_t B = x.size(0), C = x.size(1), gh = x.size(2) / P, gw = x.size(3) / P;
  return x.reshape({B, C, gh, P, gw, P})          // (B, C, gh, P, gw, P)
      .permute({0, 2, 4, 1, 3, 5})                // (B, gh, gw, C, P, P)
      .reshape({B, gh * gw, C * P * P});          // (B, N, C * P * P)
}

at::Tensor unpatchify(const at::Tensor& p, int P, int C, int gh, int gw) {
  if (P <= 0 || C <= 0 || gh <= 0 || gw <= 0 || p.dim() != 3 || p.size(1) != int64_t(gh) * gw ||
      p.size(2) != int64_t(C) * P * P) {
    std::ostringstream out;
    out << "unpatchify expects patches (batch, " << int64_t(gh) * gw << ", " << int64_t(C) * P * P
        << ") for a " << gh << "x" << gw << " grid of " << C << "-channel " << P << "x" << P
        << " patches, got " << p.sizes();
    throw std::invalid_argument(out.str());
  }
  const int64_t B = p.size(0);
  return p.reshape({B, gh, gw, C, P, P})          // (B, gh, gw, C, P, P)
      .permute({0, 3, 1, 4, 2, 5})                // (B, C, gh, P, gw, P)
      .reshape({B, C, int64_t(gh) * P, int64_t(gw) * P});  // (B, C, H, W)
}

}  // namespace vit
