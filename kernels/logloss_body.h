/*
 * Block loops of the log-loss kernels for one input dtype. Included by
 * logloss_isa.c with T (float or double) and LP_NAME(base) defined. The
 * arithmetic that must be exact (clipping, complements, differences) runs in
 * T; logarithms and per-block sums run in float32, block totals in float64.
 */

/* Sums of NE over p[0:n]; writes out[LP_NE_FIELDS]. A map into a block
 * buffer, then the reduction: this keeps GCC's vectoriser on one vector
 * width (a fused loop mixing uint8, float and double lanes spills). */
void LP_NAME(lp_ne_chunk)(const T *p, const uint8_t *y, int64_t n, double *out)
{
    const T eps = (T)LP_EPS;
    float loss[LP_BLOCK], invalid[LP_BLOCK];
    double total_loss = 0.0, total_pos = 0.0, total_bad = 0.0;
    for (int64_t start = 0; start < n; start += LP_BLOCK) {
        int64_t len = start + LP_BLOCK < n ? LP_BLOCK : n - start;
        const T *pb = p + start;
        const uint8_t *yb = y + start;
#pragma omp simd
        for (int64_t i = 0; i < len; i++) {
            T raw = pb[i];
            float label = yb[i];
            T pc = LP_CLIP_P(T, raw, eps), cc = LP_CLIP_C(T, raw, eps);
            int positive = label != 0;
            loss[i] = lp_logloss((float)(positive ? pc : cc), (float)(positive ? cc : pc));
            invalid[i] = LP_INVALID(raw, label);
        }
        double block_loss = 0;
        float block_pos = 0, block_bad = 0;
#pragma omp simd reduction(+:block_loss, block_pos, block_bad)
        for (int64_t i = 0; i < len; i++) {
            block_loss += loss[i];
            block_pos += yb[i];
            block_bad += invalid[i];
        }
        total_loss += block_loss;
        total_pos += block_pos;
        total_bad += block_bad;
    }
    out[LP_NE_LOSS] = total_loss;
    out[LP_NE_POS] = total_pos;
    out[LP_NE_BAD] = total_bad;
}

/* Per-example values of one block of a comparison (a map: no reductions,
 * so it vectorises with every accumulator out of the way). */
struct LP_NAME(lp_block) {
    float loss[LP_BLOCK], loss_q[LP_BLOCK], diff[LP_BLOCK], kl[LP_BLOCK], abs_diff[LP_BLOCK],
        invalid[LP_BLOCK];
};

static inline void LP_NAME(lp_compare_block)(const T *p_ref, const T *p_q, const uint8_t *y,
                                             int64_t len, struct LP_NAME(lp_block) *b)
{
    const T eps = (T)LP_EPS, half = (T)0.5;
#pragma omp simd
    for (int64_t i = 0; i < len; i++) {
        T raw_r = p_ref[i], raw_q = p_q[i];
        float label = y[i];
        T pr = LP_CLIP_P(T, raw_r, eps), cr = LP_CLIP_C(T, raw_r, eps);
        T pq = LP_CLIP_P(T, raw_q, eps), cq = LP_CLIP_C(T, raw_q, eps);
        /* pr - pq, from the complements when both are at least 1/2 (they are exact
         * there). (Written with a min: GCC does not vectorise the same select
         * written with two comparisons.) */
        T low = pr < pq ? pr : pq;
        T delta = low >= half ? cq - cr : pr - pq;
        T raw_diff = raw_r - raw_q;
        struct lp_example ex = lp_compare_one(
            (float)pr, (float)cr, (float)pq, (float)cq, (float)delta,
            (float)(raw_diff < 0 ? -raw_diff : raw_diff), label != 0);
        b->loss[i] = ex.loss_ref;
        b->loss_q[i] = ex.loss_q;
        b->diff[i] = ex.diff;
        b->kl[i] = ex.kl;
        b->abs_diff[i] = ex.abs_diff;
        b->invalid[i] = LP_INVALID(raw_r, label) + LP_INVALID(raw_q, label);
    }
}

/* Sums of a comparison over p_ref, p_q, y [0:n]; writes out[LP_CMP_FIELDS]. */
void LP_NAME(lp_compare_chunk)(const T *p_ref, const T *p_q, const uint8_t *y, int64_t n,
                               double *out)
{
    struct LP_NAME(lp_block) b;
    double acc[LP_CMP_FIELDS] = {0};
    for (int64_t start = 0; start < n; start += LP_BLOCK) {
        int64_t len = start + LP_BLOCK < n ? LP_BLOCK : n - start;
        const T *pr = p_ref + start, *pq = p_q + start;
        const uint8_t *yb = y + start;
        LP_NAME(lp_compare_block)(pr, pq, yb, len, &b);
        /* Few accumulators per loop keep them all in registers. The moments
         * behind the interval sum in float64: their combination cancels. */
        double s_l = 0, s_l2 = 0, s_d = 0, s_d2 = 0, s_dl = 0;
#pragma omp simd reduction(+:s_l, s_l2, s_d, s_d2, s_dl)
        for (int64_t i = 0; i < len; i++) {
            double l = b.loss[i], d = b.diff[i];
            s_l += l; s_l2 += l * l; s_d += d; s_d2 += d * d; s_dl += d * l;
        }
        double s_lq = 0, s_kl = 0, s_ad = 0, s_bad = 0;
        float m_ad = 0;
#pragma omp simd reduction(+:s_lq, s_kl, s_ad, s_bad) reduction(max:m_ad)
        for (int64_t i = 0; i < len; i++) {
            float ad = b.abs_diff[i];
            s_lq += b.loss_q[i]; s_kl += b.kl[i]; s_ad += ad; m_ad = ad > m_ad ? ad : m_ad;
            s_bad += b.invalid[i];
        }
        double s_pr = 0, s_pq = 0;
        float s_y = 0;
#pragma omp simd reduction(+:s_pr, s_pq, s_y)
        for (int64_t i = 0; i < len; i++) {
            s_pr += (double)pr[i]; s_pq += (double)pq[i]; s_y += yb[i];
        }
        acc[LP_CMP_LOSS_REF] += s_l;
        acc[LP_CMP_LOSS_REF_SQ] += s_l2;
        acc[LP_CMP_LOSS_Q] += s_lq;
        acc[LP_CMP_DIFF] += s_d;
        acc[LP_CMP_DIFF_SQ] += s_d2;
        acc[LP_CMP_DIFF_X_LOSS] += s_dl;
        acc[LP_CMP_KL] += s_kl;
        acc[LP_CMP_P_REF] += s_pr;
        acc[LP_CMP_P_Q] += s_pq;
        acc[LP_CMP_ABS_DIFF] += s_ad;
        if (m_ad > acc[LP_CMP_MAX_ABS_DIFF]) acc[LP_CMP_MAX_ABS_DIFF] = m_ad;
        acc[LP_CMP_POS] += s_y;
        acc[LP_CMP_BAD] += s_bad;
    }
    memcpy(out, acc, sizeof acc);
}

/* The same sums per segment: acc is [n_segments x LP_CMP_FIELDS], zeroed by
 * the caller, seg[i] in [0, n_segments). The scatter does not vectorise, so
 * sums go straight to float64; the per-example values still do. */
void LP_NAME(lp_compare_segments)(const T *p_ref, const T *p_q, const uint8_t *y,
                                  const int64_t *seg, int64_t n, double *acc)
{
    struct LP_NAME(lp_block) b;
    for (int64_t start = 0; start < n; start += LP_BLOCK) {
        int64_t len = start + LP_BLOCK < n ? LP_BLOCK : n - start;
        LP_NAME(lp_compare_block)(p_ref + start, p_q + start, y + start, len, &b);
        for (int64_t i = 0; i < len; i++) {
            double *a = acc + seg[start + i] * LP_CMP_FIELDS;
            double l = b.loss[i], d = b.diff[i], ad = b.abs_diff[i];
            a[LP_CMP_LOSS_REF] += l;
            a[LP_CMP_LOSS_REF_SQ] += l * l;
            a[LP_CMP_LOSS_Q] += b.loss_q[i];
            a[LP_CMP_DIFF] += d;
            a[LP_CMP_DIFF_SQ] += d * d;
            a[LP_CMP_DIFF_X_LOSS] += d * l;
            a[LP_CMP_KL] += b.kl[i];
            a[LP_CMP_P_REF] += (double)p_ref[start + i];
            a[LP_CMP_P_Q] += (double)p_q[start + i];
            a[LP_CMP_ABS_DIFF] += ad;
            if (ad > a[LP_CMP_MAX_ABS_DIFF]) a[LP_CMP_MAX_ABS_DIFF] = ad;
            a[LP_CMP_POS] += y[start + i];
            a[LP_CMP_BAD] += b.invalid[i];
        }
    }
}
