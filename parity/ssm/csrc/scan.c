/* Fused selective-scan core for CPU, the way mamba_ssm's CUDA kernel works: the
 * (batch, d_inner, L, d_state) states are never materialised. Each (b, d) sequence keeps its
 * d_state-wide state in registers; backward recomputes that sequence's states into a small
 * per-call buffer (L x d_state) and runs the adjoint recurrence in reverse.
 *
 * Core only: y[b,d,t] = sum_n C[b,t,n] x[b,d,t,n],  x_t = exp(dt_t A[d]) * x_{t-1} + dt_t u_t B[b,t]
 * (dt already through bias and softplus; the D skip and the z gate stay in PyTorch).
 * Layouts (all contiguous float32): u, dt, y: (batch, d_inner, L); A: (d_inner, d_state);
 * Bt, Ct: (batch, L, d_state), time-major so that the inner loop over n is contiguous.
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

void scan_forward(const float *u, const float *dt, const float *A, const float *Bt, const float *Ct,
                  float *y, int64_t batch, int64_t d_inner, int64_t L, int64_t N, int64_t d0, int64_t d1)
{
    float x[N], a[N], dA[N];
    for (int64_t b = 0; b < batch; b++) {
        const float *Bb = Bt + b * L * N, *Cb = Ct + b * L * N;
        for (int64_t d = d0; d < d1; d++) {
            const int64_t row = (b * d_inner + d) * L;
            memcpy(a, A + d * N, N * sizeof(float));
            memset(x, 0, N * sizeof(float));
            for (int64_t t = 0; t < L; t++) {
                const float dt_t = dt[row + t], dtu = dt_t * u[row + t];
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

/* gy: gradient wrt the core output y. Writes gu, gdt (batch, d_inner, L) and gA (d_inner, N) for
 * d in [d0, d1); adds into gB, gC (batch, L, N), this range's partial sums.
 * work: L * 2 * N floats (this range's recomputed states and decays). */
void scan_backward(const float *u, const float *dt, const float *A, const float *Bt, const float *Ct,
                   const float *gy, float *gu, float *gdt, float *gA, float *gB, float *gC,
                   float *work, int64_t batch, int64_t d_inner, int64_t L, int64_t N, int64_t d0, int64_t d1)
{
    float *xs = work, *dAs = work + L * N;  /* x_t and exp(dt_t A) for t = 0..L-1 */
    float a[N], h[N], ga[N];
    for (int64_t d = d0; d < d1; d++) {
        memcpy(a, A + d * N, N * sizeof(float));
        memset(ga, 0, N * sizeof(float));
        for (int64_t b = 0; b < batch; b++) {
            const int64_t row = (b * d_inner + d) * L;
            const float *Bb = Bt + b * L * N, *Cb = Ct + b * L * N;
            float *gBb = gB + b * L * N, *gCb = gC + b * L * N;
            /* recompute the states */
            for (int64_t t = 0; t < L; t++) {
                const float dt_t = dt[row + t], dtu = dt_t * u[row + t];
                const float *Bn = Bb + t * N;
                const float *xp = t ? xs + (t - 1) * N : NULL;
                float *xt = xs + t * N, *dAt = dAs + t * N;
                for (int64_t n = 0; n < N; n++) dAt[n] = expf(dt_t * a[n]);
                if (xp)
                    for (int64_t n = 0; n < N; n++) xt[n] = dAt[n] * xp[n] + dtu * Bn[n];
                else
                    for (int64_t n = 0; n < N; n++) xt[n] = dtu * Bn[n];
            }
            /* adjoint h_t = C_t gy_t + exp(dt_{t+1} A) h_{t+1}, in reverse */
            memset(h, 0, N * sizeof(float));
            for (int64_t t = L - 1; t >= 0; t--) {
                const float g = gy[row + t], dt_t = dt[row + t], u_t = u[row + t], dtu = dt_t * u_t;
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
                gdt[row + t] = g_dt + g_dtu * u_t;
                gu[row + t] = g_dtu * dt_t;
            }
        }
        memcpy(gA + d * N, ga, N * sizeof(float));
    }
}
