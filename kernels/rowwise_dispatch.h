/* The table of per-ISA copies of the row-wise embedding kernels (see lpmon_isa.h). */
#ifndef LPMON_ROWWISE_DISPATCH_H
#define LPMON_ROWWISE_DISPATCH_H

#include "lpmon_isa.h"

typedef int64_t (*lp_q8_fn)(const float *, int64_t, int64_t, uint8_t *);
typedef int64_t (*lp_qn_fn)(int, const float *, int64_t, int64_t, const float *, const float *,
                         uint8_t *);
typedef void (*lp_dq_fn)(const uint8_t *, int, int64_t, int64_t, int64_t, float *);
typedef int64_t (*lp_bag_fn)(const uint8_t *, int64_t, int, int64_t, int64_t, const int64_t *,
                             int64_t, const int64_t *, int64_t, const float *, int, float *);
typedef int64_t (*lp_bag_float_fn)(const float *, int64_t, int64_t, const int64_t *, int64_t,
                                   const int64_t *, int64_t, float *);

typedef struct {
    lp_q8_fn quantize8;
    lp_qn_fn quantize_nbit;
    lp_dq_fn dequantize;
    lp_bag_fn embedding_bag;
    lp_bag_float_fn embedding_bag_float;
} lp_rowwise_kernels;

#define LP_ROWWISE_DECLARE(isa)                                                              \
    int64_t lp_quantize_rows8_##isa(const float *, int64_t, int64_t, uint8_t *);                \
    int64_t lp_quantize_rows_nbit_##isa(int, const float *, int64_t, int64_t, const float *,    \
                                     const float *, uint8_t *);                              \
    void lp_dequantize_rows_##isa(const uint8_t *, int, int64_t, int64_t, int64_t, float *); \
    int64_t lp_embedding_bag_##isa(const uint8_t *, int64_t, int, int64_t, int64_t,          \
                                   const int64_t *, int64_t, const int64_t *, int64_t,       \
                                   const float *, int, float *);                             \
    int64_t lp_embedding_bag_float_##isa(const float *, int64_t, int64_t, const int64_t *,     \
                                         int64_t, const int64_t *, int64_t, float *);
#define LP_ROWWISE_TABLE(isa)                                                                \
    { lp_quantize_rows8_##isa, lp_quantize_rows_nbit_##isa, lp_dequantize_rows_##isa,        \
      lp_embedding_bag_##isa, lp_embedding_bag_float_##isa }

LP_ROWWISE_DECLARE(base)
#ifdef LP_X86_VARIANTS
LP_ROWWISE_DECLARE(avx2)
LP_ROWWISE_DECLARE(avx512)
#endif

static lp_rowwise_kernels lp_rowwise_kernels_for(int isa)
{
#ifdef LP_X86_VARIANTS
    static const lp_rowwise_kernels avx512 = LP_ROWWISE_TABLE(avx512), avx2 = LP_ROWWISE_TABLE(avx2);
    if (isa == LP_ISA_AVX512) return avx512;
    if (isa == LP_ISA_AVX2) return avx2;
#endif
    static const lp_rowwise_kernels base = LP_ROWWISE_TABLE(base);
    (void)isa;
    return base;
}

#endif /* LPMON_ROWWISE_DISPATCH_H */
