/*
 * Affine int8 quantization and requantization, FBGEMM's arithmetic bit for
 * bit. Included by affine_isa.c with LP_NAME(base) defined; compiled with
 * -ffp-contract=off, so every rounding below is one FBGEMM does too.
 */

/* Rounding half to even by adding and subtracting 1.5 * 2**23: exact for |v| < 2**22. */
#define LP_MAGIC 12582912.0f
#define LP_LIMIT 4194304.0f

LP_INLINE float lp_clamp(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

/*
 * FBGEMM's Quantize<T> (static quantization, what torch.quantize_per_tensor
 * calls): q = clamp(round_half_even(fma(x, 1 / scale, zero_point))), the zero
 * point added before rounding, the product not rounded on its own. Writes
 * the codes as bytes (int8 codes as their two's complement) and counts
 * (below qmin, above qmax) into counts[0..1].
 */
void LP_NAME(lp_quantize_affine)(const float *x, int64_t n, float inverse_scale, float zero_point,
                                 float qmin, float qmax, uint8_t *out, int64_t *counts)
{
    int64_t below = 0, above = 0;
#pragma omp simd reduction(+:below, above)
    for (int64_t i = 0; i < n; i++) {
        float v = lp_clamp(lp_fma(x[i], inverse_scale, zero_point), -LP_LIMIT, LP_LIMIT);
        v = (v + LP_MAGIC) - LP_MAGIC;
        below += v < qmin;
        above += v > qmax;
        out[i] = (uint8_t)(int32_t)lp_clamp(v, qmin, qmax);
    }
    counts[0] = below;
    counts[1] = above;
}

/*
 * FBGEMM's requantization of int32 accumulators with a float bias
 * (ReQuantizeOutput, per output channel): y = (float(acc) + bias[j] /
 * act_times_w_scale[j]) * multiplier[j], rounded half to even, plus the
 * output zero point, clamped to [lo, 255] (lo is the zero point under a fused
 * ReLU). The caller passes bias_over_scale[j] = bias[j] / act_times_w_scale[j]
 * (float division) and multiplier[j] = act_times_w_scale[j] / out_scale. acc
 * holds the exact accumulators, rounded to float32 as cvtdq2ps does. Like
 * cvtps2dq, a y beyond int32 becomes INT32_MIN, hence lo.
 */
void LP_NAME(lp_requantize)(const float *acc, int64_t rows, int64_t cols, const float *multiplier,
                            const float *bias_over_scale, float zero_point, float lo, float hi,
                            uint8_t *out)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *a = acc + r * cols;
        uint8_t *o = out + r * cols;
#pragma omp simd
        for (int64_t j = 0; j < cols; j++) {
            float y = (a[j] + bias_over_scale[j]) * multiplier[j];
            int beyond = !(y < 2147483648.0f && y >= -2147483648.0f);
            float v = lp_clamp(y, -LP_LIMIT, LP_LIMIT);
            v = ((v + LP_MAGIC) - LP_MAGIC) + zero_point;
            v = beyond ? lo : v;
            o[j] = (uint8_t)(int32_t)lp_clamp(v, lo, hi);
        }
    }
}

/*
 * FBGEMM's float output stage (ReQuantizeForFloat, torch's fbgemm linear
 * with a float32 output): out[i, j] = fma(acc[i, j], multiplier[j], bias[j])
 * with one rounding, multiplier[j] = act_scale * weight_scale[j] (float32).
 * relu then clamps at 0 as NumPy's maximum(y, 0) does (-0 becomes +0, NaN stays).
 */
void LP_NAME(lp_dequantize_output)(const float *acc, int64_t rows, int64_t cols,
                                   const float *multiplier, const float *bias, int relu, float *out)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *a = acc + r * cols;
        float *o = out + r * cols;
        if (relu) {
#pragma omp simd
            for (int64_t j = 0; j < cols; j++) {
                float y = lp_fma(a[j], multiplier[j], bias[j]);
                o[j] = (y > 0.0f || y != y) ? y : 0.0f;
            }
        } else {
#pragma omp simd
            for (int64_t j = 0; j < cols; j++) o[j] = lp_fma(a[j], multiplier[j], bias[j]);
        }
    }
}
