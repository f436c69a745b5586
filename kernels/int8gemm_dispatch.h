/* The table of per-ISA copies of the int8 matrix product (see lpmon_isa.h). */
#ifndef LPMON_INT8GEMM_DISPATCH_H
#define LPMON_INT8GEMM_DISPATCH_H

#include "lpmon_isa.h"

typedef void (*lp_gemm_u8s8_fn)(const uint8_t *, int64_t, int64_t, const int8_t *, const int32_t *,
                                int64_t, int32_t, float *);
typedef int (*lp_gemm_fast_fn)(void);

typedef struct {
    lp_gemm_u8s8_fn gemm_u8s8;
    lp_gemm_fast_fn fast;
} lp_int8gemm_kernels;

#define LP_INT8GEMM_DECLARE(isa)                                                                \
    void lp_gemm_u8s8_##isa(const uint8_t *, int64_t, int64_t, const int8_t *, const int32_t *, \
                            int64_t, int32_t, float *);                                         \
    int lp_gemm_fast_##isa(void);
#define LP_INT8GEMM_TABLE(isa) { lp_gemm_u8s8_##isa, lp_gemm_fast_##isa }

LP_INT8GEMM_DECLARE(base)
#ifdef LP_X86_VARIANTS
LP_INT8GEMM_DECLARE(avx2)
LP_INT8GEMM_DECLARE(avx512)
#endif

static lp_int8gemm_kernels lp_int8gemm_kernels_for(int isa)
{
#ifdef LP_X86_VARIANTS
    static const lp_int8gemm_kernels avx512 = LP_INT8GEMM_TABLE(avx512),
                                     avx2 = LP_INT8GEMM_TABLE(avx2);
    if (isa == LP_ISA_AVX512) return avx512;
    if (isa == LP_ISA_AVX2) return avx2;
#endif
    static const lp_int8gemm_kernels base = LP_INT8GEMM_TABLE(base);
    (void)isa;
    return base;
}

#endif /* LPMON_INT8GEMM_DISPATCH_H */
