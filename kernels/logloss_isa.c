/*
 * The log-loss kernels for one instruction set. setup.py compiles this file
 * once per entry of lpmon_isa.h (LP_ISA = base, avx2 or avx512, each with
 * its own -march), so each copy is vectorised for its ISA and the right one
 * is picked at import time.
 */
#include "lpmon_logloss.h"

#ifndef LP_ISA
#define LP_ISA base
#endif
#define LP_CAT3(a, b, c) a##_##b##_##c
#define LP_CAT3X(a, b, c) LP_CAT3(a, b, c)

#define T float
#define LP_NAME(base) LP_CAT3X(base, f32, LP_ISA)
#include "logloss_body.h"
#undef T
#undef LP_NAME

#define T double
#define LP_NAME(base) LP_CAT3X(base, f64, LP_ISA)
#include "logloss_body.h"
#undef T
#undef LP_NAME
