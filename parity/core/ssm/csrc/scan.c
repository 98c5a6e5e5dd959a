/* Fused selective-scan core for CPU, the way mamba_ssm's CUDA kernel works: the
 * (batch, d_inner, L, d_state) states are never materialised. Each (b, d) sequence keeps its
 * d_state-wide state in registers; backward recomputes that sequence's states into a small
 * per-call buffer (L x d_state) and runs the adjoint recurrence in reverse.
 *
 * The core: y[b,d,t] = sum_n C[b,t,n] x[b,d,t,n],  x_t = exp(dt_t A[d]) * x_{t-1} + dt_t u_t B[b,t],
 * with dt = softplus(delta + bias[d]) (bias and softplus optional). The D skip and the z gate are
 * elementwise and stay in PyTorch. Layouts (all contiguous float32): u, delta, y: (batch, d_inner, L);
 * A: (d_inner, d_state); bias: (d_inner,) or NULL; Bt, Ct: (batch, L, d_state), time-major so that the
 * inner loop over n is contiguous.
 *
 * Every function handles d in [d0, d1), so Python can run disjoint ranges on several threads
 * (ctypes releases the GIL). Outputs indexed by d are written, never accumulated, by one range only;
 * gB and gC (sums over d) go to a per-range partial buffer that the caller sums.
 *
 * Built at first use with -O3 -ffast-math so that gcc vectorises expf over n (glibc's libmvec).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* dt for one (b, d) row; also 1 - exp(-dt) = sigmoid(pre), softplus' derivative, when asked. */
static void row_dt(const float *delta, float bias, int softplus, int64_t L, float *dt, float *dsp)
{
    for (int64_t t = 0; t < L; t++) {
        const float pre = delta[t] + bias;
        dt[t] = softplus ? (pre > 20.0f ? pre : log1pf(expf(pre))) : pre;
    }
    if (dsp)
        for (int64_t t = 0; t < L; t++) dsp[t] = softplus ? 1.0f - expf(-dt[t]) : 1.0f;
}

/* work: L floats. */
void scan_forward(const float *u, const float *delta, const float *bias, int64_t softplus, const float *A,
                  const float *Bt, const float *Ct, float *y, float *work,
                  int64_t batch, int64_t d_inner, int64_t L, int64_t N, int64_t d0, int64_t d1)
{
    float x[N], a[N], dA[N];
    float *dt = work;
    for (int64_t d = d0; d < d1; d++) {
        memcpy(a, A + d * N, N * sizeof(float));
        for (int64_t b = 0; b < batch; b++) {
            const float *Bb = Bt + b * L * N, *Cb = Ct + b * L * N;
            const int64_t row = (b * d_inner + d) * L;
            row_dt(delta + row, bias ? bias[d] : 0.0f, (int)softplus, L, dt, NULL);
            memset(x, 0, N * sizeof(float));
            for (int64_t t = 0; t < L; t++) {
                const float dt_t = dt[t], dtu = dt_t * u[row + t];
                const float *Bn = Bb + t * N, *Cn = Cb + t * N;
                float acc = 0.0f;
                for (int64_t n = 0; n < N; n++) dA[n] = expf(dt_t * a[n]);
                for (int64_t n = 0; n < N; n++) {
                    x[n] = dA[n] * x[n] + dtu * Bn[n];
                    acc += x[n] * Cn[n];
                }
                y[row + t] = acc;
            }
        }
    }
}

/* gy: gradient wrt the core output. Writes gu, gdelta (batch, d_inner, L), gA (d_inner, N) and, when
 * not NULL, gbias (d_inner,) and y (the core output again, recomputed on the way) for d in [d0, d1);
 * adds into gB, gC (batch, L, N), this range's partial sums.
 * work: L * (2 * N + 2) floats (one row's recomputed states, decays, dt and softplus derivative). */
void scan_backward(const float *u, const float *delta, const float *bias, int64_t softplus, const float *A,
                   const float *Bt, const float *Ct, const float *gy,
                   float *gu, float *gdelta, float *gA, float *gbias, float *gB, float *gC, float *y, float *work,
                   int64_t batch, int64_t d_inner, int64_t L, int64_t N, int64_t d0, int64_t d1)
{
    float *xs = work, *dAs = work + L * N, *dt = work + 2 * L * N, *dsp = dt + L;
    float a[N], h[N], ga[N];
    for (int64_t d = d0; d < d1; d++) {
        memcpy(a, A + d * N, N * sizeof(float));
        memset(ga, 0, N * sizeof(float));
        float gb = 0.0f;
        for (int64_t b = 0; b < batch; b++) {
            const int64_t row = (b * d_inner + d) * L;
            const float *Bb = Bt + b * L * N, *Cb = Ct + b * L * N;
            float *gBb = gB + b * L * N, *gCb = gC + b * L * N;
            row_dt(delta + row, bias ? bias[d] : 0.0f, (int)softplus, L, dt, dsp);
            /* recompute the states (and y) */
            for (int64_t t = 0; t < L; t++) {
                const float dt_t = dt[t], dtu = dt_t * u[row + t];
                const float *Bn = Bb + t * N, *Cn = Cb + t * N;
                const float *xp = t ? xs + (t - 1) * N : NULL;
                float *xt = xs + t * N, *dAt = dAs + t * N;
                for (int64_t n = 0; n < N; n++) dAt[n] = expf(dt_t * a[n]);
                if (xp)
                    for (int64_t n = 0; n < N; n++) xt[n] = dAt[n] * xp[n] + dtu * Bn[n];
                else
                    for (int64_t n = 0; n < N; n++) xt[n] = dtu * Bn[n];
                if (y) {
                    float acc = 0.0f;
                    for (int64_t n = 0; n < N; n++) acc += xt[n] * Cn[n];
                    y[row + t] = acc;
                }
            }
            /* adjoint h_t = C_t gy_t + exp(dt_{t+1} A) h_{t+1}, in reverse */
            memset(h, 0, N * sizeof(float));
            for (int64_t t = L - 1; t >= 0; t--) {
                const float g = gy[row + t], dt_t = dt[t], u_t = u[row + t], dtu = dt_t * u_t;
                const float *Bn = Bb + t * N, *Cn = Cb + t * N, *xt = xs + t * N, *dAt = dAs + t * N;
                const float *dAn = t + 1 < L ? dAs + (t + 1) * N : NULL;
                float *gBn = gBb + t * N, *gCn = gCb + t * N;
                if (dAn)
                    for (int64_t n = 0; n < N; n++) h[n] = Cn[n] * g + dAn[n] * h[n];
                else
                    for (int64_t n = 0; n < N; n++) h[n] = Cn[n] * g;
                float g_dtu = 0.0f, g_dt = 0.0f;
                for (int64_t n = 0; n < N; n++) {
                    gCn[n] += xt[n] * g;
                    gBn[n] += h[n] * dtu;
                    g_dtu += h[n] * Bn[n];
                }
                if (t) {  /* q = h_t exp(dt_t A) x_{t-1}: the gradient wrt dt_t * A */
                    const float *xp = xs + (t - 1) * N;
                    for (int64_t n = 0; n < N; n++) {
                        const float q = h[n] * dAt[n] * xp[n];
                        g_dt += q * a[n];
                        ga[n] += q * dt_t;
                    }
                }
                const float gd = (g_dt + g_dtu * u_t) * dsp[t];
                gdelta[row + t] = gd;
                gb += gd;
                gu[row + t] = g_dtu * dt_t;
            }
        }
        memcpy(gA + d * N, ga, N * sizeof(float));
        if (gbias) gbias[d] = gb;
    }
}
