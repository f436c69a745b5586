/* The int8 matrix product for one instruction set (see lpmon_isa.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#define LP_INLINE static inline __attribute__((always_inline))

#ifndef LP_ISA
#define LP_ISA base
#endif
#define LP_CAT(a, b) a##_##b
#define LP_CATX(a, b) LP_CAT(a, b)
#define LP_NAME(base) LP_CATX(base, LP_ISA)

#include "int8gemm_body.h"
