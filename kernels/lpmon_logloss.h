/*
 * Per-example log-loss arithmetic for lpmon's metrics kernels.
 *
 * Why C and not Cython for this layer: the block loops (logloss_body.h) need
 * `#pragma omp simd reduction(...)`: GCC will not vectorise a floating-point
 * sum without it unless -ffast-math is on, and -ffast-math would break NaN
 * detection. They are compiled once per instruction set (logloss_isa.c) and
 * chosen at import (logloss_dispatch.h), so one build runs on any x86-64.
 * Cython (kernels/metrics.pyx) does validation, chunking and threads.
 *
 * Accuracy: logarithms are evaluated in float32 with the Cephes logf
 * polynomial (about 1 ulp). Where a logarithm's argument is close to 1 the
 * kernel never forms it by rounding: it passes the exact complement t so that
 * log(1 + t) is evaluated from t itself. Sums of values that can differ
 * widely in size, or whose combination cancels, run in float64.
 */
#ifndef LPMON_LOGLOSS_H
#define LPMON_LOGLOSS_H

#include <stdint.h>
#include <string.h>

#define LP_INLINE static inline __attribute__((always_inline))

/* Examples per block: per-example values of a block stay in L1. */
#define LP_BLOCK 512

/* Predictions p and their complements 1 - p are both clipped at LP_EPS before
 * any logarithm: a confident miss costs -log(1e-7) = 16.12, in float32 as in
 * float64 (clipping p itself at 1 - 1e-7 would round that bound to 1 - 1.19e-7
 * in float32, a loss of 15.94). */
#define LP_EPS 1e-7

/* Layout of the partial sums written by the chunk functions. */
/* "Bad" fields are zero when every input is valid and non-zero otherwise
 * (NaN counts as bad); the caller then counts the problems precisely, off
 * the fast path. */
enum lp_ne_field {
    LP_NE_LOSS, LP_NE_POS, LP_NE_BAD, LP_NE_FIELDS
};
enum lp_cmp_field {
    LP_CMP_LOSS_REF,     /* sum l_ref                          */
    LP_CMP_LOSS_REF_SQ,  /* sum l_ref^2                        */
    LP_CMP_LOSS_Q,       /* sum l_q                            */
    LP_CMP_DIFF,         /* sum d, d = l_q - l_ref             */
    LP_CMP_DIFF_SQ,      /* sum d^2                            */
    LP_CMP_DIFF_X_LOSS,  /* sum d * l_ref                      */
    LP_CMP_KL,           /* sum KL(Bernoulli(p_ref) || Bernoulli(p_q)) */
    LP_CMP_P_REF,        /* sum p_ref                          */
    LP_CMP_P_Q,          /* sum p_q                            */
    LP_CMP_ABS_DIFF,     /* sum |p_ref - p_q|                  */
    LP_CMP_MAX_ABS_DIFF, /* max |p_ref - p_q|                  */
    LP_CMP_POS,          /* count y == 1                       */
    LP_CMP_BAD,          /* count of examples with p outside [0, 1], NaN or y > 1 */
    LP_CMP_FIELDS
};

union lp_bits { float f; int32_t i; };
LP_INLINE float lp_as_float(int32_t i) { union lp_bits b; b.i = i; return b.f; }
LP_INLINE int32_t lp_as_int(float f) { union lp_bits b; b.f = f; return b.i; }

struct lp_log1p { float log, phi; };

/*
 * log(w) for a positive normal float w = 1 + t, where t is known exactly.
 * When w lies in [sqrt(1/2), sqrt(2)) the polynomial runs on t itself, so
 * log(1 + t) keeps full relative accuracy however small t is. .phi is
 * log1p(t) - t, also accurate for small t (it is the polynomial's own tail).
 */
LP_INLINE struct lp_log1p lp_log1p_exact(float w, float t)
{
    const float sqrt_half = 0.70710678118654752440f;
    const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    int32_t bits = lp_as_int(w);
    int32_t e = ((bits >> 23) & 0xff) - 126;           /* w = m 2^e, m in [1/2, 1) */
    float m = lp_as_float((bits & 0x007fffff) | 0x3f000000);
    int32_t low = m < sqrt_half;
    e = low ? e - 1 : e;
    m = low ? m + m : m;                               /* m in [sqrt(1/2), sqrt(2)) */
    int32_t near_one = e == 0;
    float x = near_one ? t : m - 1.0f;
    float z = x * x;
    float p = 7.0376836292e-2f;
    p = p * x - 1.1514610310e-1f;
    p = p * x + 1.1676998740e-1f;
    p = p * x - 1.2420140846e-1f;
    p = p * x + 1.4249322787e-1f;
    p = p * x - 1.6668057665e-1f;
    p = p * x + 2.0000714765e-1f;
    p = p * x - 2.4999993993e-1f;
    p = p * x + 3.3333331174e-1f;
    float tail = z * (x * p - 0.5f);                   /* log1p(x) - x */
    float fe = (float)e;
    struct lp_log1p r;
    r.log = fe * ln2_hi + (x + (tail + fe * ln2_lo));
    r.phi = near_one ? tail : r.log - t;
    return r;
}

/* -log(q) where q is the probability given to the observed label and qc = 1 - q exactly. */
LP_INLINE float lp_logloss(float q, float qc)
{
    return -lp_log1p_exact(q, -qc).log;
}

/* Everything one example contributes to a comparison (all float32). */
struct lp_example {
    float loss_ref, loss_q, diff, kl, abs_diff;
};

/*
 * One example of a comparison. pr, pq are clipped predictions with exact
 * complements cr = 1 - pr, cq = 1 - pq, and delta = pr - pq exactly (all
 * computed in the input precision by the caller).
 *
 * d = l_q - l_ref = log(q_ref / q_q) is computed as log1p(u) (y = 1) or
 * log1p(v) (y = 0) with u = delta / pq, v = -delta / cq, never as a difference
 * of two rounded losses; l_q has its own logarithm too, since l_ref + d
 * cancels when the quantized model is confidently right where fp32 is not. KL(p_ref || p_q) = pr log1p(u) + cr log1p(v); its two
 * first-order terms cancel, so for |u|, |v| <= 1 it is evaluated as
 * delta^2 / (pq cq) + pr phi(u) + cr phi(v) with phi(t) = log1p(t) - t.
 */
LP_INLINE struct lp_example lp_compare_one(float pr, float cr, float pq, float cq,
                                           float delta, float raw_abs_diff, int y)
{
    struct lp_example ex;
    float r = 1.0f / (pq * cq);                        /* one division for both */
    float rq = cq * r, rcq = pq * r;
    float u = delta * rq, v = -delta * rcq;
    struct lp_log1p lu = lp_log1p_exact(pr * rq, u);   /* log(pr / pq) */
    struct lp_log1p lv = lp_log1p_exact(cr * rcq, v);  /* log(cr / cq) */
    float kl_small = delta * delta * (rq * rcq) + (pr * lu.phi + cr * lv.phi);
    float kl_large = pr * lu.log + cr * lv.log;
    int small = (u <= 1.0f) & (u >= -1.0f) & (v <= 1.0f) & (v >= -1.0f);
    float kl = small ? kl_small : kl_large;
    ex.kl = kl > 0.0f ? kl : 0.0f;
    ex.loss_ref = lp_logloss(y ? pr : cr, y ? cr : pr);
    ex.loss_q = lp_logloss(y ? pq : cq, y ? cq : pq);
    ex.diff = y ? lu.log : lv.log;
    ex.abs_diff = raw_abs_diff;
    return ex;
}

/*
 * The clipped pair (pc, cc) of a prediction raw, in its type T:
 * pc = max(raw, eps) and cc = max(1 - raw, eps), made consistent where one
 * end was clipped (the other is its complement). 1 - raw is exact for
 * raw >= 1/2, so the logarithms near 1 (which read the complement) see the
 * same value in float32 and float64. NaN stays NaN. (A macro, not a function:
 * the log-loss bodies are written once for both float types.)
 */
#define LP_CLIP_P(T, raw, eps) ((T)1 - (raw) < (eps) ? (T)1 - (eps) : ((raw) < (eps) ? (eps) : (raw)))
#define LP_CLIP_C(T, raw, eps) ((raw) < (eps) ? (T)1 - (eps) : ((T)1 - (raw) < (eps) ? (eps) : (T)1 - (raw)))

/* 1 when an example cannot be scored: p outside [0, 1] or NaN, or y > 1. */
#define LP_INVALID(p, y) ((float)((((p) >= 0) & ((p) <= 1) & ((y) <= 1)) ^ 1))

#endif /* LPMON_LOGLOSS_H */

