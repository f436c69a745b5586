/* The row-wise embedding kernels for one instruction set (see lpmon_isa.h). */
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "lpmon_fma.h"

#define LP_INLINE static inline __attribute__((always_inline))

#ifndef LP_ISA
#define LP_ISA base
#endif
#define LP_CAT(a, b) a##_##b
#define LP_CATX(a, b) LP_CAT(a, b)
#define LP_NAME(base) LP_CATX(base, LP_ISA)

#include "rowwise_body.h"
