// The ConvLSTM gate step on CPUs with AVX-512 BF16 (see simd.py).
//
// Rows as in gates.py: the gates z and their gradient are (rows, 4, K) in order
// i, f, g, o, of T (bfloat16 or float32); the cells and their gradients (rows, K) float32;
// the gradient reaching h from the next step (rows, K) of T. h, and the gradient reaching
// it from the output, are rows of T in groups of `rows_per_batch` consecutive rows, one
// group every `batch_stride` elements (a step of a (B, T, ...) sequence). K is a multiple
// of 16: one vector is 16 lanes of a row.
// A cell may alias the cell it is computed from (every lane is read before it is written).
//
//   forward:  i, f, o = s(z_i), s(z_f), s(z_o);  g = tanh(z_g);  c = f c_prev + i g;
//             h = o tanh(c)
//   backward: dc = dc_out + dh o (1 - tanh(c)^2);  dz_i = dc g s'(z_i);
//             dz_f = dc c_prev s'(z_f);  dz_g = dc i (1 - g^2);  dz_o = dh tanh(c) s'(z_o);
//             dc_prev = dc f
//
// s is one of the gate kinds of gates.GateKind: the sigmoid, Keras 3's hard sigmoid
// relu6(x + 3) / 6 (s' = 1/6 for -3 < x < 3, else 0) or Keras 2's clip(0.2 x + 0.5, 0, 1)
// (s' = 0.2 where 0 <= 0.2 x + 0.5 <= 1, else 0): at the kinks as autograd differentiates
// the reference functions. Compiled by PyTorch's Inductor (its compiler flags add
// -mavx512bf16 where the CPU has it), or at install time (setup.py); CONVLSTM_BACKWARD,
// CONVLSTM_WEIGHT_GRAD or CONVLSTM_TRANSPOSE selects the entry point, and simd.py reads
// each `kernel`'s parameter types from here, in the order they are defined.
#include <immintrin.h>
#include <cstdint>
#include <omp.h>

#if !defined(__AVX512F__) || !defined(__AVX512BF16__)
#error "needs AVX-512 F and BF16"
#endif

namespace {

// 16 lanes of float32 (T = float) or bfloat16 (T = uint16_t).
inline __m512 load(const float* p) { return _mm512_loadu_ps(p); }

inline __m512 load(const uint16_t* p) {
  __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}

inline void store(float* p, __m512 v) { _mm512_storeu_ps(p, v); }

// Rounded to nearest even by the CPU's conversion (vcvtneps2bf16).
inline void store(uint16_t* p, __m512 v) {
  __m256bh rounded = _mm512_cvtneps_pbh(v);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), reinterpret_cast<__m256i&>(rounded));
}

// exp(x) on [-87, 88]: x = n ln2 + r, |r| <= ln2 / 2, the degree-6 Taylor polynomial for
// exp(r) (remainder below 1.2e-7 relative), scaled by 2^n. The constant comes first in
// min/max, so a NaN propagates.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-87.0f), _mm512_min_ps(_mm512_set1_ps(88.0f), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504089f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// 1 / d for d >= 1: the 14-bit estimate and one Newton step.
inline __m512 reciprocal_ps(__m512 d) {
  __m512 r = _mm512_rcp14_ps(d);
  return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

inline __m512 sigmoid_ps(__m512 x) {
  __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), x));
  return reciprocal_ps(_mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

inline __m512 tanh_ps(__m512 x) {  // 2 s(2x) - 1
  __m512 s = sigmoid_ps(_mm512_add_ps(x, x));
  return _mm512_sub_ps(_mm512_add_ps(s, s), _mm512_set1_ps(1.0f));
}

// The gate kinds (fused_gates.GateKind).
constexpr int kSigmoid = 0, kHardSigmoid = 1, kHardSigmoidKeras2 = 2;

inline __m512 hard_sigmoid_ps(__m512 x) {
  __m512 v = _mm512_add_ps(x, _mm512_set1_ps(3.0f));
  v = _mm512_min_ps(_mm512_set1_ps(6.0f), _mm512_max_ps(_mm512_setzero_ps(), v));
  return _mm512_div_ps(v, _mm512_set1_ps(6.0f));
}

// 0.2 x + 0.5 rounded twice, as the reference computes it: a fused multiply-add would
// clip the kinks' neighbours differently (0.2f * -2.5f + 0.5f is -7e-9, not 0). The
// explicitly rounded forms cannot be contracted into one whatever the compiler flags.
inline __m512 keras2_linear_ps(__m512 x) {
  constexpr int nearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  __m512 scaled = _mm512_mul_round_ps(x, _mm512_set1_ps(0.2f), nearest);
  return _mm512_add_round_ps(scaled, _mm512_set1_ps(0.5f), nearest);
}

inline __m512 hard_sigmoid_keras2_ps(__m512 x) {
  __m512 v = keras2_linear_ps(x);
  return _mm512_min_ps(_mm512_set1_ps(1.0f), _mm512_max_ps(_mm512_setzero_ps(), v));
}

template <int kind>
inline __m512 gate_ps(__m512 x) {
  if (kind == kHardSigmoid) return hard_sigmoid_ps(x);
  if (kind == kHardSigmoidKeras2) return hard_sigmoid_keras2_ps(x);
  return sigmoid_ps(x);
}

// s'(x) from x and a = s(x).
template <int kind>
inline __m512 slope_ps(__m512 x, __m512 a) {
  if (kind == kHardSigmoid) {
    __mmask16 inside = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-3.0f), _CMP_GT_OQ) &
                       _mm512_cmp_ps_mask(x, _mm512_set1_ps(3.0f), _CMP_LT_OQ);
    return _mm512_maskz_mov_ps(inside, _mm512_set1_ps(1.0f / 6.0f));
  }
  if (kind == kHardSigmoidKeras2) {
    __m512 v = keras2_linear_ps(x);
    __mmask16 inside = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ) &
                       _mm512_cmp_ps_mask(v, _mm512_set1_ps(1.0f), _CMP_LE_OQ);
    return _mm512_maskz_mov_ps(inside, _mm512_set1_ps(0.2f));
  }
  return _mm512_mul_ps(a, _mm512_sub_ps(_mm512_set1_ps(1.0f), a));
}

constexpr int64_t kMaxColumns = 65;  // the weight gradient's taps and bias, at most

inline int64_t strided_row(int64_t r, int64_t rows_per_batch, int64_t batch_stride, int64_t K) {
  return (r / rows_per_batch) * batch_stride + (r % rows_per_batch) * K;
}

template <typename T, int kind>
void forward_rows(const T* z, const float* c_prev, T* h, float* c, int64_t rows, int64_t K,
                  int64_t rows_per_batch, int64_t batch_stride, int threads) {
  // Over rows and 16-lane pieces of them: a few long rows (channels-first) also split.
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < K; k += 16) {
      const T* zr = z + r * 4 * K;
      T* hr = h + strided_row(r, rows_per_batch, batch_stride, K);
      __m512 i = gate_ps<kind>(load(zr + k));
      __m512 f = gate_ps<kind>(load(zr + K + k));
      __m512 g = tanh_ps(load(zr + 2 * K + k));
      __m512 o = gate_ps<kind>(load(zr + 3 * K + k));
      __m512 cell = _mm512_fmadd_ps(f, _mm512_loadu_ps(c_prev + r * K + k), _mm512_mul_ps(i, g));
      _mm512_storeu_ps(c + r * K + k, cell);
      store(hr + k, _mm512_mul_ps(o, tanh_ps(cell)));
    }
  }
}

template <typename T, int kind, bool more>
void backward_rows(const T* dh, const float* dc_out, const T* z, const float* c,
                   const float* c_prev, const T* dh_more, T* dz, float* dc_prev, int64_t rows,
                   int64_t K, int64_t rows_per_batch, int64_t batch_stride, int threads) {
  const __m512 one = _mm512_set1_ps(1.0f);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < K; k += 16) {
      const T* zr = z + r * 4 * K;
      T* dzr = dz + r * 4 * K;
      const T* mr = more ? dh_more + strided_row(r, rows_per_batch, batch_stride, K) : nullptr;
      const int64_t at = r * K + k;
      __m512 z_i = load(zr + k), z_f = load(zr + K + k), z_o = load(zr + 3 * K + k);
      __m512 i = gate_ps<kind>(z_i);
      __m512 f = gate_ps<kind>(z_f);
      __m512 g = tanh_ps(load(zr + 2 * K + k));
      __m512 o = gate_ps<kind>(z_o);
      __m512 grad_h = load(dh + at);
      if (more) grad_h = _mm512_add_ps(grad_h, load(mr + k));
      __m512 tanh_c = tanh_ps(_mm512_loadu_ps(c + at));
      __m512 dc = _mm512_fmadd_ps(_mm512_mul_ps(grad_h, o), _mm512_fnmadd_ps(tanh_c, tanh_c, one),
                                  _mm512_loadu_ps(dc_out + at));
      store(dzr + k, _mm512_mul_ps(_mm512_mul_ps(dc, g), slope_ps<kind>(z_i, i)));
      __m512 c_before = _mm512_loadu_ps(c_prev + at);
      store(dzr + K + k, _mm512_mul_ps(_mm512_mul_ps(dc, c_before), slope_ps<kind>(z_f, f)));
      store(dzr + 2 * K + k, _mm512_mul_ps(_mm512_mul_ps(dc, i), _mm512_fnmadd_ps(g, g, one)));
      store(dzr + 3 * K + k, _mm512_mul_ps(_mm512_mul_ps(grad_h, tanh_c), slope_ps<kind>(z_o, o)));
      _mm512_storeu_ps(dc_prev + at, _mm512_mul_ps(dc, f));
    }
  }
}

}  // namespace

// `bfloat16`: the gates, h and their gradients are bfloat16 (else float32); `kind`: the
// gate kind.
#if !defined(CONVLSTM_BACKWARD) && !defined(CONVLSTM_WEIGHT_GRAD) && !defined(CONVLSTM_TRANSPOSE)
template <typename T>
void forward(const void* z, const float* c_prev, void* h, float* c, int64_t rows, int64_t K,
             int64_t rows_per_batch, int64_t batch_stride, int64_t kind, int threads) {
  auto run = kind == kHardSigmoidKeras2 ? forward_rows<T, kHardSigmoidKeras2>
             : kind == kHardSigmoid     ? forward_rows<T, kHardSigmoid>
                                        : forward_rows<T, kSigmoid>;
  run(static_cast<const T*>(z), c_prev, static_cast<T*>(h), c, rows, K, rows_per_batch,
      batch_stride, threads);
}

extern "C" void kernel(const void* z, const float* c_prev, void* h, float* c, int64_t rows,
                       int64_t K, int64_t rows_per_batch, int64_t batch_stride, int64_t kind,
                       int64_t bfloat16, int64_t threads) {
  auto run = bfloat16 ? forward<uint16_t> : forward<float>;
  run(z, c_prev, h, c, rows, K, rows_per_batch, batch_stride, kind, static_cast<int>(threads));
}
#elif defined(CONVLSTM_BACKWARD)
template <typename T, int kind>
auto backward_for(bool more) {
  return more ? backward_rows<T, kind, true> : backward_rows<T, kind, false>;
}

template <typename T>
void backward(const void* dh, const float* dc_out, const void* z, const float* c,
              const float* c_prev, const void* dh_more, void* dz, float* dc_prev, int64_t rows,
              int64_t K, int64_t rows_per_batch, int64_t batch_stride, bool more, int64_t kind,
              int threads) {
  auto run = kind == kHardSigmoidKeras2 ? backward_for<T, kHardSigmoidKeras2>(more)
             : kind == kHardSigmoid     ? backward_for<T, kHardSigmoid>(more)
                                        : backward_for<T, kSigmoid>(more);
  run(static_cast<const T*>(dh), dc_out, static_cast<const T*>(z), c, c_prev,
      static_cast<const T*>(dh_more), static_cast<T*>(dz), dc_prev, rows, K, rows_per_batch,
      batch_stride, threads);
}

extern "C" void kernel(const void* dh, const float* dc_out, const void* z, const float* c,
                       const float* c_prev, const void* dh_more, void* dz, float* dc_prev,
                       int64_t rows, int64_t K, int64_t rows_per_batch, int64_t batch_stride,
                       int64_t has_more, int64_t kind, int64_t bfloat16, int64_t threads) {
  auto run = bfloat16 ? backward<uint16_t> : backward<float>;
  run(dh, dc_out, z, c, c_prev, dh_more, dz, dc_prev, rows, K, rows_per_batch, batch_stride,
      has_more, kind, static_cast<int>(threads));
}
#elif defined(CONVLSTM_TRANSPOSE)
// out[b, n, k] = in[b, k, n]: a step (B, F, N) of a channels-first gradient (each sample
// dense, samples `batch_stride` elements apart) as the rows (B, N, F) the backward loop
// reads. It copies bits (element_size 2, 4 or 8 bytes): blocks of 16 channels x 16
// pixels are transposed in registers, as 32-bit lanes; the edges, and 8-byte elements,
// one element at a time.
inline __m512i load_lanes(const uint32_t* p) { return _mm512_loadu_si512(p); }

inline __m512i load_lanes(const uint16_t* p) {
  return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

inline void store_lanes(uint32_t* p, __m512i v) { _mm512_storeu_si512(p, v); }

inline void store_lanes(uint16_t* p, __m512i v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(v));
}

// r[i] lane j -> r[j] lane i.
inline void transpose16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {  // per 128-bit part: rows i, i+1 interleaved
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  __m512i u[16];  // u[g + j]: column 4p + j of rows g..g+3 in 128-bit part p
  for (int g = 0; g < 16; g += 4) {
    for (int h = 0; h < 2; ++h) {
      u[g + 2 * h] = _mm512_unpacklo_epi64(t[g + h], t[g + 2 + h]);
      u[g + 2 * h + 1] = _mm512_unpackhi_epi64(t[g + h], t[g + 2 + h]);
    }
  }
  for (int j = 0; j < 4; ++j) {  // gather the 128-bit parts of each column
    __m512i v = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);
    __m512i w = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);
    __m512i v2 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
    __m512i w2 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
    r[j] = _mm512_shuffle_i32x4(v, v2, 0x88);
    r[4 + j] = _mm512_shuffle_i32x4(w, w2, 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(v, v2, 0xdd);
    r[12 + j] = _mm512_shuffle_i32x4(w, w2, 0xdd);
  }
}

template <typename T>
void transpose_tile(const T* src, T* dst, int64_t F, int64_t N, int64_t k0, int64_t k1,
                    int64_t n0, int64_t n1) {
  constexpr bool lanes = sizeof(T) == 2 || sizeof(T) == 4;
  if constexpr (lanes) {
    if (k1 - k0 == 16 && n1 - n0 == 16) {
      __m512i r[16];
      for (int k = 0; k < 16; ++k) r[k] = load_lanes(src + (k0 + k) * N + n0);
      transpose16x16(r);
      for (int n = 0; n < 16; ++n) store_lanes(dst + (n0 + n) * F + k0, r[n]);
      return;
    }
  }
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t k = k0; k < k1; ++k) dst[n * F + k] = src[k * N + n];
}

template <typename T>
void transpose(const T* in, T* out, int64_t B, int64_t F, int64_t N, int64_t batch_stride,
               int threads) {
  constexpr int64_t kTile = 16;
  const int64_t tiles = (N + kTile - 1) / kTile;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t tile = 0; tile < tiles; ++tile) {
      const int64_t n0 = tile * kTile, n1 = n0 + kTile < N ? n0 + kTile : N;
      for (int64_t k0 = 0; k0 < F; k0 += kTile) {
        const int64_t k1 = k0 + kTile < F ? k0 + kTile : F;
        transpose_tile(in + b * batch_stride, out + b * N * F, F, N, k0, k1, n0, n1);
      }
    }
  }
}

extern "C" void kernel(const void* in, void* out, int64_t B, int64_t F, int64_t N,
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
#else
// The weight (and bias) gradient of a 2-D stride-1 convolution of a few input channels,
// dw[o, n] = sum over samples b and output pixels (h, w) of dz[b, h, w, o] * x_n[b, h, w],
// where x_n is tap n = (c, i, j) of the padded float32 input, x[b, c, h + i, w + j], or 1
// for the bias: per output row (b, h) and 16 outputs, an FMA per pixel and tap into an
// accumulator in a register, the row's gradient staying in L1 across the passes (a
// matrix product with the unfolded input, 9 columns for one channel and a 3x3 kernel,
// leaves the vector units mostly idle).
constexpr int kGroup = 8;  // taps per pass: 8 accumulators, their input and the gradient

template <typename T, int N>
void accumulate(const T* dz, const float* x, const int64_t* offsets, bool bias_last,
                int64_t W, int64_t sw, int64_t O, float* partial) {
  // dz: the row's (W, O); x: its first input element; offsets: of the group's taps
  for (int64_t o = 0; o < O; o += 16) {
    __m512 acc[N];
    for (int n = 0; n < N; ++n) acc[n] = _mm512_setzero_ps();
    for (int64_t w = 0; w < W; ++w) {
      __m512 d = load(dz + w * O + o);
      const float* xw = x + w * sw;
      for (int n = 0; n < N; ++n) {
        __m512 value = (bias_last && n == N - 1) ? _mm512_set1_ps(1.0f)
                                                 : _mm512_set1_ps(xw[offsets[n]]);
        acc[n] = _mm512_fmadd_ps(d, value, acc[n]);
      }
    }
    for (int n = 0; n < N; ++n) {
      float* out = partial + n * O + o;
      _mm512_storeu_ps(out, _mm512_add_ps(_mm512_loadu_ps(out), acc[n]));
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
  int64_t offsets[kMaxColumns];
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
        accumulator<T>(n)(dz_row, x_row, offsets + group, bias_last, W, sw, O,
                          partial + group * O);
      }
    }
#pragma omp critical
    for (int64_t n = 0; n < columns; ++n)
      for (int64_t o = 0; o < O; ++o) dw[o * columns + n] += partial[n * O + o];
    delete[] partial;
  }
}

// dw: (O, columns) float32, zeroed by the caller; x float32, strides in elements.
extern "C" void kernel(const void* dz, const float* x, float* dw, int64_t B, int64_t H,
                       int64_t W, int64_t O, int64_t C, int64_t kh, int64_t kw, int64_t sb,
                       int64_t sc, int64_t sh, int64_t sw, int64_t bias, int64_t bfloat16,
                       int64_t threads) {
  if (bfloat16)
    weight_grad(static_cast<const uint16_t*>(dz), x, dw, B, H, W, O, C, kh, kw, sb, sc, sh, sw,
                bias, static_cast<int>(threads));
  else
    weight_grad(static_cast<const float*>(dz), x, dw, B, H, W, O, C, kh, kw, sb, sc, sh, sw,
                bias, static_cast<int>(threads));
}
#endif
