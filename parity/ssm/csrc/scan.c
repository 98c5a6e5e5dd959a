/* Fused selective scan for CPU, the way mamba_ssm's CUDA kernel works: the (batch, d_inner, L, d_state)
 * states are never materialised, and the D skip and the silu(z) gate are applied in the same pass.
 *
 *   dt = softplus(delta + bias[d])            (bias and softplus optional)
 *   x_t = exp(dt_t A[d]) * x_{t-1} + dt_t u_t B[b,t]     (a d_state-wide state per (b, d) row)
 *   out_t = (sum_n C[b,t,n] x_t[n] + D[d] u_t) * silu(z_t)   (D and z optional)
 *
 * Vectorisation: one SIMD lane per state index n. A row's state is NV = NP / W vectors (NP: d_state padded
 * with zeros to a multiple of the width W; 1 vector for d_state 16 on AVX-512), so every step is a few
 * independent vector operations with no gather and no transpose: the inputs stay (batch, d_inner, L),
 * their t-contiguous rows are read as broadcast scalars, and the per-t sums over n (the output, and in
 * backward the gradients wrt dt*u and dt) are taken W time steps at a time by one transposing reduction
 * (sum_lanes) that turns W vectors into one vector of their W sums, stored contiguously in t. Sums over d
 * (gB, gC) need no reduction at all: with lanes over n they are plain vector adds.
 *
 * Backward recomputes one row's states and decays into a per-thread buffer ((L + 1) x NP floats each,
 * 64 KiB at L=512, d_state=16: L2-resident) and runs the adjoint recurrence in reverse.
 *
 * Layouts (contiguous float32): u, delta, z, out and their gradients: (batch, d_inner, L); A: (d_inner, NP);
 * Bt, Ct: (batch, L, NP), time-major; bias, D: (d_inner,) or NULL. Every function handles d in [d0, d1), so
 * Python runs disjoint ranges on several threads (ctypes releases the GIL). Outputs indexed by d are written
 * by one range only; gB and gC (sums over d) go to a per-range partial buffer that the caller sums.
 *
 * The width comes from the compiler's target (-march=native): AVX-512 (W=16), AVX2+FMA (W=8), or plain C
 * (W=1, also forced by -DSCAN_SCALAR for tests). exp is our own (range reduction and a degree-6
 * polynomial, about 1 ulp) so that it inlines into the loops and keeps the state in registers.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* exp(r) on [-ln2/2, ln2/2] ~ 1 + r + EXP_C2 r^2 + ... + EXP_C6 r^6 (relative error 3e-9, fitted for this
 * file by reweighted least squares); ln2 split in two for an exact enough range reduction. */
#define EXP_C2 0.49999994f
#define EXP_C3 0.16666521f
#define EXP_C4 0.04166839f
#define EXP_C5 0.00836871f
#define EXP_C6 0.0013814602f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO (-2.12194440e-4f)

#if defined(__AVX512F__) && !defined(SCAN_SCALAR)
#include <immintrin.h>
#define W 16
typedef __m512 vf;
INLINE vf vzero(void) { return _mm512_setzero_ps(); }
INLINE vf vset(float a) { return _mm512_set1_ps(a); }
INLINE vf vload(const float *p) { return _mm512_loadu_ps(p); }
INLINE void vstore(float *p, vf a) { _mm512_storeu_ps(p, a); }
INLINE vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
INLINE vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
INLINE vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
INLINE vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
INLINE vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
INLINE vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
INLINE vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
INLINE float vsum(vf a) { return _mm512_reduce_add_ps(a); }
/* x >= 0 ? a : b */
INLINE vf vselect_nonneg(vf x, vf a, vf b) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, vzero(), _CMP_GE_OQ), b, a); }

INLINE vf vexp(vf x)
{
    /* clamp only far outside float's range (NaN passes: max/min return their second operand on NaN);
     * scalef then gives 0, subnormals or inf exactly where exp does */
    x = _mm512_min_ps(vset(128.0f), _mm512_max_ps(vset(-160.0f), x));
    const vf n = _mm512_roundscale_ps(vmul(x, vset(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vf r = vfma(n, vset(-LN2_HI), x);
    r = vfma(n, vset(-LN2_LO), r);
    vf p = vfma(vset(EXP_C6), r, vset(EXP_C5));
    p = vfma(p, r, vset(EXP_C4));
    p = vfma(p, r, vset(EXP_C3));
    p = vfma(p, r, vset(EXP_C2));
    p = vfma(p, r, vset(1.0f));
    p = vfma(p, r, vset(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Lane i of the result is the sum of the vector in slot i of p. Each level of the tree halves the number of
 * vectors: a blend keeps one half of a pair's lanes, a two-source permute brings the other halves next to
 * them, one add sums them: 15 adds for 16 sums instead of 16 horizontal reductions. The tree leaves the sum
 * of input k in lane bitreverse(k), so time step j goes in slot LANE_SLOT(j) = bitreverse(j). */
#define LANE_SLOT(j) ((((j) & 1) << 3) | (((j) & 2) << 1) | (((j) & 4) >> 1) | (((j) & 8) >> 3))
INLINE vf pair_halves(vf a, vf b, __mmask16 keep_a, __m512i other)
{
    return vadd(_mm512_mask_blend_ps(keep_a, b, a), _mm512_permutex2var_ps(a, other, b));
}
INLINE vf vsum_lanes(const vf *p)
{
    /* indices 0-15 pick from a, 16-31 from b; _mm512_set_epi32 lists lane 15 first */
    const __m512i i1 = _mm512_set_epi32(23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8);
    const __m512i i2 = _mm512_set_epi32(27, 26, 25, 24, 15, 14, 13, 12, 19, 18, 17, 16, 7, 6, 5, 4);
    const __m512i i3 = _mm512_set_epi32(29, 28, 15, 14, 25, 24, 11, 10, 21, 20, 7, 6, 17, 16, 3, 2);
    const __m512i i4 = _mm512_set_epi32(30, 15, 28, 13, 26, 11, 24, 9, 22, 7, 20, 5, 18, 3, 16, 1);
    vf s1[8], s2[4], s3[2];
    /* 256-bit halves, then 128-bit quarters within them, then lane pairs, then single lanes */
    for (int i = 0; i < 8; i++) s1[i] = pair_halves(p[2 * i], p[2 * i + 1], 0x00FF, i1);
    for (int i = 0; i < 4; i++) s2[i] = pair_halves(s1[2 * i], s1[2 * i + 1], 0x0F0F, i2);
    for (int i = 0; i < 2; i++) s3[i] = pair_halves(s2[2 * i], s2[2 * i + 1], 0x3333, i3);
    return pair_halves(s3[0], s3[1], 0x5555, i4);
}

#elif defined(__AVX2__) && defined(__FMA__) && !defined(SCAN_SCALAR)
#include <immintrin.h>
#define W 8
typedef __m256 vf;
INLINE vf vzero(void) { return _mm256_setzero_ps(); }
INLINE vf vset(float a) { return _mm256_set1_ps(a); }
INLINE vf vload(const float *p) { return _mm256_loadu_ps(p); }
INLINE void vstore(float *p, vf a) { _mm256_storeu_ps(p, a); }
INLINE vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
INLINE vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
INLINE vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
INLINE vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
INLINE vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
INLINE vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
INLINE vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
INLINE float vsum(vf a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
INLINE vf vselect_nonneg(vf x, vf a, vf b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, vzero(), _CMP_GE_OQ)); }

INLINE vf vexp(vf x)
{
    /* no scalef here: build 2^n in the exponent bits, so keep n in the normal range and flush below it */
    const vf under = _mm256_cmp_ps(x, vset(-87.33654f), _CMP_LT_OQ);
    x = _mm256_min_ps(vset(88.72283f), _mm256_max_ps(vset(-87.33654f), x));
    const vf n = _mm256_round_ps(vmul(x, vset(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vf r = vfma(n, vset(-LN2_HI), x);
    r = vfma(n, vset(-LN2_LO), r);
    vf p = vfma(vset(EXP_C6), r, vset(EXP_C5));
    p = vfma(p, r, vset(EXP_C4));
    p = vfma(p, r, vset(EXP_C3));
    p = vfma(p, r, vset(EXP_C2));
    p = vfma(p, r, vset(1.0f));
    p = vfma(p, r, vset(1.0f));
    /* n = 128 (x near 88.7) would overflow the exponent field: scale by 2^(n-1), then by 2 */
    const vf big = _mm256_cmp_ps(n, vset(127.0f), _CMP_GT_OQ);
    const vf m = vsub(n, _mm256_and_ps(big, vset(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(m), _mm256_set1_epi32(127)), 23);
    p = vmul(p, _mm256_castsi256_ps(e));
    p = vmul(p, _mm256_blendv_ps(vset(1.0f), vset(2.0f), big));
    return _mm256_andnot_ps(under, p);
}

/* As the AVX-512 version: lane i = sum of slot i; this tree leaves the sum of input k in lane
 * (k & 1) * 4 + k / 2, so time step j goes in slot 2 (j mod 4) + j / 4. */
#define LANE_SLOT(j) ((((j) & 3) << 1) | ((j) >> 2))
INLINE vf vsum_lanes(const vf *p)
{
    vf s1[4], s2[2];
    for (int i = 0; i < 4; i++)  /* 128-bit halves: (a.lo + a.hi | b.lo + b.hi) */
        s1[i] = vadd(_mm256_blend_ps(p[2 * i], p[2 * i + 1], 0xF0), _mm256_permute2f128_ps(p[2 * i], p[2 * i + 1], 0x21));
    for (int i = 0; i < 2; i++)  /* pairs of lanes within each half */
        s2[i] = vadd(_mm256_blend_ps(s1[2 * i], s1[2 * i + 1], 0xCC), _mm256_shuffle_ps(s1[2 * i], s1[2 * i + 1], 0x4E));
    return vadd(_mm256_shuffle_ps(s2[0], s2[1], 0x88), _mm256_shuffle_ps(s2[0], s2[1], 0xDD));
}

#else
#define W 1
typedef float vf;
INLINE vf vzero(void) { return 0.0f; }
INLINE vf vset(float a) { return a; }
INLINE vf vload(const float *p) { return *p; }
INLINE void vstore(float *p, vf a) { *p = a; }
INLINE vf vadd(vf a, vf b) { return a + b; }
INLINE vf vsub(vf a, vf b) { return a - b; }
INLINE vf vmul(vf a, vf b) { return a * b; }
INLINE vf vdiv(vf a, vf b) { return a / b; }
INLINE vf vfma(vf a, vf b, vf c) { return a * b + c; }
INLINE vf vmax(vf a, vf b) { return a > b ? a : b; }
INLINE vf vmin(vf a, vf b) { return a < b ? a : b; }
INLINE float vsum(vf a) { return a; }
INLINE vf vselect_nonneg(vf x, vf a, vf b) { return x >= 0.0f ? a : b; }
INLINE vf vexp(vf x) { return expf(x); }
#define LANE_SLOT(j) (j)
INLINE vf vsum_lanes(const vf *p) { return p[0]; }
#endif

/* Row buffers are padded to a multiple of 16 floats (the widest W), which keeps every row 64-byte aligned. */
#define PAD16(n) (((n) + 15) / 16 * 16)

INLINE vf vload_part(const float *p, int64_t n)
{
    if (n >= W) return vload(p);
    float tmp[W] = {0};
    memcpy(tmp, p, (size_t)n * sizeof(float));
    return vload(tmp);
}

INLINE void vstore_part(float *p, vf a, int64_t n)
{
    if (n >= W) {
        vstore(p, a);
        return;
    }
    float tmp[W];
    vstore(tmp, a);
    memcpy(p, tmp, (size_t)n * sizeof(float));
}

/* log(1 + e) for e in [0, 1]: 2 atanh(s) with s = e / (2 + e) <= 1/3, whose odd series converges by 1/9 a
 * term; exact in relative terms for tiny e, where forming 1 + e would lose e's digits. */
INLINE vf vlog1p_unit(vf e)
{
    const vf s = vdiv(e, vadd(vset(2.0f), e)), s2 = vmul(s, s);
    vf p = vfma(vset(1.0f / 15), s2, vset(1.0f / 13));
    p = vfma(p, s2, vset(1.0f / 11));
    p = vfma(p, s2, vset(1.0f / 9));
    p = vfma(p, s2, vset(1.0f / 7));
    p = vfma(p, s2, vset(1.0f / 5));
    p = vfma(p, s2, vset(1.0f / 3));
    p = vfma(p, s2, vset(1.0f));
    return vmul(vadd(s, s), p);
}

/* 1 / (1 + exp(-x)) without overflow: e = exp(-|x|) <= 1 on both sides. */
INLINE vf vsigmoid(vf x)
{
    const vf e = vexp(vmin(x, vsub(vzero(), x)));
    return vdiv(vselect_nonneg(x, vset(1.0f), e), vadd(vset(1.0f), e));
}

/* One row's dt, dt * u and, when dsp is not NULL, softplus' derivative (sigmoid of the argument). */
static void row_dt(const float *delta, const float *u, float bias, int softplus, int64_t L,
                   float *dt, float *dtu, float *dsp)
{
    for (int64_t t = 0; t < L; t += W) {
        const vf pre = vadd(vload_part(delta + t, L - t), vset(bias));
        vf d = pre;
        if (softplus) {  /* softplus(x) = max(x, 0) + log(1 + exp(-|x|)) */
            const vf e = vexp(vmin(pre, vsub(vzero(), pre)));
            d = vadd(vmax(pre, vzero()), vlog1p_unit(e));
            if (dsp) vstore(dsp + t, vdiv(vselect_nonneg(pre, vset(1.0f), e), vadd(vset(1.0f), e)));
        } else if (dsp) {
            vstore(dsp + t, vset(1.0f));
        }
        vstore(dt + t, d);
        vstore(dtu + t, vmul(d, vload_part(u + t, L - t)));
    }
}

/* The recurrence over one row. a: NV vectors of A[d]; Bt, Ct: this batch's (L, NP). Writes, when not NULL,
 * y (the core output sum_n C x) and the states and decays xs[t], dAs[t] (NP floats per step). */
INLINE void row_states(const int NV, const vf *a, const float *dt, const float *dtu, const float *Bt,
                       const float *Ct, int64_t L, float *y, float *xs, float *dAs)
{
    const int64_t NP = (int64_t)NV * W;
    vf x[NV], p[W];
    for (int k = 0; k < NV; k++) x[k] = vzero();
    for (int64_t t0 = 0; t0 < L; t0 += W) {
        const int T = L - t0 < W ? (int)(L - t0) : W;
        for (int j = 0; j < T; j++) {
            const int64_t t = t0 + j;
            const vf d = vset(dt[t]), du = vset(dtu[t]);
            vf acc = vzero();
            for (int k = 0; k < NV; k++) {
                const int64_t o = t * NP + k * W;
                const vf dA = vexp(vmul(d, a[k]));
                x[k] = vfma(dA, x[k], vmul(du, vload(Bt + o)));
                if (y) acc = vfma(vload(Ct + o), x[k], acc);
                if (xs) {
                    vstore(xs + o, x[k]);
                    vstore(dAs + o, dA);
                }
            }
            p[LANE_SLOT(j)] = acc;
        }
        if (y) {
            for (int j = T; j < W; j++) p[LANE_SLOT(j)] = vzero();
            vstore(y + t0, vsum_lanes(p));  /* y is padded: the lanes past L land in the padding */
        }
    }
}

/* The adjoint recurrence over one row, in reverse: h_t = C_t gy_t + exp(dt_{t+1} A) h_{t+1}. xs: the states
 * with one zero row before t = 0 (x_{-1}); dAs: the decays. Adds into gB, gC (this batch's (L, NP)) and ga
 * (NV vectors of gA[d]); writes the per-t gradients wrt dt * u and wrt dt through the decay. */
INLINE void row_adjoint(const int NV, const vf *a, const float *dt, const float *dtu, const float *gy,
                        const float *Bt, const float *Ct, const float *xs, const float *dAs, int64_t L,
                        float *gB, float *gC, vf *ga, float *g_dtu, float *g_dt)
{
    const int64_t NP = (int64_t)NV * W;
    vf h[NV], dA_next[NV], pu[W], pt[W];
    for (int k = 0; k < NV; k++) h[k] = dA_next[k] = vzero();
    for (int64_t t0 = (L - 1) / W * W; t0 >= 0; t0 -= W) {
        const int T = L - t0 < W ? (int)(L - t0) : W;
        for (int j = T; j < W; j++) pu[LANE_SLOT(j)] = pt[LANE_SLOT(j)] = vzero();
        for (int j = T - 1; j >= 0; j--) {
            const int64_t t = t0 + j;
            const vf g = vset(gy[t]), du = vset(dtu[t]), d = vset(dt[t]);
            vf su = vzero(), st = vzero();
            for (int k = 0; k < NV; k++) {
                const int64_t o = t * NP + k * W;
                const vf x = vload(xs + o), dA = vload(dAs + o);
                h[k] = vfma(dA_next[k], h[k], vmul(vload(Ct + o), g));
                vstore(gC + o, vfma(x, g, vload(gC + o)));
                vstore(gB + o, vfma(h[k], du, vload(gB + o)));
                su = vfma(h[k], vload(Bt + o), su);
                /* q = h_t exp(dt_t A) x_{t-1}: the gradient wrt dt_t * A */
                const vf q = vmul(vmul(h[k], dA), vload(xs + o - NP));
                st = vfma(q, a[k], st);
                ga[k] = vfma(q, d, ga[k]);
                dA_next[k] = dA;
            }
            pu[LANE_SLOT(j)] = su;
            pt[LANE_SLOT(j)] = st;
        }
        vstore(g_dtu + t0, vsum_lanes(pu));
        vstore(g_dt + t0, vsum_lanes(pt));
    }
}

/* Constant NV for the common widths, so that the state lives in registers. */
#define DISPATCH_NV(NV, call) \
    do { \
        if ((NV) == 1) { const int nv_ = 1; call; } \
        else if ((NV) == 2) { const int nv_ = 2; call; } \
        else { const int nv_ = (NV); call; } \
    } while (0)

int64_t scan_lanes(void) { return W; }

int64_t scan_forward_work(int64_t L, int64_t NP) { (void)NP; return 3 * PAD16(L); }

int64_t scan_backward_work(int64_t L, int64_t NP) { return 8 * PAD16(L) + (2 * L + 1) * NP; }

/* out: (batch, d_inner, L). work: scan_forward_work floats, 64-byte aligned. */
void scan_forward(const float *u, const float *delta, const float *bias, int64_t softplus, const float *A,
                  const float *Bt, const float *Ct, const float *D, const float *z, float *out, float *work,
                  int64_t batch, int64_t d_inner, int64_t L, int64_t NP, int64_t d0, int64_t d1)
{
    if (L == 0) return;
    const int64_t Lp = PAD16(L), NV = NP / W;
    float *dt = work, *dtu = work + Lp, *y = work + 2 * Lp;
    vf a[NV];
    for (int64_t b = 0; b < batch; b++) {
        const float *Bb = Bt + b * L * NP, *Cb = Ct + b * L * NP;
        for (int64_t d = d0; d < d1; d++) {
            const int64_t row = (b * d_inner + d) * L;
            row_dt(delta + row, u + row, bias ? bias[d] : 0.0f, (int)softplus, L, dt, dtu, NULL);
            for (int64_t k = 0; k < NV; k++) a[k] = vload(A + d * NP + k * W);
            DISPATCH_NV(NV, row_states(nv_, a, dt, dtu, Bb, Cb, L, y, NULL, NULL));
            const vf Dd = vset(D ? D[d] : 0.0f);
            for (int64_t t = 0; t < L; t += W) {
                const vf uu = vload_part(u + row + t, L - t);
                vf o = vfma(Dd, uu, vload(y + t));
                if (z) {
                    const vf zz = vload_part(z + row + t, L - t);
                    o = vmul(o, vmul(zz, vsigmoid(zz)));
                }
                vstore_part(out + row + t, o, L - t);
            }
        }
    }
}

/* g: gradient wrt out. Writes gu, gdelta (batch, d_inner, L), gA (d_inner, NP) and, when not NULL, gbias,
 * gD (d_inner,) and gz (batch, d_inner, L; needs z) for d in [d0, d1); adds into gB, gC (batch, L, NP), this
 * range's partial sums. work: scan_backward_work floats, 64-byte aligned. */
void scan_backward(const float *u, const float *delta, const float *bias, int64_t softplus, const float *A,
                   const float *Bt, const float *Ct, const float *D, const float *z, const float *g,
                   float *gu, float *gdelta, float *gA, float *gbias, float *gD, float *gz, float *gB, float *gC,
                   float *work, int64_t batch, int64_t d_inner, int64_t L, int64_t NP, int64_t d0, int64_t d1)
{
    if (L == 0) return;
    const int64_t Lp = PAD16(L), NV = NP / W;
    float *dt = work, *dsp = dt + Lp, *dtu = dsp + Lp, *gyb = dtu + Lp, *sz = gyb + Lp, *y = sz + Lp,
          *g_dtu = y + Lp, *g_dt = g_dtu + Lp;
    float *xs = g_dt + Lp + NP, *dAs = xs + L * NP;  /* xs[-1] (the NP floats before xs) is x_{-1} = 0 */
    memset(xs - NP, 0, (size_t)NP * sizeof(float));
    vf a[NV], ga[NV];
    memset(gA + d0 * NP, 0, (size_t)((d1 - d0) * NP) * sizeof(float));
    for (int64_t d = d0; d < d1; d++) {
        if (gbias) gbias[d] = 0.0f;
        if (gD) gD[d] = 0.0f;
    }
    for (int64_t b = 0; b < batch; b++) {
        const float *Bb = Bt + b * L * NP, *Cb = Ct + b * L * NP;
        float *gBb = gB + b * L * NP, *gCb = gC + b * L * NP;
        for (int64_t d = d0; d < d1; d++) {
            const int64_t row = (b * d_inner + d) * L;
            row_dt(delta + row, u + row, bias ? bias[d] : 0.0f, (int)softplus, L, dt, dtu, dsp);
            const float *gy = g + row;  /* the gradient wrt the core plus the D skip: g * silu(z) */
            if (z) {
                for (int64_t t = 0; t < L; t += W) {
                    const vf zz = vload_part(z + row + t, L - t), s = vsigmoid(zz);
                    vstore(sz + t, s);
                    vstore(gyb + t, vmul(vload_part(g + row + t, L - t), vmul(zz, s)));
                }
                gy = gyb;
            }
            for (int64_t k = 0; k < NV; k++) {
                a[k] = vload(A + d * NP + k * W);
                ga[k] = vload(gA + d * NP + k * W);
            }
            float *yrow = gz ? y : NULL;  /* the core output is needed only for the gate's gradient */
            DISPATCH_NV(NV, row_states(nv_, a, dt, dtu, Bb, Cb, L, yrow, xs, dAs));
            DISPATCH_NV(NV, row_adjoint(nv_, a, dt, dtu, gy, Bb, Cb, xs, dAs, L, gBb, gCb, ga, g_dtu, g_dt));
            for (int64_t k = 0; k < NV; k++) vstore(gA + d * NP + k * W, ga[k]);
            const vf Dd = vset(D ? D[d] : 0.0f);
            vf sum_gd = vzero(), sum_gyu = vzero();
            for (int64_t t = 0; t < L; t += W) {
                const int64_t n = L - t;
                const vf uu = vload_part(u + row + t, n), gyt = vload_part(gy + t, n);
                const vf gdtu = vload(g_dtu + t);  /* zero past L, like every padded row here */
                const vf gd = vmul(vfma(gdtu, uu, vload(g_dt + t)), vload(dsp + t));
                vstore_part(gdelta + row + t, gd, n);
                vstore_part(gu + row + t, vfma(gdtu, vload(dt + t), vmul(gyt, Dd)), n);
                sum_gd = vadd(sum_gd, gd);
                sum_gyu = vfma(gyt, uu, sum_gyu);
                if (gz) {  /* g (y + D u) d silu/dz, d silu/dz = sigmoid(z) (1 + z (1 - sigmoid(z))) */
                    const vf zz = vload_part(z + row + t, n), s = vload(sz + t);
                    const vf dsilu = vmul(s, vfma(zz, vsub(vset(1.0f), s), vset(1.0f)));
                    const vf full = vfma(Dd, uu, vload(y + t));
                    vstore_part(gz + row + t, vmul(vmul(vload_part(g + row + t, n), full), dsilu), n);
                }
            }
            if (gbias) gbias[d] += vsum(sum_gd);
            if (gD) gD[d] += vsum(sum_gyu);
        }
    }
}

/* Throughput probes for parity.bench.scanbound, compiled exactly like the kernel. */

/* reps passes of this kernel's exp over x[0, n) into y. */
void bench_exp(const float *x, float *y, int64_t n, int64_t reps)
{
    for (int64_t r = 0; r < reps; r++)
        for (int64_t i = 0; i + W <= n; i += W) vstore(y + i, vexp(vload(x + i)));
}

/* iters rounds of 12 independent vector FMA chains (enough to fill two FMA pipes of latency 4 to 6):
 * iters * 12 * W fused multiply-adds. Returns a sum so the work is not optimised away. */
float bench_fma(int64_t iters)
{
    vf acc[12];
    for (int i = 0; i < 12; i++) acc[i] = vset(0.001f * (float)i);
    const vf m = vset(0.999999f), c = vset(1e-7f);
    for (int64_t r = 0; r < iters; r++)
        for (int i = 0; i < 12; i++) acc[i] = vfma(acc[i], m, c);
    vf s = vzero();
    for (int i = 0; i < 12; i++) s = vadd(s, acc[i]);
    return vsum(s);
}
