/* The calibration kernels for one instruction set (see lpmon_isa.h). */
#ifndef LP_ISA
#define LP_ISA base
#endif
#define LP_CAT(a, b) a##_##b
#define LP_CATX(a, b) LP_CAT(a, b)
#define LP_NAME(base) LP_CATX(base, LP_ISA)

#include "calibrate_hist.h"
