/* The table of per-ISA copies of the affine quantization kernels (see lpmon_isa.h). */
#ifndef LPMON_AFFINE_DISPATCH_H
#define LPMON_AFFINE_DISPATCH_H

#include "lpmon_isa.h"

typedef void (*lp_quantize_fn)(const float *, int64_t, float, float, float, float, uint8_t *,
                               int64_t *);
typedef void (*lp_requantize_fn)(const float *, int64_t, int64_t, const float *, const float *,
                                 float, float, float, uint8_t *);
typedef void (*lp_dequantize_output_fn)(const float *, int64_t, int64_t, const float *,
                                        const float *, int, float *);

typedef struct {
    lp_quantize_fn quantize;
    lp_requantize_fn requantize;
    lp_dequantize_output_fn dequantize_output;
} lp_affine_kernels;

#define LP_AFFINE_DECLARE(isa)                                                                 \
    void lp_quantize_affine_##isa(const float *, int64_t, float, float, float, float, uint8_t *, \
                                  int64_t *);                                                  \
    void lp_requantize_##isa(const float *, int64_t, int64_t, const float *, const float *,     \
                             float, float, float, uint8_t *);                              \
    void lp_dequantize_output_##isa(const float *, int64_t, int64_t, const float *,             \
                                    const float *, int, float *);
#define LP_AFFINE_TABLE(isa) { lp_quantize_affine_##isa, lp_requantize_##isa, lp_dequantize_output_##isa }

LP_AFFINE_DECLARE(base)
#ifdef LP_X86_VARIANTS
LP_AFFINE_DECLARE(avx2)
LP_AFFINE_DECLARE(avx512)
#endif

static lp_affine_kernels lp_affine_kernels_for(int isa)
{
#ifdef LP_X86_VARIANTS
    static const lp_affine_kernels avx512 = LP_AFFINE_TABLE(avx512), avx2 = LP_AFFINE_TABLE(avx2);
    if (isa == LP_ISA_AVX512) return avx512;
    if (isa == LP_ISA_AVX2) return avx2;
#endif
    static const lp_affine_kernels base = LP_AFFINE_TABLE(base);
    (void)isa;
    return base;
}

#endif /* LPMON_AFFINE_DISPATCH_H */
