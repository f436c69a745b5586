/*
 * Row-wise embedding kernels in FBGEMM's fused layouts, bit for bit:
 *   8-bit rows: [dim x uint8][fp32 scale][fp32 bias]
 *   n-bit rows (4, 2): [ceil(dim * n / 8) bytes, element c in bits
 *                       (c % (8/n)) * n of byte c / (8/n)][fp16 scale][fp16 bias]
 * Included by rowwise_isa.c with LP_NAME(base) defined. Inputs are validated
 * by the caller (finite values; fp16-representable for n-bit rows; indices in
 * range).
 */

/* Round half to even for |v| < 2**22 with default rounding: no libm call, vectorises. */
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
 * FBGEMM's FloatOrHalfToFusedNBitRowwiseQuantizedSBHalf. lo/hi, when given,
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
            if (bits == 4) {
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

/* One row's values, dequantized: q * scale + bias, as FBGEMM's reference does. */
static inline void LP_NAME(lp_row_values)(const uint8_t *row, int bits, int64_t dim, float *v)
{
    if (bits == 8) {
        float scale = lp_load_f32(row + dim), bias = lp_load_f32(row + dim + 4);
#pragma omp simd
        for (int64_t c = 0; c < dim; c++) v[c] = row[c] * scale + bias;
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
 * Pooled lookup straight from packed rows. Bag b sums rows indices[offsets[b]
 * : offsets[b + 1]] (the last bag runs to n_indices), each times its
 * per-sample weight if given; mean divides by the bag's size (an empty bag
 * gives zeros). Rows a few lookups ahead are prefetched: with a table far
 * larger than the caches, lookups are memory-latency bound. Returns the
 * position of the first index outside [0, n_rows) (and stops there), or -1.
 */
int64_t LP_NAME(lp_embedding_bag)(const uint8_t *packed, int64_t n_rows, int bits, int64_t dim,
                                  int64_t row_bytes, const int64_t *indices, int64_t n_indices,
                                  const int64_t *offsets, int64_t n_bags,
                                  const float *weights, int mean, float *out)
{
    const int64_t ahead = 16, per_byte = 8 / bits;
    const int64_t data_bytes = (dim + per_byte - 1) / per_byte;
    const int mask = (1 << bits) - 1;
    for (int64_t b = 0; b < n_bags; b++) {
        int64_t start = offsets[b], stop = b + 1 < n_bags ? offsets[b + 1] : n_indices;
        float *o = out + b * dim;
        for (int64_t c = 0; c < dim; c++) o[c] = 0.0f;
        for (int64_t i = start; i < stop; i++) {
            if ((uint64_t)indices[i] >= (uint64_t)n_rows) return i;  /* out of range */
            if (i + ahead < n_indices && (uint64_t)indices[i + ahead] < (uint64_t)n_rows)
                __builtin_prefetch(packed + indices[i + ahead] * row_bytes, 0, 0);
            const uint8_t *row = packed + indices[i] * row_bytes;
            float w = weights ? weights[i] : 1.0f;
            /* As FBGEMM: fold the weight into scale and bias, then q * a + b. */
            if (bits == 8) {
                float a = lp_load_f32(row + dim) * w, bias = lp_load_f32(row + dim + 4) * w;
#pragma omp simd
                for (int64_t c = 0; c < dim; c++) o[c] += row[c] * a + bias;
            } else {
                float a = lp_load_f16(row + data_bytes) * w;
                float bias = lp_load_f16(row + data_bytes + 2) * w;
                if (bits == 4) {  /* a fixed layout vectorises: two codes per byte */
#pragma omp simd
                    for (int64_t k = 0; k < dim / 2; k++) {
                        o[2 * k] += (row[k] & 15) * a + bias;
                        o[2 * k + 1] += (row[k] >> 4) * a + bias;
                    }
                    if (dim & 1) o[dim - 1] += (row[dim / 2] & 15) * a + bias;
                } else {
#pragma omp simd
                    for (int64_t c = 0; c < dim; c++) {
                        int q = (row[c / per_byte] >> ((c % per_byte) * bits)) & mask;
                        o[c] += q * a + bias;
                    }
                }
            }
        }
        if (mean && stop > start) {
            float inv = 1.0f / (float)(stop - start);
            for (int64_t c = 0; c < dim; c++) o[c] *= inv;
        }
    }
    return -1;
}
