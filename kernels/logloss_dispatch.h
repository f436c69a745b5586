/* The table of per-ISA copies of the log-loss kernels (see lpmon_isa.h). */
#ifndef LPMON_LOGLOSS_DISPATCH_H
#define LPMON_LOGLOSS_DISPATCH_H

#include "lpmon_isa.h"

typedef void (*lp_ne_fn_f32)(const float *, const uint8_t *, int64_t, double *);
typedef void (*lp_ne_fn_f64)(const double *, const uint8_t *, int64_t, double *);
typedef void (*lp_cmp_fn_f32)(const float *, const float *, const uint8_t *, int64_t, double *);
typedef void (*lp_cmp_fn_f64)(const double *, const double *, const uint8_t *, int64_t, double *);
typedef void (*lp_seg_fn_f32)(const float *, const float *, const uint8_t *, const int64_t *,
                              int64_t, double *);
typedef void (*lp_seg_fn_f64)(const double *, const double *, const uint8_t *, const int64_t *,
                              int64_t, double *);

typedef struct {
    lp_ne_fn_f32 ne_f32;
    lp_ne_fn_f64 ne_f64;
    lp_cmp_fn_f32 cmp_f32;
    lp_cmp_fn_f64 cmp_f64;
    lp_seg_fn_f32 seg_f32;
    lp_seg_fn_f64 seg_f64;
} lp_kernels;

#define LP_DECLARE(isa)                                                                  \
    void lp_ne_chunk_f32_##isa(const float *, const uint8_t *, int64_t, double *);       \
    void lp_ne_chunk_f64_##isa(const double *, const uint8_t *, int64_t, double *);      \
    void lp_compare_chunk_f32_##isa(const float *, const float *, const uint8_t *,       \
                                    int64_t, double *);                                  \
    void lp_compare_chunk_f64_##isa(const double *, const double *, const uint8_t *,     \
                                    int64_t, double *);                                  \
    void lp_compare_segments_f32_##isa(const float *, const float *, const uint8_t *,    \
                                       const int64_t *, int64_t, double *);              \
    void lp_compare_segments_f64_##isa(const double *, const double *, const uint8_t *,  \
                                       const int64_t *, int64_t, double *);
#define LP_TABLE(isa)                                                                    \
    { lp_ne_chunk_f32_##isa, lp_ne_chunk_f64_##isa, lp_compare_chunk_f32_##isa,          \
      lp_compare_chunk_f64_##isa, lp_compare_segments_f32_##isa,                         \
      lp_compare_segments_f64_##isa }

LP_DECLARE(base)
#ifdef LP_X86_VARIANTS
LP_DECLARE(avx2)
LP_DECLARE(avx512)
#endif

/* The kernels of one ISA; callers must not ask for more than lp_best_isa(). */
static lp_kernels lp_kernels_for(int isa)
{
#ifdef LP_X86_VARIANTS
    static const lp_kernels avx512 = LP_TABLE(avx512), avx2 = LP_TABLE(avx2);
    if (isa == LP_ISA_AVX512) return avx512;
    if (isa == LP_ISA_AVX2) return avx2;
#endif
    static const lp_kernels base = LP_TABLE(base);
    (void)isa;
    return base;
}

#endif /* LPMON_LOGLOSS_DISPATCH_H */
