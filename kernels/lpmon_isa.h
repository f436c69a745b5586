/*
 * Instruction sets that kernels are built for (setup.py compiles each *_isa.c
 * once per entry) and the runtime choice among them. LP_X86_VARIANTS is
 * defined when the avx2 and avx512 copies were built (x86-64 Linux with GCC
 * or Clang); elsewhere only the base copy exists.
 */
#ifndef LPMON_ISA_H
#define LPMON_ISA_H

#include <stdint.h>

enum lp_isa { LP_ISA_BASE = 0, LP_ISA_AVX2 = 1, LP_ISA_AVX512 = 2 };

/* The best ISA this CPU runs and this build has. */
static int lp_best_isa(void)
{
#ifdef LP_X86_VARIANTS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return LP_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("bmi2"))
        return LP_ISA_AVX2;
#endif
    return LP_ISA_BASE;
}

#endif /* LPMON_ISA_H */
