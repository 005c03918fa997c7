// See attention_kernels.h. Built with CPU_CAPABILITY=AVX2 or AVX512 (and the matching -m flags);
// nothing here may be called on a CPU without that instruction set.
//
// Every product is one register block at a time: R rows of the left operand, each a run of K
// scalars broadcast one by one, times N vectors of a row of the right operand, accumulated in
// R x N registers (kAccumulators of them, leaving room for the N right-hand vectors and a
// broadcast). The right operand's rows are contiguous vectors: v or k rows straight from qkv, or
// k/v transposed into a tile whose rows are the head's T tokens padded to whole vectors with
// zeros. Per (image, head), forward: S = Q K^T row block by row block, scaled and softmaxed in
// registers (up to 4 vectors of tokens; longer rows in a tile of 16 query rows), P into a tile
// (and the probabilities' output), then O = P V. Backward, one path for every length: dP = dO V^T
// into a tile, dS = scale * P (dP - rowsum(P dP)) in place, then dQ = dS K, dK = dS^T Q and
// dV = P^T dO (the transposed left operands read with their strides swapped), during which the
// next pair's probabilities are prefetched into L2 (software prefetch, a few lines per register
// block). Tiles live on the stack up to 4 vectors of tokens, else in the caller's scratch.
//
// Attention dropout: forward draws each row's mask (dropout_stream.h, the draws of the row's
// elements of the (B, H, T, T) probabilities) right after its softmax, multiplies the row by it
// before P V, and stores the probabilities with the dropped ones negated; backward reads the mask
// back from those signs: dP = dO V^T is the gradient of the dropped probabilities, so dS = scale
// * P (m dP - rowsum(P m dP)) with m the row's multipliers, and dV = (P m)^T dO from a tile of
// P m made in the same pass.
#include "attention_kernels.h"

#include <ATen/cpu/vec/vec.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

#include "dropout_draws.h"
#include "vec_io.h"
#include "vec_math.h"

#if !defined(CPU_CAPABILITY_AVX2) && !defined(CPU_CAPABILITY_AVX512)
#error "attention_kernels.cpp is built per instruction set: CPU_CAPABILITY_AVX2 or CPU_CAPABILITY_AVX512"
#endif

namespace vit {
namespace CPU_CAPABILITY {

namespace {

constexpr int64_t kMaxVectors = 4;
constexpr int64_t kMaxLen = kMaxVectors * W;  // the most tokens kept in registers; features per product
constexpr int64_t kMaxHead = 64;  // the most features per head: 4 AVX-512 vectors, 8 AVX2 ones
constexpr int64_t kMaxTokens = 256;           // the most tokens (longer rows: scores in a tile)
// Accumulator registers of one block: 16 of AVX-512's 32, 8 of AVX2's 16.
constexpr int kAccumulators = W == 16 ? 16 : 8;

// Rows per block: 4 (8 for one-vector rows, so that enough independent sums hide the FMA's latency).
template <int N>
constexpr int rows_per_block() {
  return std::max(1, std::min(N == 1 ? 8 : 4, kAccumulators / N));
}

// Memory to bring into L2 a few lines at a time, spread over a product's register blocks, so that
// its reads overlap the arithmetic (backward streams each head's probabilities, 84 KB for
// keras-cifar, from memory: as one pass that read was a fifth of the backward's time).
struct Prefetch {
  const char* next = nullptr;
  const char* end = nullptr;
  int64_t per_block = 0;
  void step() {
    for (int64_t i = 0; i < per_block && next < end; ++i, next += 64) _mm_prefetch(next, _MM_HINT_T1);
  }
};

// acc[r][n] = sum over d < K of a[r * ra + d * da] * b[d * bs + n * W].
template <int R, int N>
inline void block_product(const float* a, int64_t ra, int64_t da, int64_t K, const float* b, int64_t bs,
                          Vec (&acc)[R][N]) {
  for (int r = 0; r < R; ++r)
    for (int n = 0; n < N; ++n) acc[r][n] = Vec(0.0f);
  for (int64_t d = 0; d < K; ++d) {
    Vec bv[N];
    for (int n = 0; n < N; ++n) bv[n] = Vec::loadu(b + d * bs + n * W);
    for (int r = 0; r < R; ++r) {
      const Vec x(a[r * ra + d * da]);
      for (int n = 0; n < N; ++n) acc[r][n] = at::vec::fmadd(x, bv[n], acc[r][n]);
    }
  }
}

// Rows i < rows of the product (row i of the left operand at a + i * ra), R at a time:
// block(i0, acc, R) with acc[r] the vectors of row i0 + r, so that what follows the product works
// on R independent rows and their latencies (horizontal sums, exp) overlap.
template <int N, class Block>
inline void product_blocks(int64_t rows, const float* a, int64_t ra, int64_t da, int64_t K, const float* b,
                           int64_t bs, Block&& block, Prefetch* prefetch = nullptr) {
  constexpr int R = rows_per_block<N>();
  int64_t i = 0;
  for (; i + R <= rows; i += R) {
    Vec acc[R][N];
    block_product<R, N>(a + i * ra, ra, da, K, b, bs, acc);
    block(i, acc, std::integral_constant<int, R>());
    if (prefetch) prefetch->step();
  }
  for (; i < rows; ++i) {
    Vec acc[1][N];
    block_product<1, N>(a + i * ra, ra, da, K, b, bs, acc);
    block(i, acc, std::integral_constant<int, 1>());
  }
}

// out[i * os + :] = the product's row i, N vectors (rounded to bfloat16 for a bfloat16 out).
template <int N, typename Out>
inline void product_into(int64_t rows, const float* a, int64_t ra, int64_t da, int64_t K, const float* b,
                         int64_t bs, Out* out, int64_t os, Prefetch* prefetch = nullptr) {
  product_blocks<N>(
      rows, a, ra, da, K, b, bs,
      [&](int64_t i0, auto& acc, auto rows_in_block) {
        for (int r = 0; r < decltype(rows_in_block)::value; ++r)
          for (int n = 0; n < N; ++n) store(out + (i0 + r) * os + n * W, W, acc[r][n]);
      },
      prefetch);
}

// A head's T rows of hd features (at `stride`) as float: float rows are used in place;
// bfloat16 rows are converted into `tile` (rows of hd), and `stride` becomes hd.
inline const float* as_float(const float* x, int64_t&, int64_t, int64_t, float*) { return x; }
inline const float* as_float(const c10::BFloat16* x, int64_t& stride, int64_t T, int64_t hd, float* tile) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < hd; c += W) load(x + t * stride + c, W).store(tile + t * hd + c);
  stride = hd;
  return tile;
}

// tile[d * LT + j] = x[j * stride + d] for d < hd, j < T; zero for T <= j < LT. W x W blocks
// transposed in registers; a block of only a few tokens (17 = 16 + 1) element by element.
inline void transpose(const float* x, int64_t stride, int64_t T, int64_t hd, int64_t LT, float* tile) {
  for (int64_t j0 = 0; j0 < T; j0 += W) {
    const int64_t rows = std::min(W, T - j0);
    if (rows * 4 <= W) {
      for (int64_t d = 0; d < hd; ++d) Vec(0.0f).store(tile + d * LT + j0);
      for (int64_t j = j0; j < j0 + rows; ++j)
        for (int64_t d = 0; d < hd; ++d) tile[d * LT + j] = x[j * stride + d];
      continue;
    }
    for (int64_t d0 = 0; d0 < hd; d0 += W) transpose_block(x + j0 * stride + d0, stride, rows, tile + d0 * LT + j0, LT);
  }
}

// m[j] = the dropout multiplier (0 or d.scale) of element e0 + j of the (B, H, T, T) probabilities
// for j < n (n <= kMaxTokens), then 0 up to the next whole vector: the draws of dropout_stream.h
// (dropout_draws.h). A row can start on either half of a draw and cross a chunk.
inline void dropout_multipliers(const AttentionDropout& d, int64_t e0, int64_t n, float* m) {
  alignas(64) float drawn[kMaxTokens + 2 * W];
  int64_t j = 0;
  while (j < n) {
    const int64_t e = e0 + j, chunk = e / kDropoutChunk, local = e - chunk * kDropoutChunk;
    const int64_t count = std::min(n - j, kDropoutChunk - local);  // elements in this chunk
    const int64_t k0 = local / 2;
    mask_multipliers(d.seed, chunk, k0, (local + count + 1) / 2 - k0, d.threshold, d.scale, drawn);
    std::memcpy(m + j, drawn + (local & 1), sizeof(float) * size_t(count));
    j += count;
  }
  for (; j % W != 0; ++j) m[j] = 0.0f;
}

// A probability as kept for backward: negated (its sign bit set) where dropout dropped it.
inline Vec with_mask_in_sign(const Vec& p, const Vec& m) { return Vec::blendv(p, p.neg(), m == Vec(0.0f)); }

// From a kept probability (with_mask_in_sign): `scale` where the sign bit is clear, 0 where set
// (a dropped 0 is stored as -0, which compares equal to 0, hence the bit).
inline Vec kept_multiplier(const Vec& stored, const Vec& scale) {
#ifdef CPU_CAPABILITY_AVX512
  const __m512i dropped = _mm512_srai_epi32(_mm512_castps_si512(stored), 31);
  return _mm512_castsi512_ps(_mm512_andnot_si512(dropped, _mm512_castps_si512(scale)));
#else
  const __m256i dropped = _mm256_srai_epi32(_mm256_castps_si256(stored), 31);
  return _mm256_andnot_ps(_mm256_castsi256_ps(dropped), scale);
#endif
}

// f(std::integral_constant<int, n>) for n in 1..kMaxVectors.
template <class F>
inline void with_vectors(int64_t n, F&& f) {
  switch (n) {
    case 1: return f(std::integral_constant<int, 1>());
    case 2: return f(std::integral_constant<int, 2>());
    case 3: return f(std::integral_constant<int, 3>());
    default: return f(std::integral_constant<int, 4>());
  }
}

// f(c, std::integral_constant<int, n>) for a head's hd features in blocks of n <= kMaxVectors
// vectors starting at feature c: the products whose results are features (P V, dS K, ...) are
// one register block of at most kMaxVectors vectors wide (ViT-B/16's 64 features on AVX2: 2 x 4).
template <class F>
inline void feature_blocks(int64_t hd, F&& f) {
  for (int64_t c = 0; c < hd; c += kMaxLen)
    with_vectors(std::min(kMaxVectors, (hd - c) / W), [&](auto n) { f(c, n); });
}

// P = softmax(scale * Q K^T) row by row into ptile (rows of LT, zero past T) and, when not null,
// probs (rows of T). q: rows of hd at `stride`; kt: k transposed (hd rows of LT). With `drop`,
// ptile gets P times the mask of row i's elements e0 + i * T ... and probs the masked signs.
template <int NT>
inline void scores_softmax(const float* q, int64_t stride, int64_t T, int64_t hd, const float* kt,
                           int64_t LT, float scale, float* ptile, float* probs, const AttentionDropout* drop,
                           int64_t e0) {
  const Vec lowest(-std::numeric_limits<float>::infinity()), vscale(scale);
  const int64_t tail = T - (NT - 1) * W;
  product_blocks<NT>(T, q, stride, 1, hd, kt, LT, [&](int64_t i0, auto& s, auto rows_in_block) {
    constexpr int R = decltype(rows_in_block)::value;
    Vec row_max[R], sum[R];
    for (int r = 0; r < R; ++r) {
      for (int n = 0; n < NT; ++n) s[r][n] = s[r][n] * vscale;
      s[r][NT - 1] = keep_first(tail, lowest, s[r][NT - 1]);
      Vec m = s[r][0];
      for (int n = 1; n < NT; ++n) m = vmax(m, s[r][n]);
      row_max[r] = Vec(lanes_max(m));
    }
    for (int r = 0; r < R; ++r) {
      sum[r] = Vec(0.0f);
      for (int n = 0; n < NT; ++n) {
        s[r][n] = exp_nonpositive(s[r][n] - row_max[r]);  // the -inf past the row's end gives 0
        sum[r] = sum[r] + s[r][n];
      }
    }
    for (int r = 0; r < R; ++r) {
      const Vec inv(1.0f / lanes_sum(sum[r]));
      if (drop) {
        alignas(64) float m[kMaxLen];
        dropout_multipliers(*drop, e0 + (i0 + r) * T, T, m);
        for (int n = 0; n < NT; ++n) {
          const Vec p = s[r][n] * inv, mv = Vec::loadu(m + n * W);
          (p * mv).store(ptile + (i0 + r) * LT + n * W);
          if (probs) store(probs + (i0 + r) * T + n * W, n == NT - 1 ? tail : W, with_mask_in_sign(p, mv));
        }
        continue;
      }
      for (int n = 0; n < NT; ++n) {
        s[r][n] = s[r][n] * inv;
        s[r][n].store(ptile + (i0 + r) * LT + n * W);
        if (probs) store(probs + (i0 + r) * T + n * W, n == NT - 1 ? tail : W, s[r][n]);
      }
    }
  });
}

// One (image, head)'s rows as float: q, k, v and, in backward, dO (x[0..3]), each with its row
// stride; bfloat16 rows converted into tiles[i] (rows of hd).
struct HeadRows {
  const float* x[4];
  int64_t stride[4];
};
template <typename S>
inline HeadRows head_rows(const S* qkv, const S* grad_out, int64_t bh, int64_t T, int64_t H, int64_t hd,
                          float* const* tiles) {
  const int64_t D = H * hd, b = bh / H, h = bh % H;
  const S* head = qkv + b * T * 3 * D + h * hd;
  HeadRows r{};
  for (int i = 0; i < 3; ++i) {
    r.stride[i] = 3 * D;
    r.x[i] = as_float(head + i * D, r.stride[i], T, hd, tiles[i]);
  }
  if (grad_out) {
    r.stride[3] = D;
    r.x[3] = as_float(grad_out + b * T * D + h * hd, r.stride[3], T, hd, tiles[3]);
  }
  return r;
}

// From dS (T rows of LT: scale and softmax's backward applied) and P (rows of ps: the
// probabilities, after dropout where it ran): dQ = dS K, dK = dS^T Q, dV = P^T dO into the head's
// columns of the qkv gradient g (rows of 3D). `next`: the next pair's probabilities (null for
// none), brought into L2 during these products.
template <typename S>
inline void qkv_gradients(const HeadRows& r, const float* ds, int64_t LT, const float* p, int64_t ps, int64_t T,
                          int64_t hd, int64_t D, S* g, const float* next) {
  Prefetch prefetch;
  if (next) {
    int64_t blocks = 0;  // the products' register blocks, over which the prefetches are spread
    feature_blocks(hd, [&](int64_t, auto nd) { blocks += 3 * (T / rows_per_block<decltype(nd)::value>()); });
    prefetch.next = reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(next) & ~uintptr_t(63));
    prefetch.end = reinterpret_cast<const char*>(next + T * T);
    const int64_t lines = (prefetch.end - prefetch.next + 63) / 64;
    prefetch.per_block = blocks > 0 ? (lines + blocks - 1) / blocks : lines;
  }
  feature_blocks(hd, [&](int64_t c, auto nd) {
    constexpr int N = decltype(nd)::value;
    product_into<N>(T, ds, LT, 1, T, r.x[1] + c, r.stride[1], g + c, 3 * D, &prefetch);          // dQ = dS K
    product_into<N>(T, ds, 1, LT, T, r.x[0] + c, r.stride[0], g + D + c, 3 * D, &prefetch);      // dK = dS^T Q
    product_into<N>(T, p, 1, ps, T, r.x[3] + c, r.stride[3], g + 2 * D + c, 3 * D, &prefetch);  // dV = P^T dO
  });
  while (prefetch.next < prefetch.end) prefetch.step();
}

template <typename S>
void forward(const S* qkv, int64_t T, int64_t H, int64_t hd, float scale, int64_t bh0, int64_t bh1, float* probs,
             S* out, const AttentionDropout* drop) {
  const int64_t D = H * hd, NT = (T + W - 1) / W, LT = NT * W;
  alignas(64) float kt[kMaxHead * kMaxLen];
  alignas(64) float ptile[kMaxLen * kMaxLen];
  alignas(64) float rows[3][kMaxLen * kMaxHead];  // q, k, v as float (bfloat16 input only)
  float* const tiles[3] = {rows[0], rows[1], rows[2]};
  for (int64_t bh = bh0; bh < bh1; ++bh) {
    const HeadRows r = head_rows<S>(qkv, nullptr, bh, T, H, hd, tiles);
    transpose(r.x[1], r.stride[1], T, hd, LT, kt);
    float* p = probs ? probs + bh * T * T : nullptr;
    with_vectors(NT, [&](auto nt) {
      scores_softmax<decltype(nt)::value>(r.x[0], r.stride[0], T, hd, kt, LT, scale, ptile, p, drop, bh * T * T);
    });
    S* o = out + (bh / H) * T * D + (bh % H) * hd;
    feature_blocks(hd, [&](int64_t c, auto nd) {
      product_into<decltype(nd)::value>(T, ptile, LT, 1, T, r.x[2] + c, r.stride[2], o + c, D);
    });
  }
}

constexpr int64_t kRowsPerTile = 16;  // query rows per score tile in the long forward pass

// tile[:, c0 : LT] (T rows of LT) = a (T rows of K at ra) times b (K rows of LT at bs, from column
// 0), up to 4 vectors of columns at a time.
inline void product_columns(int64_t T, const float* a, int64_t ra, int64_t K, const float* b, int64_t LT,
                            float* tile) {
  for (int64_t c0 = 0; c0 < LT; c0 += kMaxLen)
    with_vectors(std::min(kMaxVectors, (LT - c0) / W),
                 [&](auto nc) { product_into<decltype(nc)::value>(T, a, ra, 1, K, b + c0, LT, tile + c0, LT); });
}

// Long rows (T > kMaxLen) in place in `tile` (`rows` rows of LT): each row's scale * scores
// softmaxed over its first T entries (the rest stay 0), into probs (rows of T) too when it is not
// null. With `drop`, the tile gets them times the mask of row i's elements e0 + i * T ... and probs
// the masked signs.
inline void softmax_tile(float* tile, int64_t rows, int64_t T, int64_t LT, float scale, float* probs,
                         const AttentionDropout* drop, int64_t e0) {
  const Vec lowest(-std::numeric_limits<float>::infinity()), vscale(scale);
  const int64_t last = LT - W, tail = T - last;
  for (int64_t i = 0; i < rows; ++i) {
    float* x = tile + i * LT;
    Vec m0 = lowest, m1 = lowest;
    for (int64_t c = 0; c < last; c += 2 * W) {
      m0 = vmax(m0, Vec::loadu(x + c) * vscale);
      if (c + W < last) m1 = vmax(m1, Vec::loadu(x + c + W) * vscale);
    }
    m0 = vmax(m0, keep_first(tail, lowest, Vec::loadu(x + last) * vscale));
    const Vec row_max(lanes_max(vmax(m0, m1)));
    Vec sum(0.0f);
    for (int64_t c = 0; c <= last; c += W) {
      Vec s = Vec::loadu(x + c) * vscale;
      if (c == last) s = keep_first(tail, lowest, s);
      const Vec e = exp_nonpositive(s - row_max);  // the -inf past the row's end gives 0
      sum = sum + e;
      e.store(x + c);
    }
    const Vec inv(1.0f / lanes_sum(sum));
    if (drop) {
      alignas(64) float m[kMaxTokens + W];
      dropout_multipliers(*drop, e0 + i * T, T, m);
      for (int64_t c = 0; c <= last; c += W) {
        const Vec pv = Vec::loadu(x + c) * inv, mv = Vec::loadu(m + c);
        (pv * mv).store(x + c);
        if (probs) store(probs + i * T + c, c == last ? tail : W, with_mask_in_sign(pv, mv));
      }
      continue;
    }
    for (int64_t c = 0; c <= last; c += W) {
      const Vec pv = Vec::loadu(x + c) * inv;
      pv.store(x + c);
      if (probs) store(probs + i * T + c, c == last ? tail : W, pv);
    }
  }
}

template <typename S>
void forward_long(const S* qkv, int64_t T, int64_t H, int64_t hd, float scale, int64_t bh0, int64_t bh1,
                  float* probs, S* out, float* scratch, const AttentionDropout* drop) {
  const int64_t D = H * hd, LT = (T + W - 1) / W * W;
  float* kt = scratch;
  float* tile = kt + hd * LT;
  float* const tiles[3] = {tile + T * LT, tile + T * LT + T * hd, tile + T * LT + 2 * T * hd};  // bfloat16 only
  for (int64_t bh = bh0; bh < bh1; ++bh) {
    const HeadRows r = head_rows<S>(qkv, nullptr, bh, T, H, hd, tiles);
    const float *q = r.x[0], *v = r.x[2];
    const int64_t qs = r.stride[0], vs = r.stride[2], b = bh / H, h = bh % H;
    transpose(r.x[1], r.stride[1], T, hd, LT, kt);
    // kRowsPerTile rows of queries at a time, so that their scores stay in L1 from Q K^T
    // through the softmax to P V.
    for (int64_t i0 = 0; i0 < T; i0 += kRowsPerTile) {
      const int64_t n = std::min(kRowsPerTile, T - i0);
      product_columns(n, q + i0 * qs, qs, hd, kt, LT, tile);  // Q K^T
      softmax_tile(tile, n, T, LT, scale, probs ? probs + (bh * T + i0) * T : nullptr, drop, (bh * T + i0) * T);
      feature_blocks(hd, [&](int64_t c, auto nd) {
        product_into<decltype(nd)::value>(n, tile, LT, 1, T, v + c, vs, out + (b * T + i0) * D + h * hd + c, D);
      });
    }
  }
}

// Backward, one path for every length: dP = dO V^T into `tile` (T rows of LT), dS in place, then
// dQ, dK, dV. vt: hd rows of LT; tiles: q, k, v, dO as float (bfloat16 input only), T rows of hd;
// pd: T rows of LT for the probabilities after dropout (dropout_scale > 0 only).
template <typename S>
void backward(const S* qkv, const float* probs, const S* grad_out, int64_t T, int64_t H, int64_t hd, float scale,
              int64_t bh0, int64_t bh1, S* grad_qkv, float* vt, float* tile, float* const* tiles,
              float dropout_scale, float* pd) {
  const int64_t D = H * hd, LT = (T + W - 1) / W * W, last = LT - W, tail = T - last;
  const Vec vscale(scale);
  for (int64_t bh = bh0; bh < bh1; ++bh) {
    const HeadRows r = head_rows(qkv, grad_out, bh, T, H, hd, tiles);
    const float* p = probs + bh * T * T;
    transpose(r.x[2], r.stride[2], T, hd, LT, vt);
    product_columns(T, r.x[3], r.stride[3], hd, vt, LT, tile);  // dP = dO V^T
    if (dropout_scale > 0.0f) {
      // dP is the dropped probabilities' gradient: dS = scale * P (m dP - rowsum(P m dP)), and
      // P m into pd for dV, with m from the signs the forward pass stored.
      const Vec keep(dropout_scale);
      for (int64_t i = 0; i < T; ++i) {
        float* x = tile + i * LT;
        float* pdr = pd + i * LT;
        const float* pr = p + i * T;
        Vec dot(0.0f);
        for (int64_t c = 0; c <= last; c += W) {
          const Vec stored = load(pr + c, c == last ? tail : W);
          const Vec pm = stored.abs() * kept_multiplier(stored, keep);
          pm.store(pdr + c);
          dot = at::vec::fmadd(pm, Vec::loadu(x + c), dot);
        }
        const Vec total(lanes_sum(dot));
        for (int64_t c = 0; c <= last; c += W) {
          const Vec stored = load(pr + c, c == last ? tail : W);
          const Vec dp = Vec::loadu(x + c) * kept_multiplier(stored, keep);
          (stored.abs() * (dp - total) * vscale).store(x + c);
        }
      }
      qkv_gradients(r, tile, LT, pd, LT, T, hd, D, grad_qkv + (bh / H) * T * 3 * D + (bh % H) * hd,
                    bh + 1 < bh1 ? p + T * T : nullptr);
      continue;
    }
    for (int64_t i = 0; i < T; ++i) {  // dS = scale * P (dP - rowsum(P dP)), in place
      float* x = tile + i * LT;
      const float* pr = p + i * T;
      Vec dot(0.0f);
      for (int64_t c = 0; c <= last; c += W)
        dot = at::vec::fmadd(load(pr + c, c == last ? tail : W), Vec::loadu(x + c), dot);
      const Vec total(lanes_sum(dot));
      for (int64_t c = 0; c <= last; c += W)
        (load(pr + c, c == last ? tail : W) * (Vec::loadu(x + c) - total) * vscale).store(x + c);
    }
    qkv_gradients(r, tile, LT, p, T, T, hd, D, grad_qkv + (bh / H) * T * 3 * D + (bh % H) * hd,
                  bh + 1 < bh1 ? p + T * T : nullptr);
  }
}

}  // namespace

bool small_attention_fits(int64_t T, int64_t hd) {
  return T >= 1 && T <= kMaxTokens && hd >= W && hd <= kMaxHead && hd % W == 0;
}

bool small_attention_preferred(int64_t T, int64_t hd) { return small_attention_fits(T, hd) && hd <= kMaxLen; }

int64_t small_attention_scratch(int64_t T, int64_t hd) {
  if (T <= kMaxLen) return 0;  // tiles on the stack
  const int64_t LT = (T + W - 1) / W * W;
  // k or v transposed, the scores, q/k/v/dO as float, the probabilities after dropout
  return hd * LT + T * LT + 4 * T * hd + T * LT;
}

namespace {
// Backward's tiles: on the stack up to kMaxLen tokens, else in the caller's scratch.
template <typename S>
void backward_tiles(const S* qkv, const float* probs, const S* grad_out, int64_t T, int64_t H, int64_t hd,
                    float scale, int64_t bh0, int64_t bh1, S* grad_qkv, float* scratch, float dropout_scale) {
  if (T <= kMaxLen) {
    alignas(64) float vt[kMaxHead * kMaxLen];
    alignas(64) float tile[kMaxLen * kMaxLen];
    alignas(64) float rows[4][kMaxLen * kMaxHead];
    alignas(64) float pd[kMaxLen * kMaxLen];
    float* const tiles[4] = {rows[0], rows[1], rows[2], rows[3]};
    return backward(qkv, probs, grad_out, T, H, hd, scale, bh0, bh1, grad_qkv, vt, tile, tiles, dropout_scale, pd);
  }
  const int64_t LT = (T + W - 1) / W * W;
  float* const rows = scratch + hd * LT + T * LT;
  float* const tiles[4] = {rows, rows + T * hd, rows + 2 * T * hd, rows + 3 * T * hd};
  backward(qkv, probs, grad_out, T, H, hd, scale, bh0, bh1, grad_qkv, scratch, scratch + hd * LT, tiles,
           dropout_scale, rows + 4 * T * hd);
}
}  // namespace

void small_attention_forward(const float* qkv, int64_t T, int64_t H, int64_t hd, float scale, int64_t bh0,
                             int64_t bh1, float* probs, float* out, float* scratch, const AttentionDropout* drop) {
  if (T <= kMaxLen) forward(qkv, T, H, hd, scale, bh0, bh1, probs, out, drop);
  else forward_long(qkv, T, H, hd, scale, bh0, bh1, probs, out, scratch, drop);
}
void small_attention_forward(const c10::BFloat16* qkv, int64_t T, int64_t H, int64_t hd, float scale, int64_t bh0,
                             int64_t bh1, float* probs, c10::BFloat16* out, float* scratch,
                             const AttentionDropout* drop) {
  if (T <= kMaxLen) forward(qkv, T, H, hd, scale, bh0, bh1, probs, out, drop);
  else forward_long(qkv, T, H, hd, scale, bh0, bh1, probs, out, scratch, drop);
}
void small_attention_backward(const float* qkv, const float* probs, const float* grad_out, int64_t T, int64_t H,
                              int64_t hd, float scale, int64_t bh0, int64_t bh1, float* grad_qkv, float* scratch,
                              float dropout_scale) {
  backward_tiles(qkv, probs, grad_out, T, H, hd, scale, bh0, bh1, grad_qkv, scratch, dropout_scale);
}
void small_attention_backward(const c10::BFloat16* qkv, const float* probs, const c10::BFloat16* grad_out,
                              int64_t T, int64_t H, int64_t hd, float scale, int64_t bh0, int64_t bh1,
                              c10::BFloat16* grad_qkv, float* scratch, float dropout_scale) {
  backward_tiles(qkv, probs, grad_out, T, H, hd, scale, bh0, bh1, grad_qkv, scratch, dropout_scale);
}

}  // namespace CPU_CAPABILITY
}  // namespace vit
