/*
 * The exact int32 accumulators of an int8 linear layer, as FBGEMM computes them:
 * acc[m, n] = sum_k (x[m, k] - zp) * w[n, k], x uint8 activations, w int8 weights,
 * computed as sum_k x[m, k] * w[n, k] - zp * colsum[n] (colsum[n] = sum_k w[n, k]),
 * in int32 arithmetic, exact for K < 65794 (|acc| < 2**31); the caller checks K.
 * out[m, n] = (float)acc[m, n], rounded to nearest even as cvtdq2ps does (exact for
 * |acc| <= 2**24).
 *
 * Weights are packed once per layer (lpmon.quant.linear): [N / 32][K / 4][32][4]
 * int8, K and N padded with zeros to multiples of 4 and 32: for each block of 32
 * outputs and each group of 4 inputs, 32 x 4 consecutive bytes, the layout
 * vpdpbusd consumes (four u8 x s8 products summed into one int32 lane, without
 * saturation). colsum is padded to N rounded up to 32 too.
 *
 * The avx512 copy uses AVX-512 VNNI (vpdpbusd) when the CPU has it (Zen 4, Ice
 * Lake and later); the avx2 copy, and the avx512 copy without VNNI, use vpmaddwd
 * on int16 (about 2.5x slower than VNNI, still faster than a float32 BLAS
 * product); the base copy runs a plain int32 loop, exact too but slower than
 * BLAS (lpmon.quant.linear then keeps its float32 BLAS emulation: see fast()).
 */

#define LP_NR 32 /* outputs per packed block */
#define LP_MR 8  /* rows per register tile of the VNNI kernel */
#define LP_MC 256 /* rows per cache block */

/* The plain loop: exact on every target. */
static void LP_NAME(lp_gemm_plain)(const uint8_t *x, int64_t m_rows, int64_t k_in, const int8_t *packed,
                                   const int32_t *colsum, int64_t n_out, int32_t zp, float *out)
{
    const int64_t kq_n = (k_in + 3) / 4, blocks = (n_out + LP_NR - 1) / LP_NR;
    for (int64_t m = 0; m < m_rows; m++) {
        const uint8_t *xm = x + m * k_in;
        for (int64_t nb = 0; nb < blocks; nb++) {
            const int8_t *bp = packed + nb * kq_n * LP_NR * 4;
            int32_t acc[LP_NR];
            for (int j = 0; j < LP_NR; j++) acc[j] = 0;
            for (int64_t k = 0; k < k_in; k++) {
                const int32_t xv = xm[k];
                const int8_t *w = bp + (k / 4) * LP_NR * 4 + (k % 4);
#pragma omp simd
                for (int j = 0; j < LP_NR; j++) acc[j] += xv * (int32_t)w[j * 4];
            }
            const int64_t n0 = nb * LP_NR, width = n_out - n0 < LP_NR ? n_out - n0 : LP_NR;
            for (int64_t j = 0; j < width; j++) out[m * n_out + n0 + j] = (float)(acc[j] - zp * colsum[n0 + j]);
        }
    }
}

#ifdef __AVX2__
/*
 * Without VNNI: vpmaddwd on int16, two products per int32 lane (|sum| <= 2 * 255 * 128, no
 * saturation; vpmaddubsw's int16 sums would saturate). Activations are widened to int16 once
 * per block of rows; each weight quad (4 columns x 4 inputs) is widened per use.
 */
#define LP_MR2 4   /* rows per register tile */
#define LP_MC2 64  /* rows per block widened to int16 */

/* rows (<= LP_MR2) rows of xw (int16, k_pad per row) times 8 outputs of a packed block. */
LP_INLINE void lp_tile_avx2(const int16_t *xw, int64_t k_pad, const int rows, const int8_t *bp,
                            const int32_t *corr, int64_t width, float *out, int64_t n_out)
{
    __m256i acc0[LP_MR2], acc1[LP_MR2];
    for (int r = 0; r < rows; r++) acc0[r] = acc1[r] = _mm256_setzero_si256();
    const int64_t quads = k_pad / 4;
    for (int64_t q = 0; q < quads; q++) {
        const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bp + q * 128)));
        const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bp + q * 128 + 16)));
        for (int r = 0; r < rows; r++) {
            int64_t v;
            memcpy(&v, xw + r * k_pad + q * 4, sizeof v);
            const __m256i a = _mm256_set1_epi64x(v);
            acc0[r] = _mm256_add_epi32(acc0[r], _mm256_madd_epi16(a, w0));
            acc1[r] = _mm256_add_epi32(acc1[r], _mm256_madd_epi16(a, w1));
        }
    }
    const __m256i c = _mm256_loadu_si256((const __m256i *)corr);
    for (int r = 0; r < rows; r++) {
        /* lanes hold (column, inputs 0-1) and (column, inputs 2-3): add the pairs, restore the order */
        const __m256i sums = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc0[r], acc1[r]), 0xD8);
        const __m256 y = _mm256_cvtepi32_ps(_mm256_sub_epi32(sums, c));
        float *o = out + r * n_out;
        if (width >= 8) {
            _mm256_storeu_ps(o, y);
        } else {
            float tmp[8];
            _mm256_storeu_ps(tmp, y);
            for (int64_t j = 0; j < width; j++) o[j] = tmp[j];
        }
    }
}

static void LP_NAME(lp_gemm_avx2)(const uint8_t *x, int64_t m_rows, int64_t k_in, const int8_t *packed,
                                  const int32_t *colsum, int64_t n_out, int32_t zp, float *out)
{
    const int64_t kq_n = (k_in + 3) / 4, k_pad = kq_n * 4, blocks = (n_out + LP_NR - 1) / LP_NR;
    int16_t *xw = malloc((size_t)(LP_MC2 * k_pad) * sizeof(int16_t));
    int32_t *corr = malloc((size_t)(blocks * LP_NR) * sizeof(int32_t));
    if (xw == NULL || corr == NULL) { /* no scratch: the plain loop needs none */
        free(xw);
        free(corr);
        LP_NAME(lp_gemm_plain)(x, m_rows, k_in, packed, colsum, n_out, zp, out);
        return;
    }
    for (int64_t j = 0; j < blocks * LP_NR; j++) corr[j] = zp * colsum[j];
    for (int64_t m0 = 0; m0 < m_rows; m0 += LP_MC2) {
        const int64_t m1 = m0 + LP_MC2 < m_rows ? m0 + LP_MC2 : m_rows;
        for (int64_t m = m0; m < m1; m++) {
            int16_t *row = xw + (m - m0) * k_pad;
            for (int64_t k = 0; k < k_in; k++) row[k] = x[m * k_in + k];
            for (int64_t k = k_in; k < k_pad; k++) row[k] = 0;
        }
        for (int64_t nb = 0; nb < blocks; nb++) {
            const int8_t *bp = packed + nb * kq_n * LP_NR * 4;
            for (int64_t g = 0; g < LP_NR / 8; g++) {
                const int64_t n0 = nb * LP_NR + g * 8;
                if (n0 >= n_out) break;
                const int64_t width = n_out - n0 < 8 ? n_out - n0 : 8;
                int64_t m = m0;
                for (; m + LP_MR2 <= m1; m += LP_MR2)
                    lp_tile_avx2(xw + (m - m0) * k_pad, k_pad, LP_MR2, bp + g * 32, corr + n0, width,
                                 out + m * n_out + n0, n_out);
                for (; m < m1; m++)
                    lp_tile_avx2(xw + (m - m0) * k_pad, k_pad, 1, bp + g * 32, corr + n0, width,
                                 out + m * n_out + n0, n_out);
            }
        }
    }
    free(xw);
    free(corr);
}
#endif

#ifdef __AVX512F__
#define LP_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/* Four activations from x[0..count) as one int32, zeros beyond count (the last group of K). */
LP_INLINE int32_t lp_quad(const uint8_t *x, int64_t count)
{
    uint8_t bytes[4] = {0, 0, 0, 0};
    int32_t v;
    memcpy(bytes, x, (size_t)(count < 4 ? count : 4));
    memcpy(&v, bytes, sizeof v);
    return v;
}

/* rows (<= LP_MR) rows of x times one packed block of 32 outputs. */
LP_INLINE LP_VNNI void lp_tile_vnni(const uint8_t *x, int64_t k_in, const int rows, const int8_t *bp,
                                    __m512i corr0, __m512i corr1, __mmask16 mask0, __mmask16 mask1,
                                    float *out, int64_t n_out)
{
    __m512i acc0[LP_MR], acc1[LP_MR];
    for (int r = 0; r < rows; r++) acc0[r] = acc1[r] = _mm512_setzero_si512();
    const int64_t full = k_in / 4;
    for (int64_t q = 0; q < full; q++) {
        const __m512i b0 = _mm512_loadu_si512((const void *)(bp + q * 128));
        const __m512i b1 = _mm512_loadu_si512((const void *)(bp + q * 128 + 64));
        for (int r = 0; r < rows; r++) {
            int32_t v;
            memcpy(&v, x + r * k_in + q * 4, sizeof v);
            const __m512i a = _mm512_set1_epi32(v);
            acc0[r] = _mm512_dpbusd_epi32(acc0[r], a, b0);
            acc1[r] = _mm512_dpbusd_epi32(acc1[r], a, b1);
        }
    }
    if (k_in % 4) {
        const __m512i b0 = _mm512_loadu_si512((const void *)(bp + full * 128));
        const __m512i b1 = _mm512_loadu_si512((const void *)(bp + full * 128 + 64));
        for (int r = 0; r < rows; r++) {
            const __m512i a = _mm512_set1_epi32(lp_quad(x + r * k_in + full * 4, k_in % 4));
            acc0[r] = _mm512_dpbusd_epi32(acc0[r], a, b0);
            acc1[r] = _mm512_dpbusd_epi32(acc1[r], a, b1);
        }
    }
    for (int r = 0; r < rows; r++) {
        float *o = out + r * n_out;
        _mm512_mask_storeu_ps(o, mask0, _mm512_cvtepi32_ps(_mm512_sub_epi32(acc0[r], corr0)));
        _mm512_mask_storeu_ps(o + 16, mask1, _mm512_cvtepi32_ps(_mm512_sub_epi32(acc1[r], corr1)));
    }
}

static LP_VNNI void LP_NAME(lp_gemm_vnni)(const uint8_t *x, int64_t m_rows, int64_t k_in, const int8_t *packed,
                                          const int32_t *colsum, int64_t n_out, int32_t zp, float *out)
{
    const int64_t kq_n = (k_in + 3) / 4, blocks = (n_out + LP_NR - 1) / LP_NR;
    const __m512i zpv = _mm512_set1_epi32(zp);
    for (int64_t m0 = 0; m0 < m_rows; m0 += LP_MC) {
        const int64_t m1 = m0 + LP_MC < m_rows ? m0 + LP_MC : m_rows;
        for (int64_t nb = 0; nb < blocks; nb++) {
            const int8_t *bp = packed + nb * kq_n * LP_NR * 4;
            const int64_t n0 = nb * LP_NR, width = n_out - n0 < LP_NR ? n_out - n0 : LP_NR;
            const __mmask16 mask0 = (__mmask16)(width >= 16 ? 0xFFFF : (1u << width) - 1);
            const __mmask16 mask1 = (__mmask16)(width >= 32 ? 0xFFFF : width <= 16 ? 0 : (1u << (width - 16)) - 1);
            const __m512i corr0 = _mm512_mullo_epi32(zpv, _mm512_loadu_si512((const void *)(colsum + n0)));
            const __m512i corr1 = _mm512_mullo_epi32(zpv, _mm512_loadu_si512((const void *)(colsum + n0 + 16)));
            int64_t m = m0;
            for (; m + LP_MR <= m1; m += LP_MR)
                lp_tile_vnni(x + m * k_in, k_in, LP_MR, bp, corr0, corr1, mask0, mask1, out + m * n_out + n0, n_out);
            for (; m < m1; m++)
                lp_tile_vnni(x + m * k_in, k_in, 1, bp, corr0, corr1, mask0, mask1, out + m * n_out + n0, n_out);
        }
    }
}

LP_INLINE int lp_has_vnni(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni");
}
#endif

/* 1 if this copy runs faster than a float32 BLAS product (AVX2 or VNNI), else 0. */
int LP_NAME(lp_gemm_fast)(void)
{
#ifdef __AVX2__
    return 1;
#else
    return 0;
#endif
}

/*
 * out[m, n] = (float)(sum_k x[m, k] * w[n, k] - zp * colsum[n]) for m < m_rows, n < n_out;
 * x uint8 [m_rows, k_in] C order, w packed (see above), out float32 [m_rows, n_out].
 */
void LP_NAME(lp_gemm_u8s8)(const uint8_t *x, int64_t m_rows, int64_t k_in, const int8_t *packed,
                           const int32_t *colsum, int64_t n_out, int32_t zp, float *out)
{
#ifdef __AVX512F__
    if (lp_has_vnni()) {
        LP_NAME(lp_gemm_vnni)(x, m_rows, k_in, packed, colsum, n_out, zp, out);
        return;
    }
#endif
#ifdef __AVX2__
    LP_NAME(lp_gemm_avx2)(x, m_rows, k_in, packed, colsum, n_out, zp, out);
    return;
#endif
    LP_NAME(lp_gemm_plain)(x, m_rows, k_in, packed, colsum, n_out, zp, out);
}
