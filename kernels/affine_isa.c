/* The affine quantization kernels for one instruction set (see lpmon_isa.h). */
#include <stdint.h>

#include "lpmon_fma.h"

#define LP_INLINE static inline __attribute__((always_inline))

#ifndef LP_ISA
#define LP_ISA base
#endif
#define LP_CAT(a, b) a##_##b
#define LP_CATX(a, b) LP_CAT(a, b)
#define LP_NAME(base) LP_CATX(base, LP_ISA)

#include "affine_body.h"
