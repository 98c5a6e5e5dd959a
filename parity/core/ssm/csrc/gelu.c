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
 * Flat arrays of n floats, split between threads.
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

/* a = gelu(h) on [i0, i1) */
static void gelu_forward_range(const float *h, float *a, int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i += W) {
        const vf x = vload_part(h + i, i1 - i);
        vf cdf, pdf;
        vnormal(x, &cdf, &pdf);
        vstore_part(a + i, vmul(x, cdf), i1 - i);
    }
}

/* ga <- ga gelu'(h) in place on [i0, i1); a <- gelu(h) unless a is NULL (backward's recomputation) */
static void gelu_backward_range(const float *h, float *ga, float *a, int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i += W) {
        const vf x = vload_part(h + i, i1 - i);
        vf cdf, pdf;
        vnormal(x, &cdf, &pdf);
        if (a) vstore_part(a + i, vmul(x, cdf), i1 - i);
        vstore_part(ga + i, vmul(vload_part(ga + i, i1 - i), vfma(x, pdf, cdf)), i1 - i);
    }
}

/* The two over n floats on nthreads threads (shares on cache-line bounds). */
void gelu_forward(const float *h, float *a, int64_t n, int64_t nthreads)
{
#pragma omp parallel num_threads((int)nthreads)
    {
        int64_t i0, i1;
        thread_share(n, 16, thread_index(), thread_count(), &i0, &i1);
        gelu_forward_range(h, a, i0, i1);
    }
}

void gelu_backward(const float *h, float *ga, float *a, int64_t n, int64_t nthreads)
{
#pragma omp parallel num_threads((int)nthreads)
    {
        int64_t i0, i1;
        thread_share(n, 16, thread_index(), thread_count(), &i0, &i1);
        gelu_backward_range(h, ga, a, i0, i1);
    }
}
