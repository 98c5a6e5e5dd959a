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
 * Backward recomputes a few rows' states and decays into a per-thread buffer ((L + 1) x NP floats each per
 * row, 64 KiB at L=512, d_state=16: L2-resident) and runs the adjoint recurrence in reverse.
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
    /* scalef gives 0, subnormals or inf exactly where exp does; only far below float's range the reduced
     * argument would lose its accuracy and blow up, so clamp there (NaN passes: max returns its second
     * operand on NaN; far above, the polynomial and scalef both overflow to inf, as they should) */
    x = _mm512_max_ps(vset(-160.0f), x);
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

/* vsum_lanes(p): lane j of the result is the sum of p[j]'s lanes, for W vectors p[0..W-1] (W time steps).
 * Each level of the tree halves the number of vectors: a blend keeps one half of a pair's lanes, a two-source
 * permute brings the other halves next to them, one add sums them: 15 adds for 16 sums instead of 16
 * horizontal reductions. The tree leaves the sum of its input k in lane bitreverse(k), so it reads its
 * input k from p[TREE_INPUT(k)], TREE_INPUT(k) = bitreverse(k). */
#define TREE_INPUT(k) ((((k) & 1) << 3) | (((k) & 2) << 1) | (((k) & 4) >> 1) | (((k) & 8) >> 3))
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
    for (int i = 0; i < 8; i++) s1[i] = pair_halves(p[TREE_INPUT(2 * i)], p[TREE_INPUT(2 * i + 1)], 0x00FF, i1);
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

/* As the AVX-512 version; this tree leaves the sum of its input k in lane 4 (k mod 2) + k / 2. */
#define TREE_INPUT(k) ((((k) & 1) << 2) | ((k) >> 1))
INLINE vf vsum_lanes(const vf *p)
{
    vf s1[4], s2[2];
    for (int i = 0; i < 4; i++)  /* 128-bit halves: (a.lo + a.hi | b.lo + b.hi) */
    {
        const vf a = p[TREE_INPUT(2 * i)], b = p[TREE_INPUT(2 * i + 1)];
        s1[i] = vadd(_mm256_blend_ps(a, b, 0xF0), _mm256_permute2f128_ps(a, b, 0x21));
    }
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

/* Channels go through the recurrences in groups of G = GROUP (or single ones for the rest of a range): the
 * group shares each step's loads of B, C and its read-modify-write of gB, gC, which otherwise make the
 * backward pass wait on L2, and its G independent chains keep the vector pipes busy. */
#define GROUP 4

/* Fixed-size local arrays (no variable-length ones: GCC would keep those on the stack even where inlining
 * makes their size constant) hold the states of up to NV_LOCAL vectors per row; wider states use scratch. */
#define NV_LOCAL 2

/* The recurrence over G rows of one batch. a: G x NV vectors of A[d]; dt[g], dtu[g]: row g's dt and dt * u;
 * Bt, Ct: this batch's (L, NP). Writes, when not NULL, y[g] (the core output sum_n C x) and the states and
 * decays xs[g][t], dAs[g][t] (NP floats per step). p: G x W vectors of scratch; wide: G x NV more when
 * NV > NV_LOCAL. */
INLINE void group_states(const int G, const int NV, const vf *a, float *const *dt, float *const *dtu,
                         const float *Bt, const float *Ct, int64_t L, float *const *y, float *const *xs,
                         float *const *dAs, vf *p, vf *wide)
{
    const int64_t NP = (int64_t)NV * W;
    vf x_local[GROUP * NV_LOCAL];
    vf *x = NV <= NV_LOCAL ? x_local : wide;
    for (int i = 0; i < G * NV; i++) x[i] = vzero();
    for (int64_t t0 = 0; t0 < L; t0 += W) {
        const int T = L - t0 < W ? (int)(L - t0) : W;
        for (int j = 0; j < T; j++) {
            const int64_t t = t0 + j;
            vf acc[GROUP];
            for (int g = 0; g < G; g++) acc[g] = vzero();
            for (int k = 0; k < NV; k++) {
                const int64_t o = t * NP + k * W;
                const vf Bk = vload(Bt + o), Ck = vload(Ct + o);
                for (int g = 0; g < G; g++) {
                    const vf dA = vexp(vmul(vset(dt[g][t]), a[g * NV + k]));
                    x[g * NV + k] = vfma(dA, x[g * NV + k], vmul(vset(dtu[g][t]), Bk));
                    if (y) acc[g] = vfma(Ck, x[g * NV + k], acc[g]);
                    if (xs) {
                        vstore(xs[g] + o, x[g * NV + k]);
                        vstore(dAs[g] + o, dA);
                    }
                }
            }
            if (y)
                for (int g = 0; g < G; g++) p[g * W + j] = acc[g];
        }
        if (y)
            for (int g = 0; g < G; g++) {
                for (int j = T; j < W; j++) p[g * W + j] = vzero();
                vstore(y[g] + t0, vsum_lanes(p + g * W));  /* y is padded: lanes past L land in the padding */
            }
    }
}

/* The adjoint recurrence h_t = C_t gy_t + exp(dt_{t+1} A) h_{t+1} over G rows, in reverse. xs[g]: row g's
 * states with one zero row before t = 0 (x_{-1}); dAs[g]: its decays. Adds into gB, gC (this batch's (L, NP))
 * and ga (G x NV vectors of gA[d]); writes per row the per-t gradients wrt dt * u (g_dtu) and wrt dt through
 * the decay (g_dt). pu, pt: G x W vectors of scratch each; wide: 3 G NV more when NV > NV_LOCAL. */
INLINE void group_adjoint(const int G, const int NV, const vf *a, float *const *dt, float *const *dtu,
                          const float *const *gy, const float *Bt, const float *Ct, float *const *xs, float *const *dAs,
                          int64_t L, float *gB, float *gC, vf *ga_out, float *const *g_dtu, float *const *g_dt,
                          vf *pu, vf *pt, vf *wide)
{
    const int64_t NP = (int64_t)NV * W;
    vf h_local[GROUP * NV_LOCAL], dA_next_local[GROUP * NV_LOCAL], ga_local[GROUP * NV_LOCAL];
    const int local = NV <= NV_LOCAL;
    vf *h = local ? h_local : wide, *dA_next = local ? dA_next_local : wide + G * NV;
    vf *ga = local ? ga_local : wide + 2 * G * NV;  /* accumulated here, added to ga_out at the end */
    for (int i = 0; i < G * NV; i++) h[i] = dA_next[i] = ga[i] = vzero();
    for (int64_t t0 = (L - 1) / W * W; t0 >= 0; t0 -= W) {
        const int T = L - t0 < W ? (int)(L - t0) : W;
        for (int g = 0; g < G; g++)
            for (int j = T; j < W; j++) pu[g * W + j] = pt[g * W + j] = vzero();
        for (int j = T - 1; j >= 0; j--) {
            const int64_t t = t0 + j;
            vf su[GROUP], st[GROUP];
            for (int g = 0; g < G; g++) su[g] = st[g] = vzero();
            for (int k = 0; k < NV; k++) {
                const int64_t o = t * NP + k * W;
                const vf Bk = vload(Bt + o), Ck = vload(Ct + o);
                vf gBk = vload(gB + o), gCk = vload(gC + o);
                for (int g = 0; g < G; g++) {
                    const int i = g * NV + k;
                    const vf gyt = vset(gy[g][t]), x = vload(xs[g] + o), dA = vload(dAs[g] + o);
                    h[i] = vfma(dA_next[i], h[i], vmul(Ck, gyt));
                    gCk = vfma(x, gyt, gCk);
                    gBk = vfma(h[i], vset(dtu[g][t]), gBk);
                    su[g] = vfma(h[i], Bk, su[g]);
                    /* q = h_t exp(dt_t A) x_{t-1}: the gradient wrt dt_t * A */
                    const vf q = vmul(vmul(h[i], dA), vload(xs[g] + o - NP));
                    st[g] = vfma(q, a[i], st[g]);
                    ga[i] = vfma(q, vset(dt[g][t]), ga[i]);
                    dA_next[i] = dA;
                }
                vstore(gB + o, gBk);
                vstore(gC + o, gCk);
            }
            for (int g = 0; g < G; g++) {
                pu[g * W + j] = su[g];
                pt[g * W + j] = st[g];
            }
        }
        for (int g = 0; g < G; g++) {
            vstore(g_dtu[g] + t0, vsum_lanes(pu + g * W));
            vstore(g_dt[g] + t0, vsum_lanes(pt + g * W));
        }
    }
    for (int i = 0; i < G * NV; i++) ga_out[i] = vadd(ga_out[i], ga[i]);
}

/* Constant group size and NV for the common cases, so that the states live in registers. */
#define DISPATCH(G, NV, call) \
    do { \
        if ((G) == GROUP && (NV) == 1) { const int g_ = GROUP, nv_ = 1; call; } \
        else if ((G) == GROUP && (NV) == 2) { const int g_ = GROUP, nv_ = 2; call; } \
        else if ((G) == GROUP) { const int g_ = GROUP, nv_ = (int)(NV); call; } \
        else if ((NV) == 1) { const int g_ = 1, nv_ = 1; call; } \
        else { const int g_ = 1, nv_ = (int)(NV); call; } \
    } while (0)

/* Per-row scratch: dt, softplus', dt * u, gy, sigmoid(z), y, g_dtu, g_dt (L floats each, padded), then the
 * states with a zero row before them ((L + 1) x NP) and the decays (L x NP). */
#define ROW_BUFFERS 8
static int64_t row_work(int64_t L, int64_t NP) { return ROW_BUFFERS * PAD16(L) + PAD16((2 * L + 1) * NP); }

int64_t scan_lanes(void) { return W; }

/* Then the trees' inputs (2 x GROUP x W vectors) and the states of wide rows (3 x GROUP x NV vectors). */
int64_t scan_forward_work(int64_t L, int64_t NP) { return GROUP * row_work(L, NP) + (2 * GROUP * W + 3 * GROUP * NP / W) * W; }

int64_t scan_backward_work(int64_t L, int64_t NP) { return scan_forward_work(L, NP); }

/* out: (batch, d_inner, L). work: scan_forward_work floats, 64-byte aligned. */
void scan_forward(const float *u, const float *delta, const float *bias, int64_t softplus, const float *A,
                  const float *Bt, const float *Ct, const float *D, const float *z, float *out, float *work,
                  int64_t batch, int64_t d_inner, int64_t L, int64_t NP, int64_t d0, int64_t d1)
{
    if (L == 0) return;
    const int64_t Lp = PAD16(L), NV = NP / W, rw = row_work(L, NP);
    vf *p = (vf *)(work + GROUP * rw), *wide = p + 2 * GROUP * W;
    float *dt[GROUP], *dtu[GROUP], *y[GROUP];
    for (int g = 0; g < GROUP; g++) {
        dt[g] = work + g * rw;
        dtu[g] = dt[g] + 2 * Lp;
        y[g] = dt[g] + 5 * Lp;
    }
    vf a[GROUP * NV];
    for (int64_t b = 0; b < batch; b++) {
        const float *Bb = Bt + b * L * NP, *Cb = Ct + b * L * NP;
        for (int64_t dg = d0; dg < d1;) {
            const int G = d1 - dg >= GROUP ? GROUP : 1;
            for (int g = 0; g < G; g++) {
                const int64_t d = dg + g, row = (b * d_inner + d) * L;
                row_dt(delta + row, u + row, bias ? bias[d] : 0.0f, (int)softplus, L, dt[g], dtu[g], NULL);
                for (int64_t k = 0; k < NV; k++) a[g * NV + k] = vload(A + d * NP + k * W);
            }
            DISPATCH(G, NV, group_states(g_, nv_, a, dt, dtu, Bb, Cb, L, y, NULL, NULL, p, wide));
            for (int g = 0; g < G; g++) {
                const int64_t d = dg + g, row = (b * d_inner + d) * L;
                const vf Dd = vset(D ? D[d] : 0.0f);
                for (int64_t t = 0; t < L; t += W) {
                    vf o = vfma(Dd, vload_part(u + row + t, L - t), vload(y[g] + t));
                    if (z) {
                        const vf zz = vload_part(z + row + t, L - t);
                        o = vmul(o, vmul(zz, vsigmoid(zz)));
                    }
                    vstore_part(out + row + t, o, L - t);
                }
            }
            dg += G;
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
    const int64_t Lp = PAD16(L), NV = NP / W, rw = row_work(L, NP);
    vf *pu = (vf *)(work + GROUP * rw), *pt = pu + GROUP * W, *wide = pt + GROUP * W;
    float *dt[GROUP], *dsp[GROUP], *dtu[GROUP], *gyb[GROUP], *sz[GROUP], *y[GROUP], *g_dtu[GROUP], *g_dt[GROUP];
    float *xs[GROUP], *dAs[GROUP];
    const float *gy[GROUP];
    for (int i = 0; i < GROUP; i++) {
        float *r = work + i * rw;
        dt[i] = r, dsp[i] = r + Lp, dtu[i] = r + 2 * Lp, gyb[i] = r + 3 * Lp, sz[i] = r + 4 * Lp;
        y[i] = r + 5 * Lp, g_dtu[i] = r + 6 * Lp, g_dt[i] = r + 7 * Lp;
        xs[i] = r + ROW_BUFFERS * Lp + NP, dAs[i] = xs[i] + L * NP;  /* xs[i][-NP..-1] is x_{-1} = 0 */
        memset(xs[i] - NP, 0, (size_t)NP * sizeof(float));
    }
    vf a[GROUP * NV], ga[GROUP * NV];
    memset(gA + d0 * NP, 0, (size_t)((d1 - d0) * NP) * sizeof(float));
    for (int64_t d = d0; d < d1; d++) {
        if (gbias) gbias[d] = 0.0f;
        if (gD) gD[d] = 0.0f;
    }
    for (int64_t b = 0; b < batch; b++) {
        const float *Bb = Bt + b * L * NP, *Cb = Ct + b * L * NP;
        float *gBb = gB + b * L * NP, *gCb = gC + b * L * NP;
        for (int64_t dg = d0; dg < d1;) {
            const int G = d1 - dg >= GROUP ? GROUP : 1;
            for (int i = 0; i < G; i++) {
                const int64_t d = dg + i, row = (b * d_inner + d) * L;
                row_dt(delta + row, u + row, bias ? bias[d] : 0.0f, (int)softplus, L, dt[i], dtu[i], dsp[i]);
                gy[i] = g + row;  /* the gradient wrt the core plus the D skip: g * silu(z) */
                if (z) {
                    for (int64_t t = 0; t < L; t += W) {
                        const vf zz = vload_part(z + row + t, L - t), s = vsigmoid(zz);
                        vstore(sz[i] + t, s);
                        vstore(gyb[i] + t, vmul(vload_part(g + row + t, L - t), vmul(zz, s)));
                    }
                    gy[i] = gyb[i];
                }
                for (int64_t k = 0; k < NV; k++) {
                    a[i * NV + k] = vload(A + d * NP + k * W);
                    ga[i * NV + k] = vload(gA + d * NP + k * W);
                }
            }
            /* the core output is needed only for the gate's gradient */
            DISPATCH(G, NV, group_states(g_, nv_, a, dt, dtu, Bb, Cb, L, gz ? y : NULL, xs, dAs, pu, wide));
            DISPATCH(G, NV, group_adjoint(g_, nv_, a, dt, dtu, gy, Bb, Cb, xs, dAs, L, gBb, gCb, ga, g_dtu, g_dt, pu, pt, wide));
            for (int i = 0; i < G; i++) {
                const int64_t d = dg + i, row = (b * d_inner + d) * L;
                for (int64_t k = 0; k < NV; k++) vstore(gA + d * NP + k * W, ga[i * NV + k]);
                const vf Dd = vset(D ? D[d] : 0.0f);
                vf sum_gd = vzero(), sum_gyu = vzero();
                for (int64_t t = 0; t < L; t += W) {
                    const int64_t n = L - t;
                    /* the padded rows are zero past L (u, g loaded as zeros there), so the sums need no mask */
                    const vf uu = vload_part(u + row + t, n), gyt = vload_part(gy[i] + t, n), gdtu = vload(g_dtu[i] + t);
                    const vf gd = vmul(vfma(gdtu, uu, vload(g_dt[i] + t)), vload(dsp[i] + t));
                    vstore_part(gdelta + row + t, gd, n);
                    vstore_part(gu + row + t, vfma(gdtu, vload(dt[i] + t), vmul(gyt, Dd)), n);
                    sum_gd = vadd(sum_gd, gd);
                    sum_gyu = vfma(gyt, uu, sum_gyu);
                    if (gz) {  /* g (y + D u) d silu/dz, d silu/dz = sigmoid(z) (1 + z (1 - sigmoid(z))) */
                        const vf zz = vload_part(z + row + t, n), s = vload(sz[i] + t);
                        const vf dsilu = vmul(s, vfma(zz, vsub(vset(1.0f), s), vset(1.0f)));
                        const vf full = vfma(Dd, uu, vload(y[i] + t));
                        vstore_part(gz + row + t, vmul(vmul(vload_part(g + row + t, n), full), dsilu), n);
                    }
                }
                if (gbias) gbias[d] += vsum(sum_gd);
                if (gD) gD[d] += vsum(sum_gyu);
            }
            dg += G;
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
