// The ConvLSTM gate step, hand-written for x86 vector units (see simd.py): 16 lanes of
// AVX-512 (with BF16) by default, 8 lanes of AVX2 and FMA where CONVLSTM_AVX2 is defined.
//
// Rows as in gates.py: the gates z and their gradient are (rows, 4, K) in order
// i, f, g, o, of T (bfloat16 or float32); the cells and their gradients (rows, K) float32;
// the gradient reaching h from the next step (rows, K) of T. h, and the gradient reaching
// it from the output, are rows of T in groups of `rows_per_batch` consecutive rows, one
// group every `batch_stride` elements (a step of a (B, T, ...) sequence). K is a multiple
// of kLanes: one vector is kLanes lanes of a row.
// A cell may alias the cell it is computed from (every lane is read before it is written).
//
//   forward:  i, f, o = s(z_i), s(z_f), s(z_o);  g = tanh(z_g);  c = f c_prev + i g;
//             h = o tanh(c)
//   backward: dc = dc_out + dh o (1 - tanh(c)^2);  dz_i = dc g s'(z_i);
//             dz_f = dc c_prev s'(z_f);  dz_g = dc i (1 - g^2);  dz_o = dh tanh(c) s'(z_o);
//             dc_prev = dc f
//
// With peepholes (Shi et al.'s cell; `peep_rows` P > 0, else `peep` is not read) z_i, z_f
// and z_o above stand for z_i + w_i c_prev, z_f + w_f c_prev and z_o + w_o c, and the
// backward adds their paths: dc += dz_o w_o, dc_prev += dz_i w_i + dz_f w_f, and it adds
// dz_i c_prev, dz_f c_prev and dz_o c (float32, before any rounding of dz) into their
// weights' gradient `dpeep`. The weights and their gradient are float32 (3, P, K) in order
// w_i, w_f, w_o: row r takes row r % P of each (per pixel: P the rows of a sample; the
// caller spreads per-channel weights over the pixels and sums their gradient back).
//
// tanh above is the cell's activation phi: tanh, or relu (phi' = 1 for x > 0, else 0, as
// autograd differentiates it) where the kind has kRelu; 1 - g^2 and 1 - tanh(c)^2 are then
// phi'(z_g) and phi'(c).
//
// s is one of the gate kinds of gates.GateKind: the sigmoid, Keras 3's hard sigmoid
// relu6(x + 3) / 6 (s' = 1/6 for -3 < x < 3, else 0) or Keras 2's clip(0.2 x + 0.5, 0, 1)
// (s' = 0.2 where 0 <= 0.2 x + 0.5 <= 1, else 0): at the kinks as autograd differentiates
// the reference functions.
//
// Two builds. At install time (setup.py) CONVLSTM_LIBRARY is defined and every entry point
// is compiled, as convlstm_<name>: gates_simd_avx512.cpp and gates_simd_avx2.cpp are the
// two libraries. At run time PyTorch's Inductor builds one entry point, as `kernel`, with
// its compiler flags for this CPU (simd.py defines CONVLSTM_BACKWARD, CONVLSTM_WEIGHT_GRAD
// or CONVLSTM_TRANSPOSE to select it, none for the forward). simd.py reads each entry
// point's parameter types from its ENTRY(name) signature here.
#include <immintrin.h>
#include <cstdint>
#include <omp.h>

#include <vector>

#ifdef CONVLSTM_LIBRARY
#define ENTRY(name) convlstm_##name
#else
#define ENTRY(name) kernel
#endif

// The vector layer: everything below it is written once for both widths.
namespace {

#ifndef CONVLSTM_AVX2
#if !defined(__AVX512F__) || !defined(__AVX512BF16__)
#error "needs AVX-512 F and BF16 (or CONVLSTM_AVX2 defined)"
#endif
constexpr int kLanes = 16;
using vec = __m512;
using ivec = __m512i;
using mask = __mmask16;

inline vec set1(float x) { return _mm512_set1_ps(x); }
inline vec zero() { return _mm512_setzero_ps(); }
inline vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
inline vec sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
inline vec mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
inline vec div(vec a, vec b) { return _mm512_div_ps(a, b); }
inline vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }    // a b + c
inline vec fnmadd(vec a, vec b, vec c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a b
// The constant first: with a NaN in x, min/max return x.
inline vec min(vec a, vec b) { return _mm512_min_ps(a, b); }
inline vec max(vec a, vec b) { return _mm512_max_ps(a, b); }
// a b + c with the product rounded first: never contracted into an FMA.
inline vec mul_then_add(vec a, vec b, vec c) {
  constexpr int nearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  return _mm512_add_round_ps(_mm512_mul_round_ps(a, b, nearest), c, nearest);
}
inline vec round_nearest(vec x) {
  return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
inline vec scale_by_power_of_two(vec x, vec n) { return _mm512_scalef_ps(x, n); }  // x 2^n
// 1 / d for d >= 1: the 14-bit estimate and one Newton step.
inline vec reciprocal(vec d) {
  vec r = _mm512_rcp14_ps(d);
  return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, set1(2.0f)));
}
inline mask greater(vec a, vec b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
inline mask less(vec a, vec b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
inline mask greater_equal(vec a, vec b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
inline mask less_equal(vec a, vec b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
inline mask both(mask a, mask b) { return a & b; }
inline vec where(mask m, vec a) { return _mm512_maskz_mov_ps(m, a); }  // a, else 0

inline vec load(const float* p) { return _mm512_loadu_ps(p); }
inline vec load(const uint16_t* p) {
  __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}
inline void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
// Rounded to nearest even by the CPU's conversion (vcvtneps2bf16).
inline void store(uint16_t* p, vec v) {
  __m256bh rounded = _mm512_cvtneps_pbh(v);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), reinterpret_cast<__m256i&>(rounded));
}

// kLanes 32-bit lanes of raw bits, from and to elements of 4 or 2 bytes (the transpose).
inline ivec load_lanes(const uint32_t* p) { return _mm512_loadu_si512(p); }
inline ivec load_lanes(const uint16_t* p) {
  return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline void store_lanes(uint32_t* p, ivec v) { _mm512_storeu_si512(p, v); }
inline void store_lanes(uint16_t* p, ivec v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(v));
}

// r[i] lane j -> r[j] lane i.
inline void transpose_lanes(ivec r[16]) {
  ivec t[16];
  for (int i = 0; i < 16; i += 2) {  // per 128-bit part: rows i, i+1 interleaved
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  ivec u[16];  // u[g + j]: column 4p + j of rows g..g+3 in 128-bit part p
  for (int g = 0; g < 16; g += 4) {
    for (int h = 0; h < 2; ++h) {
      u[g + 2 * h] = _mm512_unpacklo_epi64(t[g + h], t[g + 2 + h]);
      u[g + 2 * h + 1] = _mm512_unpackhi_epi64(t[g + h], t[g + 2 + h]);
    }
  }
  for (int j = 0; j < 4; ++j) {  // gather the 128-bit parts of each column
    ivec v = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);
    ivec w = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);
    ivec v2 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
    ivec w2 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
    r[j] = _mm512_shuffle_i32x4(v, v2, 0x88);
    r[4 + j] = _mm512_shuffle_i32x4(w, w2, 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(v, v2, 0xdd);
    r[12 + j] = _mm512_shuffle_i32x4(w, w2, 0xdd);
  }
}

#else  // CONVLSTM_AVX2
#if !defined(__AVX2__) || !defined(__FMA__)
#error "needs AVX2 and FMA"
#endif
constexpr int kLanes = 8;
using vec = __m256;
using ivec = __m256i;
using mask = __m256;  // all ones or all zeros per lane

inline vec set1(float x) { return _mm256_set1_ps(x); }
inline vec zero() { return _mm256_setzero_ps(); }
inline vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
inline vec sub(vec a, vec b) { return _mm256_sub_ps(a, b); }
inline vec mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
inline vec div(vec a, vec b) { return _mm256_div_ps(a, b); }
inline vec fmadd(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
inline vec fnmadd(vec a, vec b, vec c) { return _mm256_fnmadd_ps(a, b, c); }
inline vec min(vec a, vec b) { return _mm256_min_ps(a, b); }
inline vec max(vec a, vec b) { return _mm256_max_ps(a, b); }
// The empty asm makes the product a value the compiler cannot fuse with the sum.
inline vec mul_then_add(vec a, vec b, vec c) {
  vec product = _mm256_mul_ps(a, b);
  __asm__("" : "+x"(product));
  return _mm256_add_ps(product, c);
}
inline vec round_nearest(vec x) {
  return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
// x 2^n for integral n in [-126, 127] (exp's range): 2^n built in the exponent bits is
// exact, so the product is rounded as vscalefps rounds it.
inline vec scale_by_power_of_two(vec x, vec n) {
  __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  return _mm256_mul_ps(x, _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23)));
}
// 1 / d, divided: AVX2's estimate has 12 bits, and with the two Newton steps it needs
// it was no faster (docs/performance.md) and rounded 2-3 % of bfloat16 results of the
// hard sigmoids' tanh one unit away from the generated loops'.
inline vec reciprocal(vec d) { return _mm256_div_ps(set1(1.0f), d); }
inline mask greater(vec a, vec b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
inline mask less(vec a, vec b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
inline mask greater_equal(vec a, vec b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
inline mask less_equal(vec a, vec b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
inline mask both(mask a, mask b) { return _mm256_and_ps(a, b); }
inline vec where(mask m, vec a) { return _mm256_and_ps(m, a); }

inline vec load(const float* p) { return _mm256_loadu_ps(p); }
inline vec load(const uint16_t* p) {
  __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}
inline void store(float* p, vec v) { _mm256_storeu_ps(p, v); }
// 8 lanes of 16-bit values held in 32-bit lanes, packed and stored.
inline void store_halves(uint16_t* p, __m256i v) {
  __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
}
// Rounded to nearest even as PyTorch rounds (c10::BFloat16): the upper half of the bits
// plus 0x7fff and the lowest kept bit; a NaN stays a quiet NaN.
inline void store(uint16_t* p, vec v) {
  __m256i bits = _mm256_castps_si256(v);
  __m256i kept = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i bias = _mm256_add_epi32(kept, _mm256_set1_epi32(0x7fff));
  __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, bias), 16);
  __m256i nan = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
  __m256i is_nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  store_halves(p, _mm256_blendv_epi8(rounded, nan, is_nan));
}

inline ivec load_lanes(const uint32_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline ivec load_lanes(const uint16_t* p) {
  return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline void store_lanes(uint32_t* p, ivec v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
}
inline void store_lanes(uint16_t* p, ivec v) { store_halves(p, v); }

// r[i] lane j -> r[j] lane i.
inline void transpose_lanes(ivec r[8]) {
  ivec t[8], u[8];
  for (int i = 0; i < 8; i += 2) {  // per 128-bit half: rows i, i+1 interleaved
    t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int g = 0; g < 8; g += 4) {  // u[g + j]: column 4p + j of rows g..g+3 in half p
    for (int h = 0; h < 2; ++h) {
      u[g + 2 * h] = _mm256_unpacklo_epi64(t[g + h], t[g + 2 + h]);
      u[g + 2 * h + 1] = _mm256_unpackhi_epi64(t[g + h], t[g + 2 + h]);
    }
  }
  for (int j = 0; j < 4; ++j) {  // the halves of each column: rows 0..3, then 4..7
    r[j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x20);
    r[4 + j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x31);
  }
}
#endif

// exp(x) on [-87, 88]: x = n ln2 + r, |r| <= ln2 / 2, the degree-6 Taylor polynomial for
// exp(r) (remainder below 1.2e-7 relative), scaled by 2^n. The constant comes first in
// min/max, so a NaN propagates.
inline vec exp_ps(vec x) {
  x = max(set1(-87.0f), min(set1(88.0f), x));
  vec n = round_nearest(mul(x, set1(1.44269504089f)));
  vec r = fnmadd(n, set1(0.693359375f), x);
  r = fnmadd(n, set1(-2.12194440e-4f), r);
  vec p = set1(1.0f / 720);
  p = fmadd(p, r, set1(1.0f / 120));
  p = fmadd(p, r, set1(1.0f / 24));
  p = fmadd(p, r, set1(1.0f / 6));
  p = fmadd(p, r, set1(0.5f));
  p = fmadd(p, r, set1(1.0f));
  p = fmadd(p, r, set1(1.0f));
  return scale_by_power_of_two(p, n);
}

inline vec sigmoid_ps(vec x) { return reciprocal(add(set1(1.0f), exp_ps(sub(zero(), x)))); }

inline vec tanh_ps(vec x) {  // 2 s(2x) - 1
  vec s = sigmoid_ps(add(x, x));
  return sub(add(s, s), set1(1.0f));
}

// The kinds (gates.GateKind): the gates' s in the low two bits, kRelu for phi = relu.
constexpr int kSigmoid = 0, kHardSigmoid = 1, kHardSigmoidKeras2 = 2, kGates = 3, kRelu = 4;

inline vec hard_sigmoid_ps(vec x) {
  vec v = add(x, set1(3.0f));
  return div(min(set1(6.0f), max(zero(), v)), set1(6.0f));
}

// 0.2 x + 0.5 rounded twice, as the reference computes it: a fused multiply-add would
// clip the kinks' neighbours differently (0.2f * -2.5f + 0.5f is -7e-9, not 0).
inline vec keras2_linear_ps(vec x) { return mul_then_add(x, set1(0.2f), set1(0.5f)); }

inline vec hard_sigmoid_keras2_ps(vec x) {
  return min(set1(1.0f), max(zero(), keras2_linear_ps(x)));
}

template <int kind>
inline vec gate_ps(vec x) {
  if ((kind & kGates) == kHardSigmoid) return hard_sigmoid_ps(x);
  if ((kind & kGates) == kHardSigmoidKeras2) return hard_sigmoid_keras2_ps(x);
  return sigmoid_ps(x);
}

// s'(x) from x and a = s(x).
template <int kind>
inline vec slope_ps(vec x, vec a) {
  if ((kind & kGates) == kHardSigmoid)
    return where(both(greater(x, set1(-3.0f)), less(x, set1(3.0f))), set1(1.0f / 6.0f));
  if ((kind & kGates) == kHardSigmoidKeras2) {
    vec v = keras2_linear_ps(x);
    return where(both(greater_equal(v, zero()), less_equal(v, set1(1.0f))), set1(0.2f));
  }
  return mul(a, sub(set1(1.0f), a));
}

// phi(x); the constant first in max, so that a NaN stays NaN.
template <int kind>
inline vec act_ps(vec x) {
  if (kind & kRelu) return max(zero(), x);
  return tanh_ps(x);
}

// phi'(x) from x and a = phi(x).
template <int kind>
inline vec act_slope_ps(vec x, vec a) {
  if (kind & kRelu) return where(greater(x, zero()), set1(1.0f));
  return fnmadd(a, a, set1(1.0f));
}

inline int64_t strided_row(int64_t r, int64_t rows_per_batch, int64_t batch_stride, int64_t K) {
  return (r / rows_per_batch) * batch_stride + (r % rows_per_batch) * K;
}

template <typename T, int kind, bool peep>
void forward_rows(const T* z, const float* c_prev, const float* w, T* h, float* c, int64_t rows,
                  int64_t K, int64_t P, int64_t rows_per_batch, int64_t batch_stride,
                  int threads) {
  // Over rows and vectors of them: a few long rows (channels-first) also split.
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < K; k += kLanes) {
      const T* zr = z + r * 4 * K;
      T* hr = h + strided_row(r, rows_per_batch, batch_stride, K);
      const float* wr = peep ? w + (r % P) * K + k : nullptr;
      vec cp = load(c_prev + r * K + k);
      vec z_i = load(zr + k), z_f = load(zr + K + k), z_o = load(zr + 3 * K + k);
      if (peep) {
        z_i = fmadd(load(wr), cp, z_i);
        z_f = fmadd(load(wr + P * K), cp, z_f);
      }
      vec i = gate_ps<kind>(z_i);
      vec f = gate_ps<kind>(z_f);
      vec g = act_ps<kind>(load(zr + 2 * K + k));
      vec cell = fmadd(f, cp, mul(i, g));
      if (peep) z_o = fmadd(load(wr + 2 * P * K), cell, z_o);
      vec o = gate_ps<kind>(z_o);
      store(c + r * K + k, cell);
      store(hr + k, mul(o, act_ps<kind>(cell)));
    }
  }
}

// One vector of one row backward; with peepholes it adds the row's terms of the weights'
// gradient into acc[3].
template <typename T, int kind, bool more, bool peep>
inline void backward_vector(const T* dh, const float* dc_out, const T* z, const float* c,
                            const float* c_prev, const float* w, const T* dh_more, T* dz,
                            float* dc_prev, int64_t r, int64_t k, int64_t K, int64_t P,
                            int64_t rows_per_batch, int64_t batch_stride, vec acc[3]) {
  const vec one = set1(1.0f);
  const T* zr = z + r * 4 * K;
  T* dzr = dz + r * 4 * K;
  const int64_t at = r * K + k;
  const float* wr = peep ? w + (r % P) * K + k : nullptr;
  vec cp = load(c_prev + at), cell = load(c + at);
  vec z_i = load(zr + k), z_f = load(zr + K + k), z_o = load(zr + 3 * K + k);
  if (peep) {
    z_i = fmadd(load(wr), cp, z_i);
    z_f = fmadd(load(wr + P * K), cp, z_f);
    z_o = fmadd(load(wr + 2 * P * K), cell, z_o);
  }
  vec z_g = load(zr + 2 * K + k);
  vec i = gate_ps<kind>(z_i);
  vec f = gate_ps<kind>(z_f);
  vec g = act_ps<kind>(z_g);
  vec o = gate_ps<kind>(z_o);
  vec grad_h = load(dh + at);
  if (more) {
    grad_h = add(grad_h, load(dh_more + strided_row(r, rows_per_batch, batch_stride, K) + k));
  }
  vec act_c = act_ps<kind>(cell);
  vec d_o = mul(mul(grad_h, act_c), slope_ps<kind>(z_o, o));
  vec dc = fmadd(mul(grad_h, o), act_slope_ps<kind>(cell, act_c), load(dc_out + at));
  if (peep) dc = fmadd(d_o, load(wr + 2 * P * K), dc);
  vec d_i = mul(mul(dc, g), slope_ps<kind>(z_i, i));
  vec d_f = mul(mul(dc, cp), slope_ps<kind>(z_f, f));
  store(dzr + k, d_i);
  store(dzr + K + k, d_f);
  store(dzr + 2 * K + k, mul(mul(dc, i), act_slope_ps<kind>(z_g, g)));
  store(dzr + 3 * K + k, d_o);
  vec d_prev = mul(dc, f);
  if (peep) {
    d_prev = fmadd(d_i, load(wr), d_prev);
    d_prev = fmadd(d_f, load(wr + P * K), d_prev);
    acc[0] = fmadd(d_i, cp, acc[0]);
    acc[1] = fmadd(d_f, cp, acc[1]);
    acc[2] = fmadd(d_o, cell, acc[2]);
  }
  store(dc_prev + at, d_prev);
}

template <typename T, int kind, bool more, bool peep>
void backward_rows(const T* dh, const float* dc_out, const T* z, const float* c,
                   const float* c_prev, const float* w, const T* dh_more, T* dz,
                   float* dc_prev, float* dw, int64_t rows, int64_t K, int64_t P,
                   int64_t rows_per_batch, int64_t batch_stride, int threads) {
  if (!peep) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < K; k += kLanes) {
        vec unused[3];
        backward_vector<T, kind, more, false>(dh, dc_out, z, c, c_prev, w, dh_more, dz,
                                              dc_prev, r, k, K, P, rows_per_batch,
                                              batch_stride, unused);
      }
    }
    return;
  }
  // Each (row of the weights, vector) goes over the samples that share it, so that its
  // gradient is summed in registers and written by one thread: no reduction across
  // threads.
  const int64_t samples = rows / P;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t k = 0; k < K; k += kLanes) {
      vec acc[3] = {zero(), zero(), zero()};
      for (int64_t b = 0; b < samples; ++b)
        backward_vector<T, kind, more, true>(dh, dc_out, z, c, c_prev, w, dh_more, dz, dc_prev,
                                             b * P + p, k, K, P, rows_per_batch, batch_stride,
                                             acc);
      for (int j = 0; j < 3; ++j) {
        float* out = dw + j * P * K + p * K + k;
        store(out, add(load(out), acc[j]));
      }
    }
  }
}

// The loops for a kind known at run time (one of the six).
template <typename T, bool peep>
auto forward_for(int64_t kind) {
  switch (kind) {
    case kHardSigmoid: return forward_rows<T, kHardSigmoid, peep>;
    case kHardSigmoidKeras2: return forward_rows<T, kHardSigmoidKeras2, peep>;
    case kRelu | kSigmoid: return forward_rows<T, kRelu | kSigmoid, peep>;
    case kRelu | kHardSigmoid: return forward_rows<T, kRelu | kHardSigmoid, peep>;
    case kRelu | kHardSigmoidKeras2: return forward_rows<T, kRelu | kHardSigmoidKeras2, peep>;
    default: return forward_rows<T, kSigmoid, peep>;
  }
}

template <typename T>
void forward(const void* z, const float* c_prev, const float* w, void* h, float* c,
             int64_t rows, int64_t K, int64_t P, int64_t rows_per_batch, int64_t batch_stride,
             int64_t kind, int threads) {
  auto run = P > 0 ? forward_for<T, true>(kind) : forward_for<T, false>(kind);
  run(static_cast<const T*>(z), c_prev, w, static_cast<T*>(h), c, rows, K, P, rows_per_batch,
      batch_stride, threads);
}

template <typename T, bool more, bool peep>
auto backward_for(int64_t kind) {
  switch (kind) {
    case kHardSigmoid: return backward_rows<T, kHardSigmoid, more, peep>;
    case kHardSigmoidKeras2: return backward_rows<T, kHardSigmoidKeras2, more, peep>;
    case kRelu | kSigmoid: return backward_rows<T, kRelu | kSigmoid, more, peep>;
    case kRelu | kHardSigmoid: return backward_rows<T, kRelu | kHardSigmoid, more, peep>;
    case kRelu | kHardSigmoidKeras2:
      return backward_rows<T, kRelu | kHardSigmoidKeras2, more, peep>;
    default: return backward_rows<T, kSigmoid, more, peep>;
  }
}

template <typename T>
void backward(const void* dh, const float* dc_out, const void* z, const float* c,
              const float* c_prev, const float* w, const void* dh_more, void* dz,
              float* dc_prev, float* dw, int64_t rows, int64_t K, int64_t P,
              int64_t rows_per_batch, int64_t batch_stride, bool more, int64_t kind,
              int threads) {
  const bool peep = P > 0;
  auto run = more ? (peep ? backward_for<T, true, true>(kind) : backward_for<T, true, false>(kind))
                  : (peep ? backward_for<T, false, true>(kind)
                          : backward_for<T, false, false>(kind));
  run(static_cast<const T*>(dh), dc_out, static_cast<const T*>(z), c, c_prev, w,
      static_cast<const T*>(dh_more), static_cast<T*>(dz), dc_prev, dw, rows, K, P,
      rows_per_batch, batch_stride, threads);
}

// out[b, n, k] = in[b, k, n]: a step (B, F, N) of a channels-first gradient (each sample
// dense, samples `batch_stride` elements apart) as the rows (B, N, F) the backward loop
// reads. It copies bits (element_size 2, 4 or 8 bytes): blocks of kLanes channels x kLanes
// pixels are transposed in registers, as 32-bit lanes; the edges, and 8-byte elements,
// one element at a time.
template <typename T>
void transpose_tile(const T* src, T* dst, int64_t F, int64_t N, int64_t k0, int64_t k1,
                    int64_t n0, int64_t n1) {
  constexpr bool lanes = sizeof(T) == 2 || sizeof(T) == 4;
  if constexpr (lanes) {
    if (k1 - k0 == kLanes && n1 - n0 == kLanes) {
      ivec r[kLanes];
      for (int k = 0; k < kLanes; ++k) r[k] = load_lanes(src + (k0 + k) * N + n0);
      transpose_lanes(r);
      for (int n = 0; n < kLanes; ++n) store_lanes(dst + (n0 + n) * F + k0, r[n]);
      return;
    }
  }
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t k = k0; k < k1; ++k) dst[n * F + k] = src[k * N + n];
}

template <typename T>
void transpose(const T* in, T* out, int64_t B, int64_t F, int64_t N, int64_t batch_stride,
               int threads) {
  const int64_t tiles = (N + kLanes - 1) / kLanes;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t tile = 0; tile < tiles; ++tile) {
      const int64_t n0 = tile * kLanes, n1 = n0 + kLanes < N ? n0 + kLanes : N;
      for (int64_t k0 = 0; k0 < F; k0 += kLanes) {
        const int64_t k1 = k0 + kLanes < F ? k0 + kLanes : F;
        transpose_tile(in + b * batch_stride, out + b * N * F, F, N, k0, k1, n0, n1);
      }
    }
  }
}

// The weight (and bias) gradient of a 2-D stride-1 convolution,
// dw[o, n] = sum over samples b and output pixels (h, w) of dz[b, h, w, o] * x_n[b, h, w],
// where x_n is tap n = (c, i, j) of the padded float32 input, x[b, c, h + i, w + j], or 1
// for the bias: per output row (b, h) and kLanes outputs, an FMA per pixel and tap into an
// accumulator in a register, the row's gradient staying in L1 across the passes. For a
// few input channels a matrix product with the unfolded input (9 columns for one channel
// and a 3x3 kernel) leaves the vector units mostly idle; with AVX2, oneDNN's weight
// gradient is slower than this loop at any channel count (docs/performance.md).
constexpr int kGroup = 8;  // taps per pass: 8 accumulators, their input and the gradient

template <typename T, int N>
void accumulate(const T* dz, const float* x, const int64_t* offsets, bool bias_last,
                int64_t W, int64_t sw, int64_t O, float* partial) {
  // dz: the row's (W, O); x: its first input element; offsets: of the group's taps
  for (int64_t o = 0; o < O; o += kLanes) {
    vec acc[N];
    for (int n = 0; n < N; ++n) acc[n] = zero();
    for (int64_t w = 0; w < W; ++w) {
      vec d = load(dz + w * O + o);
      const float* xw = x + w * sw;
      for (int n = 0; n < N; ++n) {
        vec value = (bias_last && n == N - 1) ? set1(1.0f) : set1(xw[offsets[n]]);
        acc[n] = fmadd(d, value, acc[n]);
      }
    }
    for (int n = 0; n < N; ++n) {
      float* out = partial + n * O + o;
      store(out, add(load(out), acc[n]));
    }
  }
}

template <typename T>
using Accumulate = void (*)(const T*, const float*, const int64_t*, bool, int64_t, int64_t,
                            int64_t, float*);

template <typename T>
Accumulate<T> accumulator(int n) {
  static const Accumulate<T> table[] = {
      nullptr, accumulate<T, 1>, accumulate<T, 2>, accumulate<T, 3>, accumulate<T, 4>,
      accumulate<T, 5>, accumulate<T, 6>, accumulate<T, 7>, accumulate<T, 8>};
  return table[n];
}

template <typename T>
void weight_grad(const T* dz, const float* x, float* dw, int64_t B, int64_t H, int64_t W,
                 int64_t O, int64_t C, int64_t kh, int64_t kw, int64_t sb, int64_t sc,
                 int64_t sh, int64_t sw, bool bias, int threads) {
  const int64_t taps = C * kh * kw, columns = taps + (bias ? 1 : 0);
  std::vector<int64_t> offsets(columns);  // the bias column's is never read
  for (int64_t c = 0, n = 0; c < C; ++c)
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j) offsets[n++] = c * sc + i * sh + j * sw;
  const int64_t groups = (columns + kGroup - 1) / kGroup;
  const int64_t size = (columns + groups - 1) / groups;  // balanced passes
#pragma omp parallel num_threads(threads)
  {
    float* partial = new float[columns * O]();
#pragma omp for schedule(static)
    for (int64_t row = 0; row < B * H; ++row) {
      const int64_t b = row / H, h = row % H;
      const T* dz_row = dz + row * W * O;
      const float* x_row = x + b * sb + h * sh;
      for (int64_t group = 0; group < columns; group += size) {
        const int n = static_cast<int>(columns - group < size ? columns - group : size);
        const bool bias_last = bias && group + n == columns;
        accumulator<T>(n)(dz_row, x_row, offsets.data() + group, bias_last, W, sw, O,
                          partial + group * O);
      }
    }
#pragma omp critical
    for (int64_t n = 0; n < columns; ++n)
      for (int64_t o = 0; o < O; ++o) dw[o * columns + n] += partial[n * O + o];
    delete[] partial;
  }
}

}  // namespace

// The entry points. `bfloat16`: the gates, h and their gradients are bfloat16 (else
// float32); `kind`: the gate kind (kRelu added for relu cells); `threads`: OpenMP threads.
#if defined(CONVLSTM_LIBRARY) || \
    (!defined(CONVLSTM_BACKWARD) && !defined(CONVLSTM_WEIGHT_GRAD) && !defined(CONVLSTM_TRANSPOSE))
extern "C" void ENTRY(forward)(const void* z, const float* c_prev, const float* peep, void* h,
                               float* c, int64_t rows, int64_t K, int64_t peep_rows,
                               int64_t rows_per_batch, int64_t batch_stride, int64_t kind,
                               int64_t bfloat16, int64_t threads) {
  auto run = bfloat16 ? forward<uint16_t> : forward<float>;
  run(z, c_prev, peep, h, c, rows, K, peep_rows, rows_per_batch, batch_stride, kind,
      static_cast<int>(threads));
}
#endif

#if defined(CONVLSTM_LIBRARY) || defined(CONVLSTM_BACKWARD)
// dpeep: added into (the caller zeroes it, or sums steps in it); unused without peepholes.
extern "C" void ENTRY(backward)(const void* dh, const float* dc_out, const void* z,
                                const float* c, const float* c_prev, const float* peep,
                                const void* dh_more, void* dz, float* dc_prev, float* dpeep,
                                int64_t rows, int64_t K, int64_t peep_rows,
                                int64_t rows_per_batch, int64_t batch_stride, int64_t has_more,
                                int64_t kind, int64_t bfloat16, int64_t threads) {
  auto run = bfloat16 ? backward<uint16_t> : backward<float>;
  run(dh, dc_out, z, c, c_prev, peep, dh_more, dz, dc_prev, dpeep, rows, K, peep_rows,
      rows_per_batch, batch_stride, has_more, kind, static_cast<int>(threads));
}
#endif

#if defined(CONVLSTM_LIBRARY) || defined(CONVLSTM_TRANSPOSE)
extern "C" void ENTRY(transpose)(const void* in, void* out, int64_t B, int64_t F, int64_t N,
                                 int64_t batch_stride, int64_t element_size, int64_t threads) {
  const int t = static_cast<int>(threads);
  if (element_size == 2)
    transpose(static_cast<const uint16_t*>(in), static_cast<uint16_t*>(out), B, F, N,
              batch_stride, t);
  else if (element_size == 4)
    transpose(static_cast<const uint32_t*>(in), static_cast<uint32_t*>(out), B, F, N,
              batch_stride, t);
  else
    transpose(static_cast<const uint64_t*>(in), static_cast<uint64_t*>(out), B, F, N,
              batch_stride, t);
}
#endif

#if defined(CONVLSTM_LIBRARY) || defined(CONVLSTM_WEIGHT_GRAD)
// dw: (O, columns) float32, zeroed by the caller; x float32, strides in elements.
extern "C" void ENTRY(weight_grad)(const void* dz, const float* x, float* dw, int64_t B,
                                   int64_t H, int64_t W, int64_t O, int64_t C, int64_t kh,
                                   int64_t kw, int64_t sb, int64_t sc, int64_t sh, int64_t sw,
                                   int64_t bias, int64_t bfloat16, int64_t threads) {
  if (bfloat16)
    weight_grad(static_cast<const uint16_t*>(dz), x, dw, B, H, W, O, C, kh, kw, sb, sc, sh, sw,
                bias, static_cast<int>(threads));
  else
    weight_grad(static_cast<const float*>(dz), x, dw, B, H, W, O, C, kh, kw, sb, sc, sh, sw,
                bias, static_cast<int>(threads));
}
#endif

#ifdef CONVLSTM_SOURCE_SHA256
// The source the library was built from (setup.py): simd.py builds the loops at run time
// instead of loading a library older than the source beside it.
extern "C" const char* convlstm_source_sha256() { return CONVLSTM_SOURCE_SHA256; }
#endif
