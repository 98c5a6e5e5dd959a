/* The vector layer shared by the compiled kernels (scan.c, conv.c): a vf type of W float lanes and its
 * operations for AVX-512 (W=16), AVX2+FMA (W=8) or plain C (W=1), picked by the compiler's target
 * (-march=native; -mno-avx512f and -DSCAN_SCALAR force the narrower ones), plus exp, sigmoid and the
 * partial loads and stores of a row's last block. Everything is static inline: each .c file gets its own copy. */
#ifndef PARITY_SIMD_H
#define PARITY_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* 2^f on [0, 1) ~ 1 + f (EXP2_C1 + f (EXP2_C2 + ... f EXP2_C6)): relative error 2e-9 (fitted for this file by
 * reweighted least squares), so with float rounding exp is within about 1 ulp. */
#define EXP2_C1 0.6931470632553101f
#define EXP2_C2 0.2402293086051941f
#define EXP2_C3 0.055485282093286514f
#define EXP2_C4 0.009675451554358006f
#define EXP2_C5 0.0012467845808714628f
#define EXP2_C6 0.0002161291631637141f
#define LOG2E 1.44269504088896341f

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

/* p 2^floor(n): scalef floors its exponent itself and produces 0, subnormals and inf exactly where the
 * product is */
#define VLDEXP_FLOORS 1
INLINE vf vldexp(vf p, vf n) { return _mm512_scalef_ps(p, n); }
INLINE vf vfloor(vf y) { return _mm512_roundscale_ps(y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
/* y - floor(y), exactly, in one instruction */
INLINE vf vfraction(vf y) { return _mm512_reduce_ps(y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }

/* 1 / x: the 14-bit estimate and one Newton step (error about 2^-28), a few times cheaper than a divide. */
INLINE vf vreverse(vf a) { return _mm512_permutexvar_ps(_mm512_set_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), a); }

INLINE vf vrcp(vf x)
{
    const vf r = _mm512_rcp14_ps(x);
    return vmul(r, _mm512_fnmadd_ps(x, r, vset(2.0f)));
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

/* out[4 t + g] = r[g][t] for W steps t of 4 rows (4 vectors): pairs of rows interleaved, then the pairs. */
/* o[j] lane 4 i + g = r[g][4 j + i] for 4 rows' W steps (4 vectors): pairs of rows interleaved, then the pairs;
 * o[j] holds steps 4 j .. 4 j + 3, each step's 4 rows side by side. */
INLINE void interleave4(const vf *r, vf *o)
{
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    const __m512i pairs_lo = _mm512_set_epi32(23, 22, 7, 6, 21, 20, 5, 4, 19, 18, 3, 2, 17, 16, 1, 0);
    const __m512i pairs_hi = _mm512_set_epi32(31, 30, 15, 14, 29, 28, 13, 12, 27, 26, 11, 10, 25, 24, 9, 8);
    const vf a_lo = _mm512_permutex2var_ps(r[0], lo, r[1]), a_hi = _mm512_permutex2var_ps(r[0], hi, r[1]);
    const vf b_lo = _mm512_permutex2var_ps(r[2], lo, r[3]), b_hi = _mm512_permutex2var_ps(r[2], hi, r[3]);
    o[0] = _mm512_permutex2var_ps(a_lo, pairs_lo, b_lo);
    o[1] = _mm512_permutex2var_ps(a_lo, pairs_hi, b_lo);
    o[2] = _mm512_permutex2var_ps(a_hi, pairs_lo, b_hi);
    o[3] = _mm512_permutex2var_ps(a_hi, pairs_hi, b_hi);
}

/* out[4 t + g] = r[g][t] for W steps t of 4 rows (4 vectors). */
INLINE void vstore_interleaved4(float *out, const vf *r)
{
    vf o[4];
    interleave4(r, o);
    for (int j = 0; j < 4; j++) vstore(out + 16 * j, o[j]);
}

/* The inverse of interleave4: r[g][t] = v[t / 4] lane 4 (t mod 4) + g. First rows 0, 1 and rows 2, 3 of steps 0-7
 * and 8-15 side by side, then each row's two halves joined. */
INLINE void deinterleave4(const vf *v, vf *r)
{
    const __m512i rows01 = _mm512_set_epi32(29, 25, 21, 17, 13, 9, 5, 1, 28, 24, 20, 16, 12, 8, 4, 0);
    const __m512i rows23 = _mm512_set_epi32(31, 27, 23, 19, 15, 11, 7, 3, 30, 26, 22, 18, 14, 10, 6, 2);
    const __m512i first = _mm512_set_epi32(23, 22, 21, 20, 19, 18, 17, 16, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i second = _mm512_set_epi32(31, 30, 29, 28, 27, 26, 25, 24, 15, 14, 13, 12, 11, 10, 9, 8);
    const vf a01 = _mm512_permutex2var_ps(v[0], rows01, v[1]), b01 = _mm512_permutex2var_ps(v[2], rows01, v[3]);
    const vf a23 = _mm512_permutex2var_ps(v[0], rows23, v[1]), b23 = _mm512_permutex2var_ps(v[2], rows23, v[3]);
    r[0] = _mm512_permutex2var_ps(a01, first, b01);
    r[1] = _mm512_permutex2var_ps(a01, second, b01);
    r[2] = _mm512_permutex2var_ps(a23, first, b23);
    r[3] = _mm512_permutex2var_ps(a23, second, b23);
}

/* 4 rows' W steps to and from a time-major layout (row g's step t at p[t st + g]): 128-bit pieces, one per step. */
#define HAVE_TMAJOR4 1
INLINE void vstore_tmajor4(float *p, int64_t st, const vf *r)
{
    vf o[4];
    interleave4(r, o);
    for (int j = 0; j < 4; j++) {
        float *q = p + 4 * j * st;
        _mm_storeu_ps(q, _mm512_extractf32x4_ps(o[j], 0));
        _mm_storeu_ps(q + st, _mm512_extractf32x4_ps(o[j], 1));
        _mm_storeu_ps(q + 2 * st, _mm512_extractf32x4_ps(o[j], 2));
        _mm_storeu_ps(q + 3 * st, _mm512_extractf32x4_ps(o[j], 3));
    }
}

INLINE void vload_tmajor4(const float *p, int64_t st, vf *r)
{
    vf v[4];
    for (int j = 0; j < 4; j++) {
        const float *q = p + 4 * j * st;
        vf a = _mm512_castps128_ps512(_mm_loadu_ps(q));
        a = _mm512_insertf32x4(a, _mm_loadu_ps(q + st), 1);
        a = _mm512_insertf32x4(a, _mm_loadu_ps(q + 2 * st), 2);
        v[j] = _mm512_insertf32x4(a, _mm_loadu_ps(q + 3 * st), 3);
    }
    deinterleave4(v, r);
}

/* r[i] lane k <-> r[k] lane i: 32-bit pairs, then 64-bit pairs, then 128-bit blocks in two rounds (64 shuffles). */
INLINE void transpose16(vf *r)
{
    vf t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* then r[4 i + c]'s 128-bit block q holds column 4 q + c of rows 4 i .. 4 i + 3 */
    for (int i = 0; i < 4; i++) {
        const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* a 4 x 4 transpose of 128-bit blocks for each c: column 4 q + c gathers block q of r[c], r[4 + c], ... */
    for (int c = 0; c < 4; c++) {
        const vf s0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), s1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
        const vf s2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44);
        const vf s3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
        t[c] = _mm512_shuffle_f32x4(s0, s2, 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(s0, s2, 0xDD);
        t[8 + c] = _mm512_shuffle_f32x4(s1, s3, 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(s1, s3, 0xDD);
    }
    for (int k = 0; k < 16; k++) r[k] = t[k];
}

/* 16 rows (rs floats apart) to and from a time-major layout (row g's step t at p[t st + g]), n <= 16 steps from
 * the rows' start: each step's 16 values one whole 64-byte store or load. Loads give zeros past n. */
#define HAVE_TMAJOR16 1
INLINE void vstore_tmajor16(float *p, int64_t st, int64_t n, const float *rows, int64_t rs)
{
    vf r[16];
    for (int g = 0; g < 16; g++) r[g] = vload(rows + g * rs);
    transpose16(r);
    for (int64_t t = 0; t < n && t < 16; t++) vstore(p + t * st, r[t]);
}

INLINE void vload_tmajor16(const float *p, int64_t st, int64_t n, float *rows, int64_t rs)
{
    vf r[16];
    for (int64_t t = 0; t < 16; t++) r[t] = t < n ? vload(p + t * st) : vzero();
    transpose16(r);
    for (int g = 0; g < 16; g++) vstore(rows + g * rs, r[g]);
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

/* p 2^n for integral n, with 2^n built in the exponent bits: exact for n in [-126, 127]; below, 0 (where the
 * product would be subnormal or 0: flushed), above, inf. */
INLINE vf vldexp(vf p, vf n)
{
    const vf under = _mm256_cmp_ps(n, vset(-126.0f), _CMP_LT_OQ), over = _mm256_cmp_ps(n, vset(127.0f), _CMP_GT_OQ);
    n = _mm256_min_ps(vset(127.0f), _mm256_max_ps(vset(-126.0f), n));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const vf r = _mm256_andnot_ps(under, vmul(p, _mm256_castsi256_ps(e)));
    return _mm256_blendv_ps(r, vset(INFINITY), over);
}
INLINE vf vfloor(vf y) { return _mm256_floor_ps(y); }
INLINE vf vfraction(vf y) { return vsub(y, vfloor(y)); }

INLINE vf vrcp(vf x) { return vdiv(vset(1.0f), x); }
INLINE vf vreverse(vf a) { return _mm256_permutevar8x32_ps(a, _mm256_set_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }

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

/* out[4 t + g] = r[g][t] for W steps t of 4 rows: the classic 4 x 8 transpose. */
INLINE void vstore_interleaved4(float *out, const vf *r)
{
    const vf a_lo = _mm256_unpacklo_ps(r[0], r[1]), a_hi = _mm256_unpackhi_ps(r[0], r[1]);
    const vf b_lo = _mm256_unpacklo_ps(r[2], r[3]), b_hi = _mm256_unpackhi_ps(r[2], r[3]);
    const vf t04 = _mm256_shuffle_ps(a_lo, b_lo, 0x44), t15 = _mm256_shuffle_ps(a_lo, b_lo, 0xEE);
    const vf t26 = _mm256_shuffle_ps(a_hi, b_hi, 0x44), t37 = _mm256_shuffle_ps(a_hi, b_hi, 0xEE);
    vstore(out, _mm256_permute2f128_ps(t04, t15, 0x20));
    vstore(out + 8, _mm256_permute2f128_ps(t26, t37, 0x20));
    vstore(out + 16, _mm256_permute2f128_ps(t04, t15, 0x31));
    vstore(out + 24, _mm256_permute2f128_ps(t26, t37, 0x31));
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
/* beyond +-300 the result is 0 or inf anyway; the clamp keeps the conversion to int defined */
INLINE vf vldexp(vf p, vf n) { return ldexpf(p, (int)fmaxf(-300.0f, fminf(300.0f, n))); }
INLINE vf vfloor(vf y) { return floorf(y); }
INLINE vf vfraction(vf y) { return y - floorf(y); }
INLINE vf vrcp(vf x) { return 1.0f / x; }
INLINE vf vreverse(vf a) { return a; }
INLINE vf vsum_lanes(const vf *p) { return p[0]; }
INLINE void vstore_interleaved4(float *out, const vf *r)
{
    for (int g = 0; g < 4; g++) out[g] = r[g];
}
#endif

INLINE vf vexp2_fraction(vf f)  /* 2^f for f in [0, 1) */
{
    vf p = vfma(vset(EXP2_C6), f, vset(EXP2_C5));
    p = vfma(p, f, vset(EXP2_C4));
    p = vfma(p, f, vset(EXP2_C3));
    p = vfma(p, f, vset(EXP2_C2));
    p = vfma(p, f, vset(EXP2_C1));
    return vfma(p, f, vset(1.0f));
}

/* 2^y for any finite y (|y| >= 2^23 is integral: fraction 0). The hot loops take exp(dt A) as
 * 2^(dt * (A log2 e)): that exponent carries a relative rounding error of about 2^-23, so the result is within
 * |dt A| 2^-23 (relative) of exp of the exact product, the same order as rounding dt * A itself (what the
 * reference does before its exp), and it saves the range reduction. */
INLINE vf vexp2(vf y)
{
#ifdef VLDEXP_FLOORS
    return vldexp(vexp2_fraction(vfraction(y)), y);
#else
    const vf n = vfloor(y);
    return vldexp(vexp2_fraction(vsub(y, n)), n);
#endif
}

/* exp(x) to about 1 ulp for the elementwise parts: floor(x log2 e) and the remainder with ln 2 in two parts
 * (LN2_HI has few bits, so n LN2_HI is exact); clamped where exp is 0 or inf in float anyway (and where the
 * remainder would lose accuracy); NaN passes (max and min return their second operand on NaN). */
#define LN2_HI 0.693359375f
#define LN2_LO (-2.12194440e-4f)
INLINE vf vexp(vf x)
{
    x = vmin(vset(89.0f), vmax(vset(-104.0f), x));
    const vf n = vfloor(vmul(x, vset(LOG2E)));
    vf r = vfma(n, vset(-LN2_HI), x);
    r = vfma(n, vset(-LN2_LO), r);
    return vldexp(vexp2_fraction(vmul(r, vset(LOG2E))), n);
}

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

/* A row of L steps read and written backwards in time: the W values from step t of the reversed row (row[L-1-t],
 * row[L-2-t], ...), n of them left (zeros past them when loading). */
INLINE vf vload_rev(const float *row, int64_t L, int64_t t, int64_t n)
{
    if (n >= W) return vreverse(vload(row + L - t - W));
    float tmp[W] = {0};
    for (int64_t j = 0; j < n; j++) tmp[j] = row[L - 1 - t - j];
    return vload(tmp);
}

INLINE void vstore_rev(float *row, int64_t L, int64_t t, vf a, int64_t n)
{
    if (n >= W) {
        vstore(row + L - t - W, vreverse(a));
        return;
    }
    float tmp[W];
    vstore(tmp, a);
    for (int64_t j = 0; j < n; j++) row[L - 1 - t - j] = tmp[j];
}

/* G <= 4 rows' first n <= W steps to and from a time-major layout, row g's step t at p[t st + g] (a (batch, L,
 * channels) tensor seen from its channel dg: st = channels); loads give zeros past n. */
INLINE void vload_tmajor(const float *p, int64_t st, int64_t n, const int G, vf *r)
{
#ifdef HAVE_TMAJOR4
    if (G == 4 && n >= W) {
        vload_tmajor4(p, st, r);
        return;
    }
#endif
    float tmp[4 * W] = {0};
    for (int64_t t = 0; t < n && t < W; t++)
        for (int g = 0; g < G; g++) tmp[g * W + t] = p[t * st + g];
    for (int g = 0; g < G; g++) r[g] = vload(tmp + g * W);
}

INLINE void vstore_tmajor(float *p, int64_t st, int64_t n, const int G, const vf *r)
{
#ifdef HAVE_TMAJOR4
    if (G == 4 && n >= W) {
        vstore_tmajor4(p, st, r);
        return;
    }
#endif
    float tmp[4 * W];
    for (int g = 0; g < G; g++) vstore(tmp + g * W, r[g]);
    for (int64_t t = 0; t < n && t < W; t++)
        for (int g = 0; g < G; g++) p[t * st + g] = tmp[g * W + t];
}

/* The streaming kernels (conv, GELU) fetch what they read and write next into L2 while they compute: called
 * for every W floats of a stream (t steps by W), it fetches p[t]'s cache line once per 16 floats. Inside a
 * training step those streams come cold from the matrix product before them, which the hardware prefetchers
 * alone did not hide (measured in the original's step: conv forward 53 -> 35 ms, backward 51 -> 26, GELU 41
 * -> 33, forward and backward; the outputs unchanged). */
INLINE void fetch_ahead(const float *p, int64_t t, int write)
{
    if (t % 16 >= W) return;
    if (write)
        __builtin_prefetch(p + t, 1, 2);
    else
        __builtin_prefetch(p + t, 0, 2);
}

/* Threads: each exported kernel runs one OpenMP parallel region of the requested size, on the worker threads
 * torch's own operators use (the library links the libgomp that torch has loaded), so that a kernel right
 * after a matrix product finds them awake instead of competing with them for the cores. Built without
 * OpenMP, the region is this thread alone. */
#ifdef _OPENMP
#include <omp.h>
INLINE int thread_index(void) { return omp_get_thread_num(); }
INLINE int thread_count(void) { return omp_get_num_threads(); }
#else
INLINE int thread_index(void) { return 0; }
INLINE int thread_count(void) { return 1; }
#endif

/* Thread i of n's share [*a, *b) of [0, size): contiguous, bounds multiples of unit (the last one ends at size). */
INLINE void thread_share(int64_t size, int64_t unit, int i, int n, int64_t *a, int64_t *b)
{
    const int64_t units = (size + unit - 1) / unit;
    *a = units * i / n * unit;
    *b = units * (i + 1) / n * unit;
    if (*a > size) *a = size;
    if (*b > size) *b = size;
}

/* log(1 + e) for e in [0, 1]: 2 atanh(s) with s = e / (2 + e) <= 1/3, whose odd series converges by 1/9 a
 * term; exact in relative terms for tiny e, where forming 1 + e would lose e's digits. */
INLINE vf vlog1p_unit(vf e)
{
    const vf s = vmul(e, vrcp(vadd(vset(2.0f), e))), s2 = vmul(s, s);
    vf p = vfma(vset(1.0f / 15), s2, vset(1.0f / 13));
    p = vfma(p, s2, vset(1.0f / 11));
    p = vfma(p, s2, vset(1.0f / 9));
    p = vfma(p, s2, vset(1.0f / 7));
    p = vfma(p, s2, vset(1.0f / 5));
    p = vfma(p, s2, vset(1.0f / 3));
    p = vfma(p, s2, vset(1.0f));
    return vmul(vadd(s, s), p);
}

/* exp(-|x|), in (0, 1]: what sigmoid and softplus are computed from without overflow. */
INLINE vf vexp_neg_abs(vf x) { return vexp(vmin(x, vsub(vzero(), x))); }

/* 1 / (1 + exp(-x)) from e = exp(-|x|) (vexp_neg_abs): x >= 0 ? 1 / (1 + e) : e / (1 + e). Separate from
 * vsigmoid so that a loop can take the exps in a loop of their own (see scan.c's group_prologue). */
INLINE vf vsigmoid_of(vf x, vf e) { return vmul(vselect_nonneg(x, vset(1.0f), e), vrcp(vadd(vset(1.0f), e))); }

INLINE vf vsigmoid(vf x) { return vsigmoid_of(x, vexp_neg_abs(x)); }


#endif
