/* The table of per-ISA copies of the calibration kernels (see lpmon_isa.h). */
#ifndef LPMON_CALIBRATE_DISPATCH_H
#define LPMON_CALIBRATE_DISPATCH_H

#include <stdint.h>

#include "lpmon_isa.h"

/* An aligned histogram being filled (see calibrate_hist.h). */
typedef struct {
    int64_t n_bins;
    int64_t *counts;     /* [n_bins], int64 */
    int32_t *copies;     /* [LP_HIST_COPIES * n_bins] scratch, zero on entry */
    int exponent;
    int64_t origin;
    double lo, hi;       /* range seen (lo > hi: nothing yet) */
    int64_t counted;     /* values in counts or copies */
    int64_t zeros;       /* values exactly 0 seen in this call */
} lp_hist;

typedef int (*lp_hist_fn)(lp_hist *, const float *, int64_t);
typedef void (*lp_l2_fn)(const double *, const double *, const double *, const double *, int64_t,
                         int64_t, int64_t, int, double *, double *);

typedef struct {
    lp_hist_fn observe_f32;
    lp_l2_fn l2_search_affine;
} lp_calibrate_kernels;

#define LP_CALIBRATE_DECLARE(isa)                                                               \
    int lp_hist_observe_f32_##isa(lp_hist *, const float *, int64_t);                           \
    void lp_l2_search_affine_##isa(const double *, const double *, const double *, const double *, \
                                   int64_t, int64_t, int64_t, int, double *, double *);
#define LP_CALIBRATE_TABLE(isa) { lp_hist_observe_f32_##isa, lp_l2_search_affine_##isa }

LP_CALIBRATE_DECLARE(base)
#ifdef LP_X86_VARIANTS
LP_CALIBRATE_DECLARE(avx2)
LP_CALIBRATE_DECLARE(avx512)
#endif

static lp_calibrate_kernels lp_calibrate_kernels_for(int isa)
{
#ifdef LP_X86_VARIANTS
    static const lp_calibrate_kernels avx512 = LP_CALIBRATE_TABLE(avx512), avx2 = LP_CALIBRATE_TABLE(avx2);
    if (isa == LP_ISA_AVX512) return avx512;
    if (isa == LP_ISA_AVX2) return avx2;
#endif
    static const lp_calibrate_kernels base = LP_CALIBRATE_TABLE(base);
    (void)isa;
    return base;
}

#endif /* LPMON_CALIBRATE_DISPATCH_H */
