/* genloom: a float32 x int8 matrix product for the decode steps of a small text model on CPU
 * (infra/models/int8.py builds this file with the machine's own instructions and loads it).
 *
 *   y[m, n] = (sum_k x[m, k] * q[n, k]) * scale[n] + bias[n]    for every row m and n0 <= n < n1
 *
 * x: float32 [M, K]; q: int8 [N, K], one scale per output row n; y: float32 [M, N]; K % LANES == 0.
 *
 * Every (m, n) is summed the same way whatever M is and wherever row m lies: one vector accumulator
 * over k in steps of LANES (each step one multiply-add of x by the weight widened to float32, which is
 * exact), then the same horizontal sum, then the scale and the bias. So a row gets the same bits alone
 * and in a batch (greedy streams decode the same tokens either way); blocking and threads only decide
 * which of those independent sums run side by side. Built with -ffp-contract=off: a multiply-add the
 * compiler fused in some blocks and not in others would break that.
 *
 * A few input rows (decode steps) widen the weights in registers as they stream past, once per block of
 * NR output rows and MR input rows; the next blocks are prefetched, since the short rows (K of 576 or
 * 1536 bytes) end before the hardware prefetcher has ramped up. Many input rows (a prefill) widen a
 * block of NR weight rows once into a float32 buffer that stays in L1 and multiply up to MRW input rows
 * at a time from it, which leaves the widening off the multiply-add ports. Threads (OpenMP, torch's
 * own runtime once torch has loaded it) take contiguous ranges of output rows. The block sizes fit the
 * registers of the build's vector width (each can be given with -D to try others); they decide only
 * which sums run side by side, never a sum's order, so every build of this file gives the same bits.
 */
#include <stdint.h>
#include <immintrin.h>
#include <omp.h>

#if defined(__AVX512F__)
#define LANES 16
typedef __m512 vec;
#define VZERO() _mm512_setzero_ps()
#define VLOADX(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VLOADQ(p) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p))))
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VSUM(v) _mm512_reduce_add_ps(v)
#elif defined(__AVX2__) && defined(__FMA__)
#define LANES 8
typedef __m256 vec;
#define VZERO() _mm256_setzero_ps()
#define VLOADX(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VLOADQ(p) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))))
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
static inline float VSUM(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#else
#error "needs AVX2 with FMA, or AVX512F"
#endif

#ifndef MR
#define MR 4          /* input rows per register block, widening in registers */
#endif
#ifndef MRW           /* input rows per register block, from the widened buffer: MRW x NR accumulators */
#if LANES == 16
#define MRW 6         /* 24 of AVX512's 32 registers */
#else
#define MRW 3         /* 12 of AVX2's 16 (6 spilled: a 285-row prefill's products took 1.5x the time) */
#endif
#endif
#ifndef NR
#define NR 4          /* output rows per register block */
#endif
#define MCHUNK 64     /* input rows per pass over the weights */
#ifndef WIDEN_ROWS
#define WIDEN_ROWS 8  /* from this many input rows in a pass, the weights are widened into a buffer */
#endif
#define MAX_K 8192    /* the widest input the buffer takes (NR * MAX_K floats on the stack) */
#define AHEAD 4       /* blocks of NR weight rows prefetched ahead */
#define INLINE static inline __attribute__((always_inline))

int gl_int8_lanes(void) { return LANES; }

INLINE void store(const int mr, const int nr, vec acc[][NR], const float *scale, const float *bias, float *y,
                  int64_t N, int64_t n) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float v = VSUM(acc[i][j]) * scale[n + j];
            y[i * N + n + j] = bias ? v + bias[n + j] : v;
        }
}

/* mr input rows against nr consecutive weight rows from n, widening the weights in registers */
INLINE void block(const int mr, const int nr, const float *x, int64_t K, const int8_t *q, const float *scale,
                  const float *bias, float *y, int64_t N, int64_t n) {
    vec acc[MR][NR];
    const int8_t *ahead = q + (n + AHEAD * NR) * K;
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) acc[i][j] = VZERO();
    for (int64_t k = 0; k < K; k += LANES) {
        vec w[NR];
        _mm_prefetch((const char *)(ahead + k * nr), _MM_HINT_T0); /* the next blocks, nr bytes per k */
        for (int j = 0; j < nr; j++) w[j] = VLOADQ(q + (n + j) * K + k);
        for (int i = 0; i < mr; i++) {
            vec xv = VLOADX(x + i * K + k);
            for (int j = 0; j < nr; j++) acc[i][j] = VFMA(xv, w[j], acc[i][j]);
        }
    }
    store(mr, nr, acc, scale, bias, y, N, n);
}

/* mr input rows against nr weight rows already widened into wide[j * K + k] */
INLINE void block_wide(const int mr, const int nr, const float *x, int64_t K, const float *wide, const float *scale,
                       const float *bias, float *y, int64_t N, int64_t n) {
    vec acc[MRW][NR];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) acc[i][j] = VZERO();
    for (int64_t k = 0; k < K; k += LANES) {
        vec w[NR];
        for (int j = 0; j < nr; j++) w[j] = VLOADX(wide + j * K + k);
        for (int i = 0; i < mr; i++) {
            vec xv = VLOADX(x + i * K + k);
            for (int j = 0; j < nr; j++) acc[i][j] = VFMA(xv, w[j], acc[i][j]);
        }
    }
    store(mr, nr, acc, scale, bias, y, N, n);
}

#define ROWS(NRV)                                                                                      \
    do {                                                                                               \
        int64_t m = m0;                                                                                \
        for (; m + MR <= m1; m += MR) block(MR, NRV, x + m * K, K, q, scale, bias, y + m * N, N, n);    \
        switch (m1 - m) {                                                                              \
            case 3: block(3, NRV, x + m * K, K, q, scale, bias, y + m * N, N, n); break;               \
            case 2: block(2, NRV, x + m * K, K, q, scale, bias, y + m * N, N, n); break;               \
            case 1: block(1, NRV, x + m * K, K, q, scale, bias, y + m * N, N, n); break;               \
        }                                                                                              \
    } while (0)

#define WIDE_ROWS(NRV)                                                                                 \
    do {                                                                                               \
        for (int j = 0; j < NRV; j++)                                                                  \
            for (int64_t k = 0; k < K; k += LANES) VSTORE(wide + j * K + k, VLOADQ(q + (n + j) * K + k)); \
        int64_t m = m0;                                                                                \
        for (; m + MRW <= m1; m += MRW) block_wide(MRW, NRV, x + m * K, K, wide, scale, bias, y + m * N, N, n); \
        switch (m1 - m) {                                                                              \
            case 5: if (MRW > 5) block_wide(5, NRV, x + m * K, K, wide, scale, bias, y + m * N, N, n); break; \
            case 4: if (MRW > 4) block_wide(4, NRV, x + m * K, K, wide, scale, bias, y + m * N, N, n); break; \
            case 3: if (MRW > 3) block_wide(3, NRV, x + m * K, K, wide, scale, bias, y + m * N, N, n); break; \
            case 2: if (MRW > 2) block_wide(2, NRV, x + m * K, K, wide, scale, bias, y + m * N, N, n); break; \
            case 1: block_wide(1, NRV, x + m * K, K, wide, scale, bias, y + m * N, N, n); break;       \
        }                                                                                              \
    } while (0)

/* output rows n0 <= n < n1, every input row */
static void range(const float *x, int64_t M, int64_t K, const int8_t *q, const float *scale, const float *bias,
                  float *y, int64_t N, int64_t n0, int64_t n1) {
    float wide[K <= MAX_K ? NR * K : 1] __attribute__((aligned(64)));
    for (int64_t m0 = 0; m0 < M; m0 += MCHUNK) {
        const int64_t m1 = m0 + MCHUNK < M ? m0 + MCHUNK : M;
        int64_t n = n0;
        if (m1 - m0 >= WIDEN_ROWS && K <= MAX_K) {
            for (; n + NR <= n1; n += NR) WIDE_ROWS(NR);
            for (; n < n1; n++) WIDE_ROWS(1);
        } else {
            for (; n + NR <= n1; n += NR) ROWS(NR);
            for (; n < n1; n++) ROWS(1);
        }
    }
}

/* The whole product on up to `threads` threads, each a contiguous range of output rows (whole register
 * blocks). Returns 0, or -1 where K is not a multiple of LANES (nothing is written). */
int gl_int8_linear(const float *x, int64_t M, int64_t K, const int8_t *q, const float *scale, const float *bias,
                   float *y, int64_t N, int threads) {
    if (K % LANES) return -1;
    const int64_t blocks = (N + NR - 1) / NR;
    if (threads > blocks) threads = (int)blocks;
    if (threads <= 1) {
        range(x, M, K, q, scale, bias, y, N, 0, N);
        return 0;
    }
#pragma omp parallel num_threads(threads)
    {
        const int64_t t = omp_get_thread_num(), parts = omp_get_num_threads();
        const int64_t n0 = blocks * t / parts * NR, n1 = blocks * (t + 1) / parts * NR;
        range(x, M, K, q, scale, bias, y, N, n0, n1 < N ? n1 : N);
    }
    return 0;
}
