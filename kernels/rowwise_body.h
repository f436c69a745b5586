/*
 * Row-wise embedding kernels in FBGEMM's fused layouts, bit for bit:
 *   8-bit rows: [dim x uint8][fp32 scale][fp32 bias]
 *   n-bit rows (4, 2, and 8 with fp16 scale and bias): [ceil(dim * n / 8) bytes,
 *                       element c in bits (c % (8/n)) * n of byte c / (8/n)][fp16 scale][fp16 bias]
 * Included by rowwise_isa.c with LP_NAME(base) defined. Inputs are validated
 * by the caller (finite values; fp16-representable for n-bit rows).
 *
 * Bit-exactness rests on doing FBGEMM's roundings and no others: this file is
 * compiled with -ffp-contract=off, so (x - lo) * inverse_scale is rounded
 * before it is rounded to an integer, exactly as FBGEMM's unfused AVX2 code
 * does; where FBGEMM fuses (dequantizing 8-bit rows, lookups) lp_fma says so.
 */

/* Round half to even for |v| < 2**22 with default rounding: no libm call, vectorises.
 * (Needs v rounded to float first: contraction off, see above.) */
LP_INLINE float lp_round_even(float v)
{
    const float magic = 12582912.0f; /* 1.5 * 2**23 */
    return (v + magic) - magic;
}

LP_INLINE float lp_half_round(float v) { return (float)(_Float16)v; }

LP_INLINE float lp_load_f32(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }
LP_INLINE void lp_store_f32(uint8_t *p, float v) { memcpy(p, &v, 4); }
LP_INLINE float lp_load_f16(const uint8_t *p) { _Float16 v; memcpy(&v, p, 2); return (float)v; }
LP_INLINE void lp_store_f16(uint8_t *p, float v) { _Float16 h = (_Float16)v; memcpy(p, &h, 2); }

/* Row min and max; returns 0 when the row holds NaN or inf (comparisons skip NaN). */
LP_INLINE int lp_row_min_max(const float *x, int64_t dim, float *lo, float *hi)
{
    float mn = x[0], mx = x[0];
    int nan = 0;
#pragma omp simd reduction(min:mn) reduction(max:mx) reduction(|:nan)
    for (int64_t c = 0; c < dim; c++) {
        mn = x[c] < mn ? x[c] : mn;
        mx = x[c] > mx ? x[c] : mx;
        nan |= x[c] != x[c];
    }
    *lo = mn;
    *hi = mx;
    return !nan && mn != -(float)INFINITY && mx != (float)INFINITY;
}

/* FBGEMM's FloatOrHalfToFused8BitRowwiseQuantizedSBFloat. Returns the first
 * row holding NaN or inf (its output is then garbage), or -1. */
int64_t LP_NAME(lp_quantize_rows8)(const float *table, int64_t rows, int64_t dim, uint8_t *out)
{
    const int64_t row_bytes = dim + 8;
    for (int64_t r = 0; r < rows; r++) {
        const float *x = table + r * dim;
        uint8_t *o = out + r * row_bytes;
        float lo, hi;
        if (!lp_row_min_max(x, dim, &lo, &hi)) return r;
        float range = hi - lo;
        float inverse_scale = 255.0f / (range + 1e-8f);
#pragma omp simd
        for (int64_t c = 0; c < dim; c++)
            o[c] = (uint8_t)(int32_t)lp_round_even((x[c] - lo) * inverse_scale);
        lp_store_f32(o + dim, range / 255.0f);
        lp_store_f32(o + dim + 4, lo);
    }
    return -1;
}

/*
 * FBGEMM's FloatOrHalfToFusedNBitRowwiseQuantizedSBHalf (bits 8, 4 or 2). lo/hi, when given,
 * replace each row's min/max (the greedy range search); the bias is lo rounded
 * to fp16 and that rounded value is used in the arithmetic.
 */
int64_t LP_NAME(lp_quantize_rows_nbit)(int bits, const float *table, int64_t rows, int64_t dim,
                                    const float *row_lo, const float *row_hi, uint8_t *out)
{
    const int64_t per_byte = 8 / bits, data_bytes = (dim + per_byte - 1) / per_byte;
    const int64_t row_bytes = data_bytes + 4;
    const float qmax = (float)((1 << bits) - 1);
    uint8_t q[4096];
    for (int64_t r = 0; r < rows; r++) {
        const float *x = table + r * dim;
        uint8_t *o = out + r * row_bytes;
        float lo, hi;
        if (!lp_row_min_max(x, dim, &lo, &hi) || lo < -65504.0f || hi > 65504.0f) return r;
        if (row_lo) {
            lo = row_lo[r];
            hi = row_hi[r];
        }
        float bias = lp_half_round(lo);
        float range = hi - bias;
        float scale = lp_half_round(range == 0 ? 1.0f : range / qmax);
        if (scale == 0) scale = 1.0f;
        float inverse_scale = 1.0f / scale;
        if (inverse_scale == (float)INFINITY) {
            scale = 1.0f;
            inverse_scale = 1.0f;
        }
        for (int64_t start = 0; start < dim; start += 4096) {
            int64_t len = dim - start < 4096 ? dim - start : 4096;
#pragma omp simd
            for (int64_t c = 0; c < len; c++) {
                float v = lp_round_even((x[start + c] - bias) * inverse_scale);
                v = v < 0 ? 0 : (v > qmax ? qmax : v);
                q[c] = (uint8_t)(int32_t)v;
            }
            /* start is a multiple of 4096, so of per_byte: bytes do not straddle chunks */
            uint8_t *ob = o + start / per_byte;
            int64_t nbytes = (len + per_byte - 1) / per_byte;
            if (bits == 8) {
                memcpy(ob, q, (size_t)len);
            } else if (bits == 4) {
                for (int64_t b = 0; b < len / 2; b++)
                    ob[b] = (uint8_t)(q[2 * b] | (q[2 * b + 1] << 4));
                if (len & 1) ob[len / 2] = q[len - 1];
            } else {
                for (int64_t b = 0; b < nbytes; b++) {
                    uint8_t packed = 0;
                    for (int64_t k = 0; k < per_byte && b * per_byte + k < len; k++)
                        packed |= (uint8_t)(q[b * per_byte + k] << (k * bits));
                    ob[b] = packed;
                }
            }
        }
        lp_store_f16(o + data_bytes, scale);
        lp_store_f16(o + data_bytes + 2, bias);
    }
    return -1;
}

/* One row's values, dequantized: as FBGEMM, 8-bit codes with one fused
 * q * scale + bias (its AVX2 kernel's vfmadd); n-bit codes with a product
 * that is exact (at most 4 bits times fp16's 11), so fused or not agree. */
static inline void LP_NAME(lp_row_values)(const uint8_t *row, int bits, int64_t dim, float *v)
{
    if (bits == 8) {
        float scale = lp_load_f32(row + dim), bias = lp_load_f32(row + dim + 4);
#pragma omp simd
        for (int64_t c = 0; c < dim; c++) v[c] = lp_fma((float)row[c], scale, bias);
        return;
    }
    const int64_t per_byte = 8 / bits, data_bytes = (dim + per_byte - 1) / per_byte;
    const int mask = (1 << bits) - 1;
    float scale = lp_load_f16(row + data_bytes), bias = lp_load_f16(row + data_bytes + 2);
#pragma omp simd
    for (int64_t c = 0; c < dim; c++) {
        int q = (row[c / per_byte] >> ((c % per_byte) * bits)) & mask;
        v[c] = q * scale + bias;
    }
}

void LP_NAME(lp_dequantize_rows)(const uint8_t *packed, int bits, int64_t rows, int64_t dim,
                                 int64_t row_bytes, float *out)
{
    for (int64_t r = 0; r < rows; r++)
        LP_NAME(lp_row_values)(packed + r * row_bytes, bits, dim, out + r * dim);
}

/*
 * Pooled lookups, as FBGEMM's EmbeddingSpMDM computes them: per looked-up
 * row, a = scale * w and b = bias * w, then out = fma(a, q, out + b) for
 * every element, rows in bag order; mean multiplies by 1 / size.
 *
 * With tables far larger than the caches, lookups wait on memory: every
 * cache line of the row LP_AHEAD lookups ahead is prefetched. On AVX2 the
 * bag's sums stay in registers, LP_BAG_VECTORS vectors of 8 columns at a time.
 */
#define LP_AHEAD 16

LP_INLINE void lp_prefetch_row(const uint8_t *row, int64_t row_bytes)
{
    for (int64_t line = 0; line < row_bytes; line += 64) __builtin_prefetch(row + line, 0, 3);
    __builtin_prefetch(row + row_bytes - 1, 0, 3);
}

/* One bag's sum (or mean) over columns [0, dim), any ISA: the reference loop. */
LP_INLINE void lp_bag_generic(const uint8_t *packed, int bits, int64_t dim, int64_t row_bytes,
                              const int64_t *indices, int64_t start, int64_t stop,
                              const float *weights, float *o)
{
    const int64_t per_byte = 8 / bits, data_bytes = (dim + per_byte - 1) / per_byte;
    const int mask = (1 << bits) - 1;
    for (int64_t c = 0; c < dim; c++) o[c] = 0.0f;
    for (int64_t i = start; i < stop; i++) {
        const uint8_t *row = packed + indices[i] * row_bytes;
        float w = weights ? weights[i] : 1.0f, a, b;
        if (bits == 8) {
            a = lp_load_f32(row + dim) * w;
            b = lp_load_f32(row + dim + 4) * w;
#pragma omp simd
            for (int64_t c = 0; c < dim; c++) o[c] = lp_fma(a, (float)row[c], o[c] + b);
        } else {
            a = lp_load_f16(row + data_bytes) * w;
            b = lp_load_f16(row + data_bytes + 2) * w;
#pragma omp simd
            for (int64_t c = 0; c < dim; c++) {
                int q = (row[c / per_byte] >> ((c % per_byte) * bits)) & mask;
                o[c] = lp_fma(a, (float)q, o[c] + b);
            }
        }
    }
}

#ifdef __AVX2__
#define LP_BAG_VECTORS 8

/* Codes of 8 columns starting at column c of a row, as floats. The loads stay
 * inside the row: its scale and bias follow the codes. */
LP_INLINE __m256 lp_codes8(const uint8_t *row, int bits, int64_t c)
{
    if (bits == 8)
        return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row + c))));
    int32_t packed;
    memcpy(&packed, row + c / 2, 4);
    __m128i b = _mm_cvtsi32_si128(packed), low = _mm_set1_epi8(15);
    __m128i codes = _mm_unpacklo_epi8(_mm_and_si128(b, low), _mm_and_si128(_mm_srli_epi16(b, 4), low));
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(codes));
}

/* Columns [c0, c0 + 8 * nv) of one bag; nv is a constant after inlining, so
 * the sums are registers. Lanes past dim are computed and never stored. */
LP_INLINE void lp_bag_block(const uint8_t *packed, int bits, int64_t dim, int64_t row_bytes,
                            int64_t scale_at, const int64_t *indices, int64_t start, int64_t stop,
                            int64_t n_indices, const float *weights, int64_t c0, const int nv,
                            int prefetch, float inv, float *o)
{
    __m256 acc[LP_BAG_VECTORS];
    for (int v = 0; v < nv; v++) acc[v] = _mm256_setzero_ps();
    for (int64_t i = start; i < stop; i++) {
        if (prefetch && i + LP_AHEAD < n_indices)
            lp_prefetch_row(packed + indices[i + LP_AHEAD] * row_bytes, row_bytes);
        const uint8_t *row = packed + indices[i] * row_bytes;
        float w = weights ? weights[i] : 1.0f, a, b;
        if (bits == 8) {
            a = lp_load_f32(row + scale_at) * w;
            b = lp_load_f32(row + scale_at + 4) * w;
        } else {
            a = lp_load_f16(row + scale_at) * w;
            b = lp_load_f16(row + scale_at + 2) * w;
        }
        __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
        for (int v = 0; v < nv; v++)
            acc[v] = _mm256_fmadd_ps(va, lp_codes8(row, bits, c0 + 8 * v), _mm256_add_ps(acc[v], vb));
    }
    __m256 vinv = _mm256_set1_ps(inv);
    for (int v = 0; v < nv; v++) {
        int64_t c = c0 + 8 * v;
        __m256 sum = inv != 1.0f ? _mm256_mul_ps(acc[v], vinv) : acc[v];
        if (c + 8 <= dim) {
            _mm256_storeu_ps(o + c, sum);
        } else {
            float lanes[8];
            _mm256_storeu_ps(lanes, sum);
            for (int64_t k = 0; c + k < dim; k++) o[c + k] = lanes[k];
        }
    }
}

LP_INLINE void lp_bag_avx2(const uint8_t *packed, int bits, int64_t dim, int64_t row_bytes,
                           const int64_t *indices, int64_t start, int64_t stop, int64_t n_indices,
                           const float *weights, float inv, float *o)
{
    const int64_t scale_at = bits == 8 ? dim : (dim + 1) / 2;
    const int64_t vectors = (dim + 7) / 8;
    for (int64_t v0 = 0; v0 < vectors; v0 += LP_BAG_VECTORS) {
        int64_t left = vectors - v0;
        int prefetch = v0 == 0;  /* later blocks read rows the first one brought in */
#define LP_BLOCK_CASE(n)                                                                         \
        case n:                                                                                   \
            lp_bag_block(packed, bits, dim, row_bytes, scale_at, indices, start, stop, n_indices, \
                         weights, 8 * v0, n, prefetch, inv, o);                                   \
            break;
        switch (left < LP_BAG_VECTORS ? left : LP_BAG_VECTORS) {
            LP_BLOCK_CASE(1) LP_BLOCK_CASE(2) LP_BLOCK_CASE(3) LP_BLOCK_CASE(4)
            LP_BLOCK_CASE(5) LP_BLOCK_CASE(6) LP_BLOCK_CASE(7) LP_BLOCK_CASE(8)
        }
#undef LP_BLOCK_CASE
    }
}
#endif

/* The position of the first index outside [0, n_rows), or -1 (one vectorised pass, then a scan). */
static inline int64_t LP_NAME(lp_first_bad_index)(const int64_t *indices, int64_t n_indices, int64_t n_rows)
{
    int64_t bad = 0;
#pragma omp simd reduction(|:bad)
    for (int64_t i = 0; i < n_indices; i++) bad |= (uint64_t)indices[i] >= (uint64_t)n_rows;
    if (bad) {
        for (int64_t i = 0; i < n_indices; i++)
            if ((uint64_t)indices[i] >= (uint64_t)n_rows) return i;
    }
    return -1;
}

/*
 * Bag b sums rows indices[offsets[b] : offsets[b + 1]] (the last bag runs to
 * n_indices), each times its per-sample weight if given; mean divides by the
 * bag's size (an empty bag gives zeros). Returns the position of the first
 * index outside [0, n_rows) (nothing is computed then), or -1.
 */
int64_t LP_NAME(lp_embedding_bag)(const uint8_t *packed, int64_t n_rows, int bits, int64_t dim,
                                  int64_t row_bytes, const int64_t *indices, int64_t n_indices,
                                  const int64_t *offsets, int64_t n_bags,
                                  const float *weights, int mean, float *out)
{
    int64_t bad = LP_NAME(lp_first_bad_index)(indices, n_indices, n_rows);
    if (bad >= 0) return bad;
    for (int64_t i = 0; i < n_indices && i < LP_AHEAD; i++)
        lp_prefetch_row(packed + indices[i] * row_bytes, row_bytes);
    for (int64_t b = 0; b < n_bags; b++) {
        int64_t start = offsets[b], stop = b + 1 < n_bags ? offsets[b + 1] : n_indices;
        float *o = out + b * dim;
        float inv = mean && stop > start ? 1.0f / (float)(stop - start) : 1.0f;
#ifdef __AVX2__
        if (bits != 2) {
            lp_bag_avx2(packed, bits, dim, row_bytes, indices, start, stop, n_indices, weights, inv, o);
            continue;
        }
#endif
        for (int64_t i = start; i < stop && i + LP_AHEAD < n_indices; i++)
            lp_prefetch_row(packed + indices[i + LP_AHEAD] * row_bytes, row_bytes);
        lp_bag_generic(packed, bits, dim, row_bytes, indices, start, stop, weights, o);
        if (inv != 1.0f)
            for (int64_t c = 0; c < dim; c++) o[c] *= inv;
    }
    return -1;
}

/*
 * Float32 tables (torch's embedding_bag, mode sum): bag b is the sum of its
 * rows one after another in the ids' order, from zeros, each addition rounded
 * (no reassociation: bit for bit what torch and the NumPy reference give).
 * Returns the position of the first index outside [0, n_rows) (nothing is
 * computed then), or -1. The caller divides for mode mean.
 */
int64_t LP_NAME(lp_embedding_bag_float)(const float *table, int64_t n_rows, int64_t dim,
                                        const int64_t *indices, int64_t n_indices,
                                        const int64_t *offsets, int64_t n_bags, float *out)
{
    int64_t bad = LP_NAME(lp_first_bad_index)(indices, n_indices, n_rows);
    if (bad >= 0) return bad;
    const int64_t row_bytes = dim * (int64_t)sizeof(float);
    for (int64_t i = 0; i < n_indices && i < LP_AHEAD; i++)
        lp_prefetch_row((const uint8_t *)(table + indices[i] * dim), row_bytes);
    for (int64_t b = 0; b < n_bags; b++) {
        int64_t start = offsets[b], stop = b + 1 < n_bags ? offsets[b + 1] : n_indices;
        float *o = out + b * dim;
        for (int64_t c = 0; c < dim; c++) o[c] = 0.0f;
        for (int64_t i = start; i < stop; i++) {
            if (i + LP_AHEAD < n_indices)
                lp_prefetch_row((const uint8_t *)(table + indices[i + LP_AHEAD] * dim), row_bytes);
            const float *row = table + indices[i] * dim;
#pragma omp simd
            for (int64_t c = 0; c < dim; c++) o[c] += row[c];
        }
    }
    return -1;
}
