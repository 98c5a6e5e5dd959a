/* The Mamba mixer's depthwise causal conv1d and SiLU for CPU, forward and backward, vectorised over time:
 *
 *   pre[b,d,t] = bias[d] + sum_k w[d,k] x[b,d,t-K+1+k]   (x = 0 before t = 0: nn.Conv1d's left padding K-1,
 *                                                         its output cut to the first L steps)
 *   out[b,d,t] = silu(pre[b,d,t]) = pre sigmoid(pre)
 *
 * Forward keeps nothing; backward recomputes pre from x (a few multiply-adds per step, cheaper than keeping a
 * (batch, d_inner, L) tensor) and gives the gradients wrt x, w and bias.
 *
 * Layouts (float32): each tensor's row (b, d) starts at b sb + d sd (its own strides) and its L steps are
 * contiguous, so x can be the channel block of the (2 d_inner, batch L) in_proj result in place; w: (d_inner, K)
 * contiguous; bias: (d_inner,) or NULL. With reverse, x's rows (and gx's) are read (written) backwards in time: the
 * conv of the time-reversed sequence, out in reversed time (a bidirectional layer's backward mixer reading the
 * forward one's input as it is). Each row is first copied into a zero-padded scratch row (K - 1 zeros in
 * front, zeros after), so that every step's window is a plain unaligned load. Threads split the channels, so a
 * channel's weight and bias gradients (sums over batch and time) belong to one thread alone. Each row's loop
 * fetches the next row's lines ahead (fetch_ahead).
 */
#include "simd.h"

/* Scratch per thread: the padded input row and the padded gradient row. */
#define CONV_ROW(L, K) PAD16((L) + 2 * (K) + 2 * W)
int64_t conv_work(int64_t L, int64_t K) { return 2 * CONV_ROW(L, K); }

/* xp = K - 1 zeros, then x's L steps (last to first when reverse), then zeros up to the block after the last one
 * (W + K floats). */
static void padded_row(float *xp, const float *x, int64_t L, int64_t K, int reverse)
{
    memset(xp, 0, (size_t)(K - 1) * sizeof(float));
    if (reverse)
        for (int64_t t = 0; t < L; t++) xp[K - 1 + t] = x[L - 1 - t];
    else
        memcpy(xp + K - 1, x, (size_t)L * sizeof(float));
    memset(xp + K - 1 + L, 0, (size_t)(W + K) * sizeof(float));
}

/* The row after (b, d) in the order the loops below take them (batches within a channel), in [.., d1): 0 after
 * the last one (whose loop then fetches nothing ahead). */
INLINE int next_row(int64_t b, int64_t d, int64_t batch, int64_t d1, int64_t *nb, int64_t *nd)
{
    *nb = b + 1 < batch ? b + 1 : 0;
    *nd = b + 1 < batch ? d : d + 1;
    return *nd < d1;
}

/* The pre-activation of the W steps from t: the bias, then the taps in order. */
INLINE vf conv_pre(const float *xp, int64_t t, const float *w, int64_t K, float bias)
{
    vf acc = vset(bias);
    for (int64_t k = 0; k < K; k++) acc = vfma(vset(w[k]), vload(xp + t + k), acc);
    return acc;
}

static void conv_silu_forward_range(const float *x, int64_t x_sb, int64_t x_sd, const float *w, const float *bias,
                                    int64_t K, float *out, int64_t out_sb, int64_t out_sd, int64_t batch, int64_t L,
                                    int reverse, int64_t d0, int64_t d1, float *work)
{
    float *xp = work;
    for (int64_t d = d0; d < d1; d++) {
        const float *wd = w + d * K;
        const float bd = bias ? bias[d] : 0.0f;
        for (int64_t b = 0; b < batch; b++) {
            padded_row(xp, x + b * x_sb + d * x_sd, L, K, reverse);
            float *o = out + b * out_sb + d * out_sd;
            int64_t nb, nd;
            const int ahead = next_row(b, d, batch, d1, &nb, &nd);
            const float *nx = ahead ? x + nb * x_sb + nd * x_sd : x;
            const float *no = ahead ? out + nb * out_sb + nd * out_sd : out;
            for (int64_t t = 0; t < L; t += W) {
                if (ahead) fetch_ahead(nx, t, 0), fetch_ahead(no, t, 1);
                const vf pre = conv_pre(xp, t, wd, K, bd);
                vstore_part(o + t, vmul(pre, vsigmoid(pre)), L - t);
            }
        }
    }
}

/* g: gradient wrt out. Writes gx (its own strides), gw (d_inner, K) and, when not NULL, gbias, for d in [d0, d1).
 * gpre = g silu'(pre), silu'(p) = sigmoid(p) (1 + p (1 - sigmoid(p))); gx[t] = sum_k w[k] gpre[t + K-1-k];
 * gw[k] = sum over batch and time of gpre[t] x[t-K+1+k]; gbias = sum of gpre. */
static void conv_silu_backward_range(const float *x, int64_t x_sb, int64_t x_sd, const float *w, const float *bias,
                                     int64_t K, const float *g, int64_t g_sb, int64_t g_sd, float *gx, int64_t gx_sb,
                                     int64_t gx_sd, float *gw, float *gbias, int64_t batch, int64_t L, int reverse,
                                     int64_t d0, int64_t d1, float *work)
{
    float *xp = work, *gp = work + CONV_ROW(L, K);
    const int64_t end = (L + W - 1) / W * W;  /* gp is written in whole blocks up to here, zeros past L */
    vf gw_acc[64];  /* K <= 64 taps (Mamba uses 4) */
    for (int64_t d = d0; d < d1; d++) {
        const float *wd = w + d * K;
        const float bd = bias ? bias[d] : 0.0f;
        vf gb_acc = vzero();
        for (int64_t k = 0; k < K; k++) gw_acc[k] = vzero();
        for (int64_t b = 0; b < batch; b++) {
            padded_row(xp, x + b * x_sb + d * x_sd, L, K, reverse);
            const float *gr = g + b * g_sb + d * g_sd;
            int64_t nb, nd;
            const int ahead = next_row(b, d, batch, d1, &nb, &nd);
            const float *nx = ahead ? x + nb * x_sb + nd * x_sd : x, *ng = ahead ? g + nb * g_sb + nd * g_sd : g;
            const float *ngx = ahead ? gx + nb * gx_sb + nd * gx_sd : gx;
            for (int64_t t = 0; t < L; t += W) {
                if (ahead) fetch_ahead(nx, t, 0), fetch_ahead(ng, t, 0), fetch_ahead(ngx, t, 1);
                const vf pre = conv_pre(xp, t, wd, K, bd), s = vsigmoid(pre);
                const vf dsilu = vmul(s, vfma(pre, vsub(vset(1.0f), s), vset(1.0f)));
                const vf gpre = vmul(vload_part(gr + t, L - t), dsilu);  /* zero past L: g loads as zeros there */
                vstore(gp + t, gpre);
                gb_acc = vadd(gb_acc, gpre);
                for (int64_t k = 0; k < K; k++) gw_acc[k] = vfma(gpre, vload(xp + t + k), gw_acc[k]);
            }
            memset(gp + end, 0, (size_t)(K + W) * sizeof(float));
            float *o = gx + b * gx_sb + d * gx_sd;
            for (int64_t t = 0; t < L; t += W) {
                vf acc = vmul(vset(wd[K - 1]), vload(gp + t));
                for (int64_t k = K - 2; k >= 0; k--) acc = vfma(vset(wd[k]), vload(gp + t + K - 1 - k), acc);
                if (reverse)
                    vstore_rev(o, L, t, acc, L - t);
                else
                    vstore_part(o + t, acc, L - t);
            }
        }
        for (int64_t k = 0; k < K; k++) gw[d * K + k] = vsum(gw_acc[k]);
        if (gbias) gbias[d] = vsum(gb_acc);
    }
}

/* The two on nthreads threads, each on its share of the channels with its own conv_work floats of work. */
void conv_silu_forward(const float *x, int64_t x_sb, int64_t x_sd, const float *w, const float *bias, int64_t K,
                       float *out, int64_t out_sb, int64_t out_sd, int64_t batch, int64_t L, int64_t reverse,
                       int64_t d_inner, float *work, int64_t nthreads)
{
#pragma omp parallel num_threads((int)nthreads)
    {
        int64_t d0, d1;
        const int i = thread_index();
        thread_share(d_inner, 1, i, thread_count(), &d0, &d1);
        conv_silu_forward_range(x, x_sb, x_sd, w, bias, K, out, out_sb, out_sd, batch, L, (int)reverse, d0, d1,
                                work + i * conv_work(L, K));
    }
}

void conv_silu_backward(const float *x, int64_t x_sb, int64_t x_sd, const float *w, const float *bias, int64_t K,
                        const float *g, int64_t g_sb, int64_t g_sd, float *gx, int64_t gx_sb, int64_t gx_sd, float *gw,
                        float *gbias, int64_t batch, int64_t L, int64_t reverse, int64_t d_inner, float *work,
                        int64_t nthreads)
{
#pragma omp parallel num_threads((int)nthreads)
    {
        int64_t d0, d1;
        const int i = thread_index();
        thread_share(d_inner, 1, i, thread_count(), &d0, &d1);
        conv_silu_backward_range(x, x_sb, x_sd, w, bias, K, g, g_sb, g_sd, gx, gx_sb, gx_sd, gw, gbias, batch, L,
                                 (int)reverse, d0, d1, work + i * conv_work(L, K));
    }
}
