/*
 * One pass over float32 values that both scans them (min, max, NaN/inf) and
 * counts them into an aligned histogram (see lpmon/calibrate/histogram.py):
 * bin k covers [k w, (k + 1) w), w = 2**exponent, and the histogram keeps
 * n_bins bins from bin `origin`. Values are taken a block at a time: the
 * block's min and max are found while it sits in L1; when they widen the
 * range seen so far, the grid moves to what the whole range needs (the same
 * rule as AlignedHistogram._cover: the smallest exponent that fits, origin at
 * the minimum's bin) and the counts are re-binned exactly (a bin of a coarser
 * grid is exactly 2**shift bins of the finer one). The grid reached depends
 * only on the overall min and max, so the counts are those of a scan followed
 * by a second counting pass, bit for bit, in one read of the data.
 */
#ifndef LPMON_CALIBRATE_HIST_H
#define LPMON_CALIBRATE_HIST_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "calibrate_dispatch.h"

#define LP_INLINE static inline __attribute__((always_inline))

#define LP_HIST_BLOCK 2048
#define LP_HIST_COPIES 4
#define LP_HIST_MIN_EXPONENT (-1000)
#define LP_HIST_INDEX_BITS 45
#define LP_HIST_FLUSH (1 << 28)

static int64_t lp_hist_span(double lo, double hi, int exponent)
{
    double w = ldexp(1.0, exponent);
    return (int64_t)floor(hi / w) - (int64_t)floor(lo / w) + 1;
}

/* histogram.required_exponent, in C. */
static int lp_hist_required_exponent(double lo, double hi, int64_t n_bins)
{
    double magnitude = fmax(fabs(lo), fabs(hi));
    int exponent = LP_HIST_MIN_EXPONENT, e;
    if (magnitude > 0) {
        frexp(magnitude, &e);
        exponent = e - LP_HIST_INDEX_BITS > LP_HIST_MIN_EXPONENT ? e - LP_HIST_INDEX_BITS : LP_HIST_MIN_EXPONENT;
    }
    if (hi > lo) {
        frexp((hi - lo) / (double)n_bins, &e);
        if (e - 1 > exponent) exponent = e - 1;
    }
    while (lp_hist_span(lo, hi, exponent) > n_bins) exponent++;
    return exponent;
}


static void lp_hist_flush(lp_hist *h)
{
    int32_t *c = h->copies;
    for (int64_t k = 0; k < h->n_bins; k++) {
        int64_t total = 0;
        for (int j = 0; j < LP_HIST_COPIES; j++) total += c[j * h->n_bins + k];
        h->counts[k] += total;
    }
    memset(c, 0, sizeof(int32_t) * LP_HIST_COPIES * h->n_bins);
}

/* Move the grid to (exponent, origin), re-binning what was counted. */
static void lp_hist_regrid(lp_hist *h, int exponent, int64_t origin)
{
    if (h->counted) {
        lp_hist_flush(h);
        int shift = exponent - h->exponent < 63 ? exponent - h->exponent : 63;
        int64_t *moved = (int64_t *)h->copies; /* scratch: 4 x int32 per bin is 2 x int64 */
        memset(moved, 0, sizeof(int64_t) * h->n_bins);
        for (int64_t k = 0; k < h->n_bins; k++)
            if (h->counts[k]) moved[((h->origin + k) >> shift) - origin] += h->counts[k];
        memcpy(h->counts, moved, sizeof(int64_t) * h->n_bins);
        memset(moved, 0, sizeof(int64_t) * h->n_bins);
    }
    h->exponent = exponent;
    h->origin = origin;
}

/* Bin indices of xb[0:m] on h's grid: floor(x * 2**-exponent) - origin. With
 * the grid small enough for float32 (the usual case) the product is exact in
 * float32 and truncation becomes floor with one correction; otherwise double. */
LP_INLINE int lp_hist_narrow(const lp_hist *h)
{
    return -(1 << 23) < h->origin && h->origin < (1 << 23) && -126 < h->exponent && h->exponent < 127;
}

LP_INLINE void lp_hist_index(const lp_hist *h, const float *xb, int64_t m, int32_t *idx)
{
    if (lp_hist_narrow(h)) {
        const float inv = (float)ldexp(1.0, -h->exponent);
        const int32_t origin = (int32_t)h->origin;
#pragma omp simd
        for (int64_t j = 0; j < m; j++) {
            float scaled = xb[j] * inv;
            int32_t t = (int32_t)scaled;
            /* A negative value whose scaled form underflowed to -0 is in bin -1 too. */
            idx[j] = t - ((scaled < (float)t) | ((xb[j] < 0.0f) & (t == 0))) - origin;
        }
    } else {
        const double inv = ldexp(1.0, -h->exponent), shift = (double)h->origin;
#pragma omp simd
        for (int64_t j = 0; j < m; j++) idx[j] = (int32_t)((double)xb[j] * inv - shift);
    }
}

/* Count x[0:n] into h. Returns 0, or 1 if x holds NaN or inf (h is then
 * partly updated: the caller works on a copy and drops it). */
int LP_NAME(lp_hist_observe_f32)(lp_hist *h, const float *x, int64_t n)
{
    int32_t idx[LP_HIST_BLOCK];
    int64_t since_flush = 0;
    for (int64_t start = 0; start < n; start += LP_HIST_BLOCK) {
        int64_t m = n - start < LP_HIST_BLOCK ? n - start : LP_HIST_BLOCK;
        const float *xb = x + start;
        float mn = xb[0], mx = xb[0];
        int bad = 0;
        int64_t zeros = 0;
        /* One loop: the block's min, max, zeros and validity, and its bin
         * indices on the current grid (kept unless the block widens the range). */
        const int narrow = lp_hist_narrow(h) && h->lo <= h->hi;
        const float inv = narrow ? (float)ldexp(1.0, -h->exponent) : 1.0f;
        const int32_t origin = narrow ? (int32_t)h->origin : 0;
#pragma omp simd reduction(min:mn) reduction(max:mx) reduction(|:bad) reduction(+:zeros)
        for (int64_t j = 0; j < m; j++) {
            float v = xb[j];
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
            bad |= !(v - v == 0.0f);  /* NaN and +-inf */
            zeros += v == 0.0f;
            float scaled = v * inv;
            int32_t t = (int32_t)scaled;
            idx[j] = t - ((scaled < (float)t) | ((v < 0.0f) & (t == 0))) - origin;
        }
        if (bad) return 1;
        h->zeros += zeros;
        int widened = mn < h->lo || mx > h->hi;
        if (widened) {
            double lo = mn < h->lo ? mn : h->lo, hi = mx > h->hi ? mx : h->hi;
            int exponent = lp_hist_required_exponent(lo, hi, h->n_bins);
            int64_t grid_origin = (int64_t)floor(lo / ldexp(1.0, exponent));
            if (exponent != h->exponent || grid_origin != h->origin) lp_hist_regrid(h, exponent, grid_origin);
            h->lo = lo;
            h->hi = hi;
        }
        if (widened || !narrow) lp_hist_index(h, xb, m, idx);
        int32_t *c0 = h->copies, *c1 = c0 + h->n_bins, *c2 = c1 + h->n_bins, *c3 = c2 + h->n_bins;
        int64_t j = 0;
        for (; j + 3 < m; j += 4) {
            c0[idx[j]]++;
            c1[idx[j + 1]]++;
            c2[idx[j + 2]]++;
            c3[idx[j + 3]]++;
        }
        for (; j < m; j++) c0[idx[j]]++;
        h->counted += m;
        since_flush += m;
        if (since_flush >= LP_HIST_FLUSH) {
            lp_hist_flush(h);
            since_flush = 0;
        }
    }
    lp_hist_flush(h);
    return 0;
}

/*
 * calibrate.l2_search_affine's exhaustive search, vectorised: for each start
 * s, the errors of every end e are computed into a row (a map, the same
 * expression as the scalar loop, so the same values bit for bit), then the
 * row's minimum; the first (s, e) reaching the overall minimum wins, as in
 * the scalar loop. out = {best error, s, e}.
 */
void LP_NAME(lp_l2_search_affine)(const double *below_count, const double *below_sum,
                                  const double *below_sq, const double *edges, int64_t n_edges,
                                  int64_t last_start, int64_t first_end, int levels, double *row,
                                  double *out)
{
    const int64_t k = n_edges - 1;
    const double per_level = 1.0 / (((double)levels - 1.0) * ((double)levels - 1.0) * 12.0);
    const double total_count = below_count[k], total_sum = below_sum[k], total_sq = below_sq[k];
    double best = INFINITY;
    int64_t best_s = 0, best_e = k;
    for (int64_t s = 0; s <= last_start; s++) {
        const double a = edges[s];
        const double under = below_sq[s] - 2.0 * a * below_sum[s] + a * a * below_count[s];
        const double count_s = below_count[s];
        const int64_t e0 = first_end > s + 1 ? first_end : s + 1;
        if (e0 > k) continue;
        double row_min = INFINITY;
#pragma omp simd reduction(min:row_min)
        for (int64_t e = e0; e <= k; e++) {
            double b = edges[e];
            double over = (total_sq - below_sq[e]) - 2.0 * b * (total_sum - below_sum[e])
                          + b * b * (total_count - below_count[e]);
            double inside = (below_count[e] - count_s) * (b - a) * (b - a) * per_level;
            double err = under + over + inside;
            row[e] = err;
            row_min = err < row_min ? err : row_min;
        }
        if (row_min < best) {
            int64_t e = e0;
            while (row[e] != row_min) e++;
            best = row_min;
            best_s = s;
            best_e = e;
        }
    }
    out[0] = best;
    out[1] = (double)best_s;
    out[2] = (double)best_e;
}

#endif /* LPMON_CALIBRATE_HIST_H */
