/* The table of per-ISA copies of the dot-interaction kernel (see lpmon_isa.h). */
#ifndef LPMON_INTERACTION_DISPATCH_H
#define LPMON_INTERACTION_DISPATCH_H

#include "lpmon_isa.h"

typedef int64_t (*lp_dot_interaction_fn)(const float *const *, int64_t, int64_t, int64_t, int64_t,
                                         float *, int64_t);

typedef struct {
    lp_dot_interaction_fn dot_interaction;
} lp_interaction_kernels;

#define LP_INTERACTION_DECLARE(isa)                                                             \
    int64_t lp_dot_interaction_##isa(const float *const *, int64_t, int64_t, int64_t, int64_t,  \
                                     float *, int64_t);
#define LP_INTERACTION_TABLE(isa) { lp_dot_interaction_##isa }

LP_INTERACTION_DECLARE(base)
#ifdef LP_X86_VARIANTS
LP_INTERACTION_DECLARE(avx2)
LP_INTERACTION_DECLARE(avx512)
#endif

static lp_interaction_kernels lp_interaction_kernels_for(int isa)
{
#ifdef LP_X86_VARIANTS
    static const lp_interaction_kernels avx512 = LP_INTERACTION_TABLE(avx512),
                                        avx2 = LP_INTERACTION_TABLE(avx2);
    if (isa == LP_ISA_AVX512) return avx512;
    if (isa == LP_ISA_AVX2) return avx2;
#endif
    static const lp_interaction_kernels base = LP_INTERACTION_TABLE(base);
    (void)isa;
    return base;
}

#endif /* LPMON_INTERACTION_DISPATCH_H */
