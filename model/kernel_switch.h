// Our CPU kernels' run-time switches: each is on unless the environment sets its variable to "0"
// (VIT_FUSED_ATTENTION, VIT_ONEDNN_LINEAR, VIT_ONEDNN_LAYER_NORM, VIT_FUSED_ELTWISE,
// VIT_FUSED_LAYER_NORM; README,
// "Speed settings"). Callers keep the answer in a static.
#pragma once

#include <cstdlib>
#include <cstring>

namespace vit {

inline bool switched_on(const char* var) {
  const char* v = std::getenv(var);
  return !(v && std::strcmp(v, "0") == 0);
}

}  // namespace vit
