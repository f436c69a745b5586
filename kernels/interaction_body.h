/*
 * DLRM's dot interaction: for each example, the bottom MLP's output x_0 and the
 * pooled embeddings x_1 .. x_{V-1} (float32 [d] each), out = [x_0, z] where z
 * holds dot(x_i, x_j) for i > j in np.tril_indices(V, k=-1)'s order (row i
 * from 1, then j from 0 to i - 1: pair (i, j) at i (i - 1) / 2 + j).
 *
 * Each dot product is the float32 value nearest its exact value (ties to
 * even), with no exception: the products of two floats are exact in double and
 * are summed in double (the fast path); a bound on that sum's rounding error
 * then shows whether every value within the bound rounds to the same float32.
 * When it does (all but about 1 pair in 10^5 for random vectors) that float32
 * is the answer; when not, the pair is summed again exactly (a plain
 * sum checked to be exact by TwoSum, else Shewchuk's expansions: lp_dot_exact).
 * A plain float64 sum rounded once (NumPy's matmul, torch's bmm) gives the
 * same float32 but when its own rounding error crosses a float32 rounding
 * boundary; such a result is off by one ulp and this kernel's is not.
 *
 * The error bound. A double sum of d products in any order is within
 * gamma_{d-1} * sum_k |a_k b_k| of the exact sum (gamma_n = n u / (1 - n u),
 * u = 2**-53), and sum_k |a_k b_k| <= |a| |b| (Cauchy-Schwarz). The kernel
 * uses e = 2 d u |a| |b| + 2 u |s|, the Euclidean norms computed in double:
 * the factor 2 covers the rounding of the norms and of e itself, the 2 u |s|
 * the rounding of s - e and s + e. Rounding to float32 is monotonic, so if
 * s - e and s + e round to the same non-zero float32, so does every value
 * between them, the exact sum included. e = 0 means one vector is all zeros
 * and the sum is exactly zero (+0). A sum so small that it rounds to a zero
 * (whose sign the exact sum decides) goes to the exact path.
 *
 * The summation order of the fast path does not matter (the bound holds for
 * any), so the compiler may vectorise and contract freely: a product of two
 * floats is exact, so a fused multiply-add rounds as the separate add does.
 * Non-finite inputs give the double sum rounded to float32 (inf or NaN).
 */

/* Tile of the lower triangle computed at once: LP_TILE_I rows i by LP_TILE_J columns j. */
#define LP_TILE_I 4
#define LP_TILE_J 8
/* Non-overlapping partials of an exact sum of doubles: at most one per 53 bits of exponent. */
#define LP_PARTIALS 48

/*
 * Add x to the exact sum held in p[0..n) (non-overlapping, increasing magnitude;
 * Shewchuk's grow-expansion with zero elimination, as Python's math.fsum); returns
 * the new n. x and every partial are finite.
 */
static int64_t LP_NAME(lp_grow)(double *p, int64_t n, double x)
{
    int64_t kept = 0;
    for (int64_t j = 0; j < n; j++) {
        double y = p[j];
        if (fabs(x) < fabs(y)) {
            double t = x;
            x = y;
            y = t;
        }
        double hi = x + y;
        double lo = y - (hi - x);
        if (lo != 0.0) p[kept++] = lo;
        x = hi;
    }
    if (x != 0.0 && kept < LP_PARTIALS) p[kept++] = x;
    return kept;
}

/* The double nearest the exact sum p[0..n) (ties to even): math.fsum's last step. */
static double LP_NAME(lp_round_partials)(const double *p, int64_t n)
{
    double hi = 0.0, lo = 0.0, x, y, yr;
    if (n == 0) return 0.0;
    hi = p[--n];
    while (n > 0) {
        x = hi;
        y = p[--n];
        hi = x + y;
        yr = hi - x;
        lo = y - yr;
        if (lo != 0.0) break;
    }
    if (n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0))) {
        y = lo * 2.0;
        x = hi + y;
        yr = x - hi;
        if (y == yr) hi = x;
    }
    return hi;
}

/*
 * The float32 nearest sum_k a[k * stride] * b[k * stride] (ties to even), exactly.
 * With hi the double nearest the exact sum s: float32 rounding boundaries (the
 * midpoints between neighbouring floats) are doubles, so no boundary lies between
 * s and hi, and s rounds as hi does unless hi is a boundary itself; then the sign
 * of s - hi (exact, from the partials) decides. Sums beyond float32's range give
 * inf (a sum within half an ulp of the overflow threshold is not resolved).
 */
static float LP_NAME(lp_dot_exact)(const double *a, const double *b, int64_t stride, int64_t d)
{
    double p[LP_PARTIALS];
    int64_t n = 0;
    for (int64_t k = 0; k < d; k++) n = LP_NAME(lp_grow)(p, n, a[k * stride] * b[k * stride]);
    double hi = LP_NAME(lp_round_partials)(p, n);
    float f = (float)hi;
    if ((double)f == hi || isinf(f)) return f;
    float g = nextafterf(f, (double)f < hi ? INFINITY : -INFINITY); /* hi lies between f and g */
    if ((double)f + (double)g != 2.0 * hi) return f;                  /* not a midpoint */
    n = LP_NAME(lp_grow)(p, n, -hi);
    double rest = LP_NAME(lp_round_partials)(p, n); /* s - hi, rounded: its sign is exact */
    if (rest == 0.0) return f;                      /* a tie: (float)hi rounded it to even */
    return (rest > 0.0) == (g > f) ? g : f;
}

#ifdef __AVX512F__
/*
 * xt[k][v] = (double)rowp[v][k] for v < V (columns V .. up to a multiple of 8 get zeros):
 * 8 x 8 blocks converted and transposed in registers (the scalar loop's stores were a
 * quarter of the kernel's time).
 */
static void LP_NAME(lp_transpose)(const float *const *rowp, int64_t V, int64_t d, double *xt, int64_t vp)
{
    for (int64_t v0 = 0; v0 < V; v0 += 8) {
        for (int64_t k0 = 0; k0 < d; k0 += 8) {
            const int64_t kn = d - k0 < 8 ? d - k0 : 8;
            const __mmask8 mask = (__mmask8)((1u << kn) - 1);
            __m512d r[8], t[8], u[8];
            for (int m = 0; m < 8; m++)
                r[m] = v0 + m < V ? _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mask, rowp[v0 + m] + k0))
                                  : _mm512_setzero_pd();
            for (int m = 0; m < 8; m += 2) {
                t[m] = _mm512_unpacklo_pd(r[m], r[m + 1]);     /* r_m[0] r_m+1[0] r_m[2] r_m+1[2] ... */
                t[m + 1] = _mm512_unpackhi_pd(r[m], r[m + 1]); /* the odd elements */
            }
            for (int m = 0; m < 8; m += 4) {
                u[m] = _mm512_shuffle_f64x2(t[m], t[m + 2], 0x88);     /* elements 0, 4 of rows m..m+3 */
                u[m + 1] = _mm512_shuffle_f64x2(t[m], t[m + 2], 0xDD); /* 2, 6 */
                u[m + 2] = _mm512_shuffle_f64x2(t[m + 1], t[m + 3], 0x88); /* 1, 5 */
                u[m + 3] = _mm512_shuffle_f64x2(t[m + 1], t[m + 3], 0xDD); /* 3, 7 */
            }
            const __m512d column[8] = {
                _mm512_shuffle_f64x2(u[0], u[4], 0x88), _mm512_shuffle_f64x2(u[2], u[6], 0x88),
                _mm512_shuffle_f64x2(u[1], u[5], 0x88), _mm512_shuffle_f64x2(u[3], u[7], 0x88),
                _mm512_shuffle_f64x2(u[0], u[4], 0xDD), _mm512_shuffle_f64x2(u[2], u[6], 0xDD),
                _mm512_shuffle_f64x2(u[1], u[5], 0xDD), _mm512_shuffle_f64x2(u[3], u[7], 0xDD),
            };
            for (int64_t k = 0; k < kn; k++) _mm512_storeu_pd(xt + (k0 + k) * vp + v0, column[k]);
        }
    }
}
#else
static void LP_NAME(lp_transpose)(const float *const *rowp, int64_t V, int64_t d, double *xt, int64_t vp)
{
    for (int64_t k = 0; k < d; k++) {
        double *row = xt + k * vp;
        for (int64_t v = 0; v < V; v++) row[v] = (double)rowp[v][k];
    }
}
#endif

/*
 * Rows [row0, row1) of the interaction: parts[v] is float32 [rows, d] (C order),
 * v = 0 the bottom MLP's output; out is float32 [rows, out_cols] with out_cols =
 * d + V (V - 1) / 2. Returns how many pairs took the exact path, or -1 if the
 * scratch could not be allocated.
 */
int64_t LP_NAME(lp_dot_interaction)(const float *const *parts, int64_t n_parts, int64_t d,
                                    int64_t row0, int64_t row1, float *out, int64_t out_cols)
{
    const int64_t V = n_parts;
    /* Columns of the transposed block, padded with zeros so that every tile reads inside it. */
    const int64_t vp = ((V + LP_TILE_I + LP_TILE_J - 1) / LP_TILE_J) * LP_TILE_J;
    double *xt = calloc((size_t)(d + 1) * (size_t)vp, sizeof(double)); /* [d][vp], then norms */
    const float **rowp = malloc((size_t)V * sizeof(float *));
    const int64_t pairs = V * (V - 1) / 2 + 1;
    int64_t *pend = malloc((size_t)pairs * 4 * sizeof(int64_t)); /* the uncertain pairs of a row */
    float *pend_sum = malloc((size_t)pairs * sizeof(float));
    if (xt == NULL || rowp == NULL || pend == NULL || pend_sum == NULL) {
        free(xt);
        free(rowp);
        free(pend);
        free(pend_sum);
        return -1;
    }
    int64_t *pend_i = pend, *pend_j = pend + pairs, *pend_at = pend + 2 * pairs, *pend_ok = pend + 3 * pairs;
    int64_t pending = 0;
    double *norm = xt + d * vp;
    const double bound = (double)d * 0x1p-52, relative = 0x1p-52;
    int64_t exact = 0;

    for (int64_t r = row0; r < row1; r++) {
        float *o = out + r * out_cols;
        float *z = o + d;
        for (int64_t v = 0; v < V; v++) {
            const float *x = parts[v] + r * d;
            double sq = 0.0;
#pragma omp simd reduction(+:sq)
            for (int64_t k = 0; k < d; k++) sq += (double)x[k] * (double)x[k];
            norm[v] = sqrt(sq);
            rowp[v] = x;
        }
        LP_NAME(lp_transpose)(rowp, V, d, xt, vp);
        memcpy(o, parts[0] + r * d, (size_t)d * sizeof(float));

        for (int64_t i0 = 1; i0 < V; i0 += LP_TILE_I) {
            const int64_t j_end = (i0 + LP_TILE_I - 1 < V ? i0 + LP_TILE_I - 1 : V - 1); /* j < j_end */
            for (int64_t j0 = 0; j0 < j_end; j0 += LP_TILE_J) {
                double acc[LP_TILE_I][LP_TILE_J];
                for (int ii = 0; ii < LP_TILE_I; ii++)
                    for (int w = 0; w < LP_TILE_J; w++) acc[ii][w] = 0.0;
                for (int64_t k = 0; k < d; k++) {
                    const double *row = xt + k * vp;
                    for (int ii = 0; ii < LP_TILE_I; ii++) {
                        const double xi = row[i0 + ii];
#pragma omp simd
                        for (int w = 0; w < LP_TILE_J; w++) acc[ii][w] += xi * row[j0 + w];
                    }
                }
                for (int ii = 0; ii < LP_TILE_I; ii++) {
                    const int64_t i = i0 + ii;
                    if (i >= V) break;
                    if (j0 >= i) continue;
                    const int64_t width = i - j0 < LP_TILE_J ? i - j0 : LP_TILE_J;
                    float value[LP_TILE_J];
                    int certain[LP_TILE_J];
                    const double ni = norm[i];
#pragma omp simd
                    for (int w = 0; w < LP_TILE_J; w++) {
                        const double s = acc[ii][w];
                        const double e = bound * ni * norm[j0 + w] + relative * fabs(s);
                        const float lo = (float)(s - e), hi = (float)(s + e);
                        value[w] = (float)s;
                        certain[w] = (lo == hi) & ((lo != 0.0f) | (e == 0.0));
                    }
                    float *zi = z + i * (i - 1) / 2 + j0;
                    for (int64_t w = 0; w < width; w++) {
                        if (certain[w]) {
                            zi[w] = value[w];
                        } else if (!isfinite(acc[ii][w])) {
                            zi[w] = value[w];
                        } else { /* settled below, with the row's other uncertain pairs */
                            pend_i[pending] = i;
                            pend_j[pending] = j0 + w;
                            pend_at[pending++] = i * (i - 1) / 2 + j0 + w;
                        }
                    }
                }
            }
        }
        /*
         * The uncertain pairs: first their plain double sums, checked by TwoSum to have
         * rounded nowhere (then they are the exact sums: common for low-precision data
         * such as int4 embeddings, whose sums often land on a float32 midpoint exactly,
         * where (float) breaks the tie to even as it should); vectorised across pairs.
         * The rest are summed exactly with expansions.
         */
        for (int64_t q0 = 0; q0 < pending; q0 += LP_TILE_J) {
            int64_t col_i[LP_TILE_J], col_j[LP_TILE_J];
            double sum[LP_TILE_J];
            int64_t rounded[LP_TILE_J];
            for (int l = 0; l < LP_TILE_J; l++) {
                const int64_t q = q0 + l < pending ? q0 + l : q0; /* lanes past the end redo one */
                col_i[l] = pend_i[q];
                col_j[l] = pend_j[q];
                sum[l] = 0.0;
                rounded[l] = 0;
            }
            for (int64_t k = 0; k < d; k++) {
                const double *row = xt + k * vp;
#pragma omp simd
                for (int l = 0; l < LP_TILE_J; l++) {
                    const double term = row[col_i[l]] * row[col_j[l]], total = sum[l] + term;
                    const double back = total - sum[l];
                    rounded[l] |= ((sum[l] - (total - back)) + (term - back)) != 0.0;
                    sum[l] = total;
                }
            }
            for (int l = 0; l < LP_TILE_J && q0 + l < pending; l++) {
                pend_sum[q0 + l] = (float)sum[l];
                pend_ok[q0 + l] = !rounded[l];
            }
        }
        for (int64_t q = 0; q < pending; q++) {
            z[pend_at[q]] = pend_ok[q] ? pend_sum[q] : LP_NAME(lp_dot_exact)(xt + pend_i[q], xt + pend_j[q], vp, d);
        }
        exact += pending;
        pending = 0;
    }
    free(xt);
    free(rowp);
    free(pend);
    free(pend_sum);
    return exact;
}
