/*
 * lp_fma(a, b, c): a * b + c with a single rounding, as FBGEMM's kernels
 * compute it (vfmadd). The sources that include this are compiled with
 * -ffp-contract=off (setup.py), so every other a * b + c rounds twice, as
 * FBGEMM's unfused arithmetic does; a fused step is always written out.
 *
 * Copies built for a target with FMA use the instruction. The base x86-64
 * copy has none and emulates it in double precision: the product of two
 * floats is exact in a double, the sum is rounded to odd (Boldo and
 * Melquiond), and rounding that to float gives the correctly rounded result,
 * with no libm call, so loops still vectorise.
 */
#ifndef LPMON_FMA_H
#define LPMON_FMA_H

#include <stdint.h>
#include <string.h>

#if defined(__FMA__) || defined(__aarch64__) || defined(__FP_FAST_FMAF)
static inline __attribute__((always_inline)) float lp_fma(float a, float b, float c)
{
    return __builtin_fmaf(a, b, c);
}
#else
static inline __attribute__((always_inline)) float lp_fma(float a, float b, float c)
{
    double p = (double)a * (double)b, d = (double)c; /* exact */
    double s = p + d;
    double v = s - p;                                 /* TwoSum: s + err == p + d exactly */
    double err = (p - (s - v)) + (d - v);
    int64_t bits;
    memcpy(&bits, &s, sizeof bits);
    /* Round to odd: an inexact sum whose last bit is even moves one ulp toward the exact value. */
    int64_t toward = (err > 0) == (s > 0) ? 1 : -1;
    bits += (err != 0 && !(bits & 1)) ? toward : 0;
    memcpy(&s, &bits, sizeof s);
    return (float)s;
}
#endif

#endif /* LPMON_FMA_H */
