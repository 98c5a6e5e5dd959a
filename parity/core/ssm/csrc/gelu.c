/* GELU (the exact, erf form of nn.GELU()) and its derivative, for the blocks' MLP:
 *
 *   gelu(x) = x Phi(x),  gelu'(x) = Phi(x) + x phi(x),  Phi the standard normal CDF, phi its density.
 *
 * Phi comes from erfc: Phi(x) = erfc(|x| / sqrt 2) / 2 for x < 0, 1 - that for x >= 0, and
 * erfc(z) = t exp(-z^2) Q(t) with t = 1 / (1 + z / 2): Q (erfc(z) exp(z^2) / t, smooth and bounded on (0, 1]) is
 * a degree-8 polynomial fitted for this file by reweighted least squares (relative error 6e-8 on z in [0, 10],
 * about 2e-7 evaluated in float). exp(-z^2) = exp(-x^2 / 2) is phi's exponential too, so one exp per value.
 * Phi is accurate in relative terms on both sides (no 1 + erf cancellation for negative x).
 *
 * Rows of `cols` floats, h's rows with a per-column bias added first (a linear layer's bias: the layer's matrix
 * product leaves it out, so it costs no pass of its own), split between threads.
 */
#include "simd.h"

#define Q0 0.28208640217781067f
#define Q1 0.2823755443096161f
#define Q2 0.24310138821601868f
#define Q3 0.20269925892353058f
#define Q4 (-0.026662440970540047f)
#define Q5 0.27813172340393066f
#define Q6 (-0.48726630210876465f)
#define Q7 0.28461188077926636f
#define Q8 (-0.05907752364873886f)
#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

#define AHEAD 512  /* floats: 32 lines; 256 and 1024 measured the same */

/* Phi(x) and phi(x) */
INLINE void vnormal(vf x, vf *cdf, vf *pdf)
{
    const vf z = vmul(vmax(x, vsub(vzero(), x)), vset(INV_SQRT2));
    const vf t = vrcp(vfma(z, vset(0.5f), vset(1.0f)));
    vf q = vfma(vset(Q8), t, vset(Q7));
    q = vfma(q, t, vset(Q6));
    q = vfma(q, t, vset(Q5));
    q = vfma(q, t, vset(Q4));
    q = vfma(q, t, vset(Q3));
    q = vfma(q, t, vset(Q2));
    q = vfma(q, t, vset(Q1));
    q = vfma(q, t, vset(Q0));
    const vf e = vexp(vmul(vmul(x, x), vset(-0.5f)));
    const vf half_erfc = vmul(vmul(vset(0.5f), t), vmul(e, q));
    *cdf = vselect_nonneg(x, vsub(vset(1.0f), half_erfc), half_erfc);
    *pdf = vmul(e, vset(INV_SQRT_2PI));
}

/* x = h + bias for the W values from i (one row's columns c.., n left in the row); bias may be NULL */
INLINE vf biased(const float *h, const float *bias, int64_t i, int64_t c, int64_t n)
{
    const vf x = vload_part(h + i, n);
    return bias ? vadd(x, vload_part(bias + c, n)) : x;
}

/* For rows [r0, r1), each where not NULL: a <- gelu(h + bias) (forward, or backward's recomputation), and
 * ga <- ga gelu'(h + bias) in place (backward) */
static void gelu_rows(const float *h, const float *bias, float *a, float *ga, int64_t cols, int64_t r0, int64_t r1)
{
    const int64_t end = r1 * cols;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t c = 0; c < cols; c += W) {
            const int64_t i = r * cols + c;
            if (i + AHEAD < end) {  /* the share is one contiguous stream: fetched AHEAD floats on (fetch_ahead) */
                fetch_ahead(h, i + AHEAD, 0);
                if (a) fetch_ahead(a, i + AHEAD, 1);
                if (ga) fetch_ahead(ga, i + AHEAD, 1);
            }
            const vf x = biased(h, bias, i, c, cols - c);
            vf cdf, pdf;
            vnormal(x, &cdf, &pdf);
            if (a) vstore_part(a + i, vmul(x, cdf), cols - c);
            if (ga) vstore_part(ga + i, vmul(vload_part(ga + i, cols - c), vfma(x, pdf, cdf)), cols - c);
        }
}

/* gelu_rows over rows x cols floats on nthreads threads (shares of whole rows). */
static void gelu_parallel(const float *h, const float *bias, float *a, float *ga, int64_t rows, int64_t cols,
                          int64_t nthreads)
{
#pragma omp parallel num_threads((int)nthreads)
    {
        int64_t r0, r1;
        thread_share(rows, 1, thread_index(), thread_count(), &r0, &r1);
        gelu_rows(h, bias, a, ga, cols, r0, r1);
    }
}

void gelu_forward(const float *h, const float *bias, float *a, int64_t rows, int64_t cols, int64_t nthreads)
{
    gelu_parallel(h, bias, a, NULL, rows, cols, nthreads);
}

/* a may be NULL: the gradient alone */
void gelu_backward(const float *h, const float *bias, float *ga, float *a, int64_t rows, int64_t cols,
                   int64_t nthreads)
{
    gelu_parallel(h, bias, a, ga, rows, cols, nthreads);
}
