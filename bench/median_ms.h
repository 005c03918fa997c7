#pragma once
// The benches' timer: median wall time of `repeats` calls in milliseconds, after `warmup` calls
// (kernels made, buffers allocated, thread pool started).
#include <algorithm>
#include <chrono>
#include <vector>

template <class F>
double median_ms(F&& f, int repeats, int warmup = 1) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}
