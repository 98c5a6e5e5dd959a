"""Statistics for the ablation report: paired t intervals over seeds, a pooled seed variance, Holm's
family-wise adjustment, simultaneous (Bonferroni) intervals, the rule that turns an interval into a verdict,
2^k factorial designs with per-cell (Welch-Satterthwaite) variances, collapse rates with exact binomial
intervals, and the smallest effect a design detects.

Why this shape: a matrix is trained with 2-3 seeds, seed k of every variant sharing seed k, so an effect
is a set of paired per-seed differences in dB whose own variance has only 1-2 degrees of freedom. In a
single-toggle matrix the seed-to-seed noise of a paired difference is assumed to be the same for every
difference, which lets the variance be pooled across them (many more degrees of freedom, much narrower
intervals); since the differences of a matrix share its reference run, the pooling goes through the
additive variants x seeds model (pooled_variance) rather than a plain sum of within-effect squares.
A factorial's cells are not alike: a cell where some seeds collapsed to one colour has a seed spread ten
times the others', so its contrasts use each cell's own variance (Welch-Satterthwaite), not a pooled one.
A matrix tests many differences at once: labels ("measured") come from Holm-adjusted tests, and a verdict
that reads where an interval ends (a severity band) reads a simultaneous interval, which holds for every
effect of the family at once; Holm's step-down intervals do not.

Pure numpy / scipy.stats; no torch, no pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
# Level bands of |effect| in dB: small < SMALL_DB <= moderate < LARGE_DB <= large.
SMALL_DB, LARGE_DB = 0.3, 1.0
LEVELS = ("small", "moderate", "large")

NO_EFFECT = "no effect in this protocol"
NO_RUNS = "not tested (no runs)"
ONE_SEED = "not tested (one seed)"
NOT_MEASURED = "not measured"
MEASURED_UNCLAIMED = "measured (not in the seed audit)"
CONFIRMED = "confirmed"
OVERSTATED = "overstated"
UNDERSTATED = "understated"
CONTRADICTED = "contradicted"
DIRECTION_ONLY = "direction only"
# Every verdict string; NO_EFFECT may carry a " (reason)" suffix.
VERDICTS = (NO_EFFECT, NO_RUNS, ONE_SEED, NOT_MEASURED, MEASURED_UNCLAIMED, CONFIRMED, OVERSTATED, UNDERSTATED,
            CONTRADICTED, DIRECTION_ONLY)


@dataclass(frozen=True)
class Interval:
    """A mean with its t interval: `p` is the two-sided p-value of mean == 0 (Holm-adjusted when it comes
    from adjusted_intervals or holm_family), `level` the confidence of [low, high]; `df` may be fractional
    (Welch-Satterthwaite). nan where it cannot be computed."""

    mean: float
    low: float
    high: float
    n: int
    df: float
    se: float
    p: float
    level: float

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies strictly on one side of 0 (False when it is nan)."""
        return bool(self.low > 0.0 or self.high < 0.0)


# ------------------------------------------------------------------------------------------ intervals


def _values(values: dict[int, float] | list[float]) -> list[float]:
    return [float(x) for x in (values.values() if isinstance(values, dict) else values)]


def _is_bit_identical(values: list[float]) -> bool:
    return bool(values) and all(x == 0.0 for x in values)


def _mean_ss(values: list[float]) -> tuple[float, float]:
    """Mean and sum of squared deviations (plain Python: faster than numpy for 2-3 seeds)."""
    mean = math.fsum(values) / len(values)
    return mean, math.fsum((x - mean) ** 2 for x in values)


def _p_values(mean, se, df):
    """Two-sided t p-values of mean == 0, vectorised. se == 0 gives p = 0 (mean != 0) or 1 (mean == 0:
    nothing speaks against the null); df < 1 or a non-finite se gives nan."""
    mean, se, df = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (mean, se, df)))
    ok = (df >= 1) & np.isfinite(se)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2.0 * stats.t.sf(np.abs(mean) / se, np.where(ok, df, 1.0))
    p = np.where((se == 0) & (mean == 0), 1.0, p)
    return np.where(ok, p, np.nan)


def _bounds(mean, se, df, level):
    """Vectorised t interval ends at confidence `level`; nan where df < 1 or se is not finite."""
    mean, se, df, level = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (mean, se, df, level)))
    ok = (df >= 1) & np.isfinite(se)
    half = np.where(se == 0, 0.0, stats.t.ppf(0.5 + level / 2.0, np.where(ok, df, 1.0)) * se)
    return np.where(ok, mean - half, np.nan), np.where(ok, mean + half, np.nan)


def _usable(pooled: tuple[float, int] | None) -> bool:
    return pooled is not None and pooled[1] >= 1 and math.isfinite(pooled[0])


def _additive_residual(rows: list[dict[int, float]]) -> tuple[float, int]:
    """Residual sum of squares and df of the additive rows x seeds model (row + seed effects) fitted to
    a possibly incomplete table by least squares."""
    seeds = sorted({s for r in rows for s in r})
    if len(seeds) < 2 or len(rows) < 2:
        return 0.0, 0
    if all(len(r) == len(seeds) for r in rows):  # complete table: closed form
        y = np.array([[r[s] for s in seeds] for r in rows], dtype=float)
        resid = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
        return float(np.sum(resid ** 2)), (len(rows) - 1) * (len(seeds) - 1)
    col = {s: j for j, s in enumerate(seeds)}
    cells = [(i, col[s], v) for i, r in enumerate(rows) for s, v in r.items()]
    X = np.zeros((len(cells), len(rows) + len(seeds)))
    for k, (i, j, _) in enumerate(cells):
        X[k, i] = X[k, len(rows) + j] = 1.0
    y = np.array([v for _, _, v in cells])
    beta, _, rank, _ = np.linalg.lstsq(X, y, rcond=None)
    return float(np.sum((y - X @ beta) ** 2)), len(cells) - int(rank)


def pooled_variance(effects: list[dict[int, float]], shared_reference: bool = True) -> tuple[float, int]:
    """Pooled variance of one per-seed paired effect across the effects of one matrix ({seed: value}
    each), and its degrees of freedom. Why: 2-3 seeds leave each effect 1-2 df; under the assumption that
    every paired difference of a matrix has the same seed noise, pooling gives many.

    shared_reference=True (one-at-a-time, leave-one-out, improvements: every effect is a variant minus
    the same reference run of each seed). The effects are then correlated through the reference, and
    simply adding their within-effect squares would mostly measure the reference's own seed-to-seed
    wobble again and again (the family-wise error rate of a null matrix comes out near 0.09 instead of
    0.05 at 2-3 seeds). Instead the reference is put back as an all-zero row, the additive variants x seeds
    model is fitted (subtracting the reference only shifts each seed's column, which that model absorbs,
    so its residuals are those of the raw runs), and the variance of a paired difference is twice the
    per-run residual variance. With complete data, df = sum(n_i - 1) all the same.
    For a cumulative chain (step k minus step k-1), pass the per-seed cumulative sums (step k minus
    step 0), which share step 0 as their reference.

    shared_reference=False (effects that share no run): the within-effect squares summed over effects,
    over df = sum(n_i - 1).

    Effects with n < 2 contribute no df of their own; bit-identical effects (every seed exactly 0.0)
    contribute nothing: their runs did not differ at all, which says nothing about the seed noise.
    (nan, 0) when nothing is left.
    """
    kept = [e if isinstance(e, dict) else dict(enumerate(e)) for e in effects]
    kept = [e for e in kept if e and not _is_bit_identical(_values(e))]
    if shared_reference:
        if not kept:
            return math.nan, 0
        reference = {s: 0.0 for e in kept for s in e}
        ss, df = _additive_residual([reference, *kept])
        return (2.0 * ss / df, df) if df else (math.nan, 0)
    ss, df = 0.0, 0
    for effect in kept:
        v = _values(effect)
        if len(v) >= 2:
            ss += _mean_ss(v)[1]
            df += len(v) - 1
    return (ss / df, df) if df else (math.nan, 0)


def t_interval(values: dict[int, float] | list[float], level: float = 0.95,
               pooled: tuple[float, int] | None = None) -> Interval:
    """Mean and t interval of per-seed values; with `pooled` (var, df), df >= 1, the standard error uses
    the pooled variance and its df instead of this effect's own (an unusable pooled, e.g. (nan, 0), is
    ignored). n == 0 -> all nan; n == 1 without pooled -> low/high/p nan."""
    v = _values(values)
    n = len(v)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, 0, math.nan, math.nan, level)
    mean, ss = _mean_ss(v)
    if _usable(pooled):
        se, df = math.sqrt(pooled[0] / n), int(pooled[1])
    elif n >= 2:
        se, df = math.sqrt(ss / (n - 1) / n), n - 1
    else:
        se, df = math.nan, 0
    low, high = _bounds(mean, se, df, level)
    return Interval(mean, float(low), float(high), n, df, se, float(_p_values(mean, se, df)), level)


def holm(pvalues: list[float], alpha: float = ALPHA) -> list[float]:
    """Holm-adjusted p-values: sorted ascending, p_(r) * (m - r + 1), made non-decreasing, capped at 1 (the
    values of statsmodels' multipletests, method "holm", which a test checks; computed here because that
    function calls gc.collect() on every call, a fifth of a second each with torch loaded, and a report makes
    dozens of calls). nan is kept as nan and left out of the family (it does not count in m). ``alpha`` does
    not change adjusted p-values; it is kept for the callers that pass it."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        raw = p[ok]
        order = np.argsort(raw, kind="stable")
        m = len(raw)
        stepped = np.minimum(1.0, np.maximum.accumulate(raw[order] * (m - np.arange(m))))
        adjusted = np.empty(m)
        adjusted[order] = stepped
        out[ok] = adjusted
    return [float(x) for x in out]


def _family(effects: list[dict[int, float]], alpha: float, pool: bool, shared_reference: bool,
            own: list[bool] | None = None) -> tuple[list[Interval | None], list[int], list[Interval]]:
    """The plain intervals of the effects outside the family, the family's positions and its raw (level
    1 - alpha) intervals, with the pooled variance where `pool`. See adjusted_intervals for who is in."""
    vals = [_values(e) for e in effects]
    identical = [_is_bit_identical(v) for v in vals]
    own = list(own) if own is not None else [False] * len(effects)
    pooled = pooled_variance([e for e, same, alone in zip(effects, identical, own) if not same and not alone],
                             shared_reference) if pool else None
    use_pool = _usable(pooled)
    out: list[Interval | None] = [None] * len(effects)
    testable, raw = [], []
    for i, v in enumerate(vals):
        pooled_here = use_pool and not own[i]
        if identical[i] or not v or (len(v) < 2 and not pooled_here):
            out[i] = t_interval(v, 1.0 - alpha)
            continue
        testable.append(i)
        raw.append(t_interval(v, 1.0 - alpha, pooled=pooled if pooled_here else None))
    return out, testable, raw


def _arrays(intervals: list[Interval]):
    return (np.array([iv.mean for iv in intervals], dtype=float), np.array([iv.se for iv in intervals], dtype=float),
            np.array([iv.df for iv in intervals], dtype=float))


def holm_family(intervals: list[Interval], alpha: float = ALPHA) -> list[Interval]:
    """Holm's step-down over a family of intervals (each with its own se and df): the chance of any false
    "measured" in the family is at most alpha. Rank r by raw p (1 = smallest), m members: the interval is the
    t interval at confidence 1 - alpha/(m - r + 1) and its `p` the Holm-adjusted p-value. Holm stops at the
    first r whose raw p >= alpha/(m - r + 1); every later member is then not rejected even where its own
    step's interval would exclude 0, so those intervals use the stopping step's confidence instead, which
    makes them include 0. Hence "interval excludes 0" <=> "Holm-adjusted p < alpha", always. Members whose
    p is nan (no se) are kept as they are and are not counted in m.

    These intervals say which effects are non-zero; they are NOT simultaneous: a later step's interval is
    narrower than the family needs, so the chance that some member misses its true value can be far above
    alpha (bonferroni_family is the one whose ends hold together)."""
    ok, members = _family_members(intervals)
    if not ok:
        return list(intervals)
    mean, se, df = _arrays(members)
    m = len(members)
    raw_p = _p_values(mean, se, df)
    adj_p = np.array(holm(list(raw_p), alpha))
    steps = np.empty(m)
    stopped_at = None
    for rank, j in enumerate(np.argsort(raw_p, kind="stable"), start=1):
        step = 1.0 - alpha / (m - rank + 1)
        if stopped_at is None and not raw_p[j] < alpha / (m - rank + 1):
            stopped_at = step
        steps[j] = step if stopped_at is None else stopped_at
    low, high = _bounds(mean, se, df, steps)
    # the widening above already puts a non-rejected interval on 0; this only guards float rounding
    rejected = adj_p < alpha
    low = np.where(rejected, low, np.minimum(low, 0.0))
    high = np.where(rejected, high, np.maximum(high, 0.0))
    return _with_members(intervals, ok, members, mean, low, high, se, adj_p, steps)


def bonferroni_family(intervals: list[Interval], alpha: float = ALPHA) -> list[Interval]:
    """Simultaneous intervals for a family (Bonferroni): each member at confidence 1 - alpha/m, m the members
    with a p-value, so that every member covers its true value at once with probability >= 1 - alpha
    (whatever their correlation). `p` is the Bonferroni-adjusted p-value. What a verdict that reads an
    interval's ends (a severity band) needs; conservative (Šidák's 1 - (1 - alpha)^(1/m) differs in the
    third decimal of the level)."""
    ok, members = _family_members(intervals)
    if not ok:
        return list(intervals)
    mean, se, df = _arrays(members)
    level = 1.0 - alpha / len(members)
    low, high = _bounds(mean, se, df, level)
    p = np.minimum(1.0, _p_values(mean, se, df) * len(members))
    return _with_members(intervals, ok, members, mean, low, high, se, p, np.full(len(members), level))


def _family_members(intervals: list[Interval]) -> tuple[list[int], list[Interval]]:
    """The positions and intervals of a family's members: those with a p-value (an se to adjust)."""
    ok = [i for i, iv in enumerate(intervals) if not math.isnan(iv.p)]
    return ok, [intervals[i] for i in ok]


def _with_members(intervals, ok, members, mean, low, high, se, p, levels) -> list[Interval]:
    """``intervals`` with each member at ``ok`` replaced by its adjusted interval."""
    out = list(intervals)
    for k, i in enumerate(ok):
        out[i] = Interval(float(mean[k]), float(low[k]), float(high[k]), members[k].n, members[k].df,
                          float(se[k]), float(p[k]), float(levels[k]))
    return out


def adjusted_intervals(effects: list[dict[int, float]], alpha: float = ALPHA, pool: bool = True,
                       shared_reference: bool = True, own: list[bool] | None = None) -> list[Interval]:
    """Family-wise intervals for the effects of one matrix (Holm step-down, holm_family), so that the chance of
    any effect of a null matrix being called "measured" is at most alpha.

    With `pool`, standard errors use pooled_variance(effects, shared_reference) (see there). The family
    is the testable effects: n >= 2, or n >= 1 when the pooled variance has df >= 1; bit-identical effects
    (every seed exactly 0.0) are neither pooled nor in the family (not a hypothesis: the runs were
    identical) and get their plain interval, as do untestable ones (nan low/high/p).

    ``own``: effects that keep their own seed variance (df n - 1) and stay out of the pool, still members
    of the family. Why: an effect whose runs include a collapsed seed has a spread ten times the others';
    pooled, it would widen every interval of the matrix while claiming the df of all of them (the same
    failure the factorial's Welch contrasts avoid).
    """
    out, testable, raw = _family(effects, alpha, pool, shared_reference, own)
    for i, interval in zip(testable, holm_family(raw, alpha)):
        out[i] = interval
    return out  # type: ignore[return-value]


def simultaneous_intervals(effects: list[dict[int, float]], alpha: float = ALPHA, pool: bool = True,
                           shared_reference: bool = True, own: list[bool] | None = None) -> list[Interval]:
    """The same family as adjusted_intervals, with Bonferroni's simultaneous intervals (bonferroni_family):
    what a severity verdict reads. Each contains the effect's Holm interval (same se and df, a level at
    least as high), so an interval here that excludes 0 belongs to a Holm-measured effect."""
    out, testable, raw = _family(effects, alpha, pool, shared_reference, own)
    for i, interval in zip(testable, bonferroni_family(raw, alpha)):
        out[i] = interval
    return out  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------ power


def detectable_effect(se: float, df: float, alpha: float = ALPHA, power: float = 0.8) -> float:
    """The smallest true effect (dB) that a two-sided t test at level `alpha` (already divided for the
    family: Holm's first step is alpha/m) rejects with probability `power`, for an estimate with standard
    error `se` and `df` degrees of freedom: the noncentral t distribution (noncentrality effect/se), solved
    for the effect. nan where se or df cannot carry a test."""
    if not (math.isfinite(se) and se > 0 and math.isfinite(df) and df >= 1):
        return math.nan
    crit = stats.t.ppf(1.0 - alpha / 2.0, df)

    def shortfall(effect: float) -> float:
        nc = effect / se
        # the wrong-sign tail, written as an upper tail: scipy's nct.cdf returns nan far out in the lower one
        return stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc) - power

    high = se * (crit + 3.0)
    while shortfall(high) < 0:  # a few doublings at most: power rises to 1 as the effect grows
        high *= 2.0
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-6))


def detectable_by_seeds(se: float, df: float, seeds: int, at: tuple[int, ...] = (5, 8), alpha: float = ALPHA,
                        power: float = 0.8) -> dict[int, float]:
    """detectable_effect at the design's own `seeds` and at each count in `at`, from the same variance
    estimate: the standard error scales with 1/sqrt(seeds) and the degrees of freedom with seeds - 1 (true
    of the pooled additive model and of Welch-Satterthwaite alike, where every cell has the same seeds)."""
    out = {}
    for k in dict.fromkeys((seeds, *at)):
        if seeds < 2 or k < 2:
            out[k] = math.nan
            continue
        out[k] = detectable_effect(se * math.sqrt(seeds / k), df * (k - 1) / (seeds - 1), alpha, power)
    return out


# ------------------------------------------------------------------------------------------ rates


@dataclass(frozen=True)
class Rate:
    """k events in n trials (collapsed seeds of finished seeds) with the exact (Clopper-Pearson) interval at
    `level`: it covers the true rate at least `level` of the time for every n and rate, which matters at
    n = 2-3 where the normal approximation is far off. nan where n == 0."""

    k: int
    n: int
    rate: float
    low: float
    high: float
    level: float


def rate_interval(k: int, n: int, level: float = 0.95) -> Rate:
    if n == 0:
        return Rate(k, 0, math.nan, math.nan, math.nan, level)
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return Rate(k, n, k / n, float(ci.low), float(ci.high), level)


# ------------------------------------------------------------------------------------------ verdicts


def band(x: float) -> str:
    """The level band of |x| in dB."""
    x = abs(x)
    return "small" if x < SMALL_DB else "moderate" if x < LARGE_DB else "large"


def verdict(interval: Interval | None, claimed_level: str | None, bit_identical: bool = False,
            reason: str = "", ends: Interval | None = None) -> dict:
    """The rule that turns an interval into words: {"verdict": str, "level": str | None}.

    `interval` decides the label (its Holm interval: measured or not, and the sign); `ends` is the
    interval whose ends the severity words read (the effect's simultaneous interval, which contains its
    Holm interval); without `ends` the label's interval is read for both.

    - bit_identical (every seed's effect exactly 0.0): "no effect in this protocol" (+ " (reason)").
    - no interval or n == 0: "not tested (no runs)"; n < 2 and no pooled df: "not tested (one seed)".
    - interval includes 0: "not measured".
    - interval excludes 0: measured. level = the band of |effect| when both ends lie in the same band,
      else None. Against claimed_level (one of LEVELS, or None):
        None -> "measured (not in the seed audit)";
        negative effect while a level was claimed -> "contradicted";
        whole interval inside the claimed band -> "confirmed";
        whole interval below the claimed band -> "overstated"; whole interval above it -> "understated";
        interval overlapping the claimed band without lying inside it -> "direction only".
      (An interval spanning several bands that lies entirely outside the claimed band is over- or
      understated, not "direction only": the claim is refuted whichever band the truth is in.)
      Where the ends reach across 0 (measured by Holm, too wide to hold at once with the family): no
      level, and "overstated" only when every value between the ends lies below the claimed band, else
      "direction only".
    """
    if claimed_level is not None and claimed_level not in LEVELS:
        raise ValueError(f"claimed_level must be one of {LEVELS} or None, not {claimed_level!r}")
    if bit_identical:
        return {"verdict": f"{NO_EFFECT} ({reason})" if reason else NO_EFFECT, "level": None}
    if interval is None or interval.n == 0:
        return {"verdict": NO_RUNS, "level": None}
    if interval.n < 2 and interval.df < 1:
        return {"verdict": ONE_SEED, "level": None}
    if not interval.excludes_zero:
        return {"verdict": NOT_MEASURED, "level": None}
    read = ends if ends is not None and not math.isnan(ends.low) else interval
    if claimed_level is not None and interval.high < 0:
        return {"verdict": CONTRADICTED, "level": _level(read)}
    if not read.excludes_zero:
        if claimed_level is None:
            return {"verdict": MEASURED_UNCLAIMED, "level": None}
        reach = LEVELS.index(band(max(abs(read.low), abs(read.high))))
        return {"verdict": OVERSTATED if reach < LEVELS.index(claimed_level) else DIRECTION_ONLY, "level": None}
    level = _level(read)
    if claimed_level is None:
        return {"verdict": MEASURED_UNCLAIMED, "level": level}
    rank = LEVELS.index
    lo_band, hi_band = sorted((band(read.low), band(read.high)), key=rank)
    claim = rank(claimed_level)
    if rank(lo_band) == rank(hi_band) == claim:
        word = CONFIRMED
    elif rank(hi_band) < claim:
        word = OVERSTATED
    elif rank(lo_band) > claim:
        word = UNDERSTATED
    else:
        word = DIRECTION_ONLY
    return {"verdict": word, "level": level}


def bounded_below(ends: Interval, claimed_level: str | None) -> str:
    """A claim read off an effect that was not measured (its interval includes 0): OVERSTATED when every value
    between the simultaneous ends lies below the claimed band (the claim fails whichever value is true), else
    NOT_MEASURED. Only a positive claim of a moderate or large effect can be bounded below its band."""
    if claimed_level is None or claimed_level == "small" or math.isnan(ends.low) or math.isnan(ends.high):
        return NOT_MEASURED
    edge = SMALL_DB if claimed_level == "moderate" else LARGE_DB
    return OVERSTATED if ends.high < edge else NOT_MEASURED


def _level(interval: Interval) -> str | None:
    """The band both ends lie in (None when they straddle a band edge or 0)."""
    if not interval.excludes_zero:
        return None
    low, high = band(interval.low), band(interval.high)
    return low if low == high else None


def rule_text() -> str:
    """The verdict rule in words, with its constants, for the report."""
    a = f"{ALPHA:g}"
    return (
        f"Each effect of a single-toggle matrix is the mean over seeds of the paired per-seed difference in PSNR "
        f"(dB), with a t interval whose seed variance is pooled across the differences of its matrix (assumption: "
        f"every paired difference of a matrix has the same seed-to-seed noise; the pooled variance comes from the "
        f"additive variants x seeds model, so the reference run that all differences share is counted once). "
        f"Labels are Holm-adjusted so that the chance of any false 'measured' in a family is at most {a}: the "
        f"effect is 'measured' when its Holm interval excludes 0 (equivalently Holm-adjusted p < {a}) and 'not "
        f"measured' otherwise; with one seed and no pooled variance it is 'not tested (one seed)', and when every "
        f"seed's effect is exactly 0.0 'no effect in this protocol'. Holm's intervals say which effects are not "
        f"zero but do not hold together, so where a verdict reads an interval's ends it reads the effect's "
        f"simultaneous interval instead (Bonferroni: confidence 1 - {a}/m for a family of m, so that every "
        f"interval of the family covers its true value at once with probability at least 1 - {a}). "
        f"A measured effect has a level when its whole simultaneous interval lies in one band of |effect|: "
        f"small < {SMALL_DB:.1f} dB <= moderate < {LARGE_DB:.1f} dB <= large. Against the seed audit's claimed "
        f"level, a simultaneous interval inside the claimed band is 'confirmed', one entirely below it "
        f"'overstated', entirely above it 'understated', a measured negative effect 'contradicted', one "
        f"overlapping the claimed band without lying inside it 'direction only', and a measured effect the audit "
        f"did not claim 'measured (not in the seed audit)'. A factorial's contrasts (main effects, interactions, "
        f"Shapley shares, the gap, the group leave-one-outs) are linear contrasts of cell means whose variance "
        f"sums each cell's own seed variance (Welch-Satterthwaite degrees of freedom), not a variance pooled "
        f"over cells; their 'measured' labels are Holm-adjusted within each family (the four groups' shares, "
        f"main effects, leave-one-outs)."
    )


# ------------------------------------------------------------------------------------------ factorial designs

WELCH, POOLED = "welch", "pooled"


@dataclass(frozen=True)
class FactorialAnalysis:
    """A 2^k design over groups of differences: v(S) is the PSNR with the groups in S at the original's
    values and the rest at the notebook's. Every quantity is a linear contrast of cell means, with a t
    interval: `variance` "welch" (each cell's own seed variance, Welch-Satterthwaite df) or "pooled" (the
    residual variance of the additive cells x seeds model, one df for every contrast)."""

    groups: tuple[str, ...]
    residual_var: float  # additive cells x seeds model over the seeds every cell has (a diagnostic for welch)
    residual_df: int
    seeds: tuple[int, ...]  # the seeds every cell has (per-seed contrasts)
    cell_means: dict[frozenset, float]
    main_effects: dict[str, Interval]  # mean over the other groups' settings of v(S+g) - v(S)
    interactions: dict[tuple[str, str], Interval]  # (effect of a with b on) - (effect of a with b off), averaged
    shapley: dict[str, Interval]  # Shapley share of each group in v(all) - v(empty); they sum to `gap`
    gap: Interval  # v(all groups) - v(no group)
    shapley_per_seed: dict[str, dict[int, float]] = field(default_factory=dict)  # sums to gap_per_seed
    gap_per_seed: dict[int, float] = field(default_factory=dict)
    variance: str = WELCH
    cells: dict[frozenset, dict[int, float]] = field(default_factory=dict)  # every value each cell has, by seed
    borrowed: tuple[frozenset, ...] = ()  # welch: cells with one value, given the pooled within-cell variance
    level: float = 0.95
    donors: tuple[frozenset, ...] | None = None  # welch: the cells that pooled variance comes from (None: all)

    def contrast(self, weights: dict[frozenset, float]) -> Interval:
        """Any further contrast sum_c w_c * mean_c of this design (missing cells weigh 0), with the design's
        variance rule and level: e.g. a group leave-one-out, {all: +1, all minus g: -1}."""
        order = list(self.cell_means)
        W = np.array([[weights.get(c, 0.0) for c in order]])
        if self.variance == POOLED:
            return _pooled_contrasts(W, np.array([self.cell_means[c] for c in order]), self.residual_var,
                                     self.residual_df, len(self.seeds), self.level)[0]
        return welch_contrasts([tuple(self.cells[c].values()) for c in order], W, self.level,
                               _donor_mask(order, self.donors))[0]

    def per_seed(self, weights: dict[frozenset, float]) -> dict[int, float]:
        """The contrast on each seed every cell has (a seed's own cells), {seed: value}."""
        return {s: math.fsum(w * self.cells[c][s] for c, w in weights.items() if w) for s in self.seeds}


def _subsets(groups) -> list[frozenset]:
    return [frozenset(c) for r in range(len(groups) + 1) for c in combinations(groups, r)]


def shapley_weights(groups) -> dict[str, dict[frozenset, float]]:
    """Contrast weights (over all 2^k cells) of each group's Shapley share: the share of i is
    sum over S not containing i of |S|!(k-|S|-1)!/k! * (v(S+i) - v(S)). The weights of all groups sum
    to +1 on the full cell, -1 on the empty one and 0 elsewhere (efficiency)."""
    groups = tuple(groups)
    k = len(groups)
    out = {}
    for g in groups:
        w = {}
        for cell in _subsets(groups):
            if g in cell:
                s = len(cell) - 1
                w[cell] = math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k)
            else:
                s = len(cell)
                w[cell] = -math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k)
        out[g] = w
    return out


def _main_weights(groups, g) -> dict[frozenset, float]:
    h = 2.0 ** (len(groups) - 1)
    return {c: (1.0 if g in c else -1.0) / h for c in _subsets(groups)}


def _interaction_weights(groups, a, b) -> dict[frozenset, float]:
    h = 2.0 ** (len(groups) - 2)
    return {c: (1.0 if (a in c) == (b in c) else -1.0) / h for c in _subsets(groups)}


def factorial_weights(groups) -> dict[tuple, dict[frozenset, float]]:
    """Every contrast the report reads, by name: ("main", g), ("inter", (a, b)), ("shapley", g), ("gap", None)
    and ("loo", g) (the group leave-one-out: v(all) - v(all minus g)), each {cell: weight}."""
    groups = tuple(groups)
    full, empty = frozenset(groups), frozenset()
    out: dict[tuple, dict[frozenset, float]] = {("main", g): _main_weights(groups, g) for g in groups}
    out.update({("inter", ab): _interaction_weights(groups, *ab) for ab in combinations(groups, 2)})
    out.update({("shapley", g): w for g, w in shapley_weights(groups).items()})
    out[("gap", None)] = {full: 1.0, empty: -1.0}
    out.update({("loo", g): {full: 1.0, full - {g}: -1.0} for g in groups})
    return out


def factorial_contrasts(cell_stat: dict[frozenset, float], groups) -> dict[tuple, float]:
    """The named contrasts of factorial_weights on one number per cell (e.g. each cell's median): point
    values, no interval."""
    return {name: math.fsum(w * cell_stat[c] for c, w in weights.items())
            for name, weights in factorial_weights(groups).items()}


def _pooled_contrasts(W: np.ndarray, means: np.ndarray, rvar: float, rdf: int, n: int, level: float
                      ) -> list[Interval]:
    est = W @ means
    se = np.sqrt(rvar * np.sum(W ** 2, axis=1) / n) if n else np.full(len(W), np.nan)
    low, high = _bounds(est, se, rdf, level)
    p = _p_values(est, se, rdf)
    return [Interval(float(est[i]), float(low[i]), float(high[i]), n, rdf, float(se[i]), float(p[i]), level)
            for i in range(len(W))]


def within_cell_variance(samples: list[tuple[float, ...]]) -> tuple[float, int]:
    """The within-cell variance pooled over cells with two or more values, and its df sum(n_c - 1)."""
    ss, df = 0.0, 0
    for values in samples:
        if len(values) >= 2:
            ss += _mean_ss(list(values))[1]
            df += len(values) - 1
    return (ss / df, df) if df else (math.nan, 0)


def _donor_mask(order: list[frozenset], donors) -> list[bool] | None:
    return None if donors is None else [c in set(donors) for c in order]


def welch_contrasts(samples: list[tuple[float, ...]], W: np.ndarray, level: float = 0.95,
                    donors: list[bool] | None = None) -> list[Interval]:
    """Intervals for the contrasts sum_c W[j, c] * mean_c of cells with their own values (unequal counts
    allowed), each cell with its own variance s_c^2: var = sum_c W[j, c]^2 s_c^2 / n_c, degrees of freedom by
    Welch-Satterthwaite, (sum of terms)^2 / sum(term^2 / df). Why: a cell where some seeds collapsed has a
    seed spread far above the others', and a pooled variance would spread it over every contrast while
    claiming the df of all cells. A cell with one value has no variance of its own and borrows the pooled
    within-cell variance of the others (its terms share that estimate's df, so they enter Satterthwaite as
    one term); `donors` (a mask over the cells, default all) says which cells that pooled variance comes from.
    The pairing by seed is not used: that can only widen the intervals (a seed offset shared by every cell is
    counted as noise). `n` of each interval is the smallest count among its cells."""
    samples = [tuple(float(x) for x in v) for v in samples]
    if any(not v for v in samples):
        raise ValueError("every cell needs at least one value")
    W = np.atleast_2d(np.asarray(W, dtype=float))
    n = np.array([len(v) for v in samples], dtype=float)
    means = np.array([math.fsum(v) / len(v) for v in samples])
    own = n >= 2
    var = np.array([_mean_ss(list(v))[1] / (len(v) - 1) if len(v) >= 2 else math.nan for v in samples])
    pooled_var, pooled_df = within_cell_variance([v for i, v in enumerate(samples) if donors is None or donors[i]])
    used = W != 0
    with np.errstate(invalid="ignore"):
        terms = np.where(used, W ** 2 * np.where(own, var, pooled_var) / n, 0.0)  # contrasts x cells
    own_terms = np.where(own, terms, 0.0)
    shared = np.sum(np.where(own, 0.0, terms), axis=1)  # the borrowed cells: one estimate, one term
    total = own_terms.sum(axis=1) + shared
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = np.sum(own_terms ** 2 / np.where(own, n - 1, 1.0), axis=1) + \
            np.where(shared > 0, shared ** 2 / (pooled_df or np.nan), 0.0)
        df = np.where(denominator > 0, total ** 2 / denominator, 0.0)
    # no spread at all: a point interval, with the df of the cells involved
    still = np.isfinite(total) & (total == 0.0)
    df = np.where(still, (used & own) @ (n - 1) + np.where(shared > 0, pooled_df, 0.0), df)
    se = np.where(np.isfinite(total), np.sqrt(np.where(np.isfinite(total), total, 0.0)), np.nan)
    df = np.where(np.isfinite(total) & np.isfinite(df), df, 0.0)
    est = W @ means
    low, high = _bounds(est, se, df, level)
    p = _p_values(est, se, df)
    smallest = np.where(used, n, np.inf).min(axis=1)
    return [Interval(float(est[j]), float(low[j]), float(high[j]), int(smallest[j]) if used[j].any() else 0,
                     float(df[j]), float(se[j]), float(p[j]), level) for j in range(len(W))]


def _check_cells(cells: dict, groups: tuple[str, ...]) -> list[frozenset]:
    if len(set(groups)) != len(groups) or not groups:
        raise ValueError(f"groups must be distinct and non-empty: {groups}")
    order = _subsets(groups)
    missing = [sorted(c) for c in order if c not in cells]
    extra = [sorted(c) for c in cells if c not in set(order)]
    if missing or extra:
        raise ValueError(f"cells must be exactly the 2^{len(groups)} subsets of {groups}: "
                         f"missing {missing}, unexpected {extra}")
    empty = [sorted(c) for c in order if not cells[c]]
    if empty:
        raise ValueError(f"every cell needs at least one value: {empty} have none")
    return order


def factorial_analysis(cells: dict[frozenset, dict[int, float]], groups: tuple[str, ...],
                       level: float = 0.95, variance: str = WELCH, donors=None) -> FactorialAnalysis:
    """Main effects, two-way interactions, Shapley shares and the gap of a 2^k design.

    cells: for every subset S of groups (a frozenset of group names; all 2^k present) the per-seed PSNR
    of that configuration ({seed: value}, at least one each). Each quantity is a contrast sum_c w_c * mean_c;
    all its weights sum to 0, so seed offsets cancel where every cell has every seed.

    variance="welch" (default): each cell's mean over all its own values, each cell's own variance, Welch-
    Satterthwaite df (welch_contrasts; cells may have different seeds, e.g. after collapsed runs are left
    out; `donors`: the cells whose within-cell variance a one-value cell borrows, default all: e.g. not
    the cells whose seeds all collapsed, whose spread says nothing about a run that trains). variance="pooled":
    only seeds present in every cell are used (paired), the residual variance of
    the additive cells x seeds model with df (C-1)(n-1): var(contrast) = residual_var * sum w_c^2 / n.
    Intervals are not adjusted for multiplicity. The per-seed contrasts (on the seeds every cell has) and
    the Shapley shares sum to the gap exactly.
    """
    groups = tuple(groups)
    if variance not in (WELCH, POOLED):
        raise ValueError(f"variance must be {WELCH!r} or {POOLED!r}, not {variance!r}")
    order = _check_cells(cells, groups)
    seeds = tuple(sorted(set.intersection(*(set(cells[c]) for c in order))))
    n, C = len(seeds), len(order)
    y = np.array([[cells[c][s] for s in seeds] for c in order], dtype=float).reshape(C, n)  # cells x seeds
    rdf = (C - 1) * (n - 1) if n >= 2 else 0
    if rdf:
        resid = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
        rvar = float(np.sum(resid ** 2) / rdf)
    else:
        rvar = math.nan
    values = {c: tuple(float(cells[c][s]) for s in sorted(cells[c])) for c in order}
    named = factorial_weights(groups)
    names = [k for k in named if k[0] != "loo"]
    W = np.array([[named[k].get(c, 0.0) for c in order] for k in names])  # contrasts x cells
    if variance == POOLED:
        means = y.mean(axis=1) if n else np.full(C, np.nan)
        intervals = _pooled_contrasts(W, means, rvar, rdf, n, level)
    else:
        means = np.array([math.fsum(values[c]) / len(values[c]) for c in order])
        donors = None if donors is None else tuple(c for c in order if c in set(donors))
        intervals = welch_contrasts([values[c] for c in order], W, level, _donor_mask(order, donors))
    iv = dict(zip(names, intervals))
    per_seed = W @ y  # contrasts x seeds
    row = {name: i for i, name in enumerate(names)}
    return FactorialAnalysis(
        groups=groups, residual_var=rvar, residual_df=rdf, seeds=seeds,
        cell_means={c: float(means[i]) for i, c in enumerate(order)},
        main_effects={g: iv[("main", g)] for g in groups},
        interactions={ab: iv[("inter", ab)] for ab in combinations(groups, 2)},
        shapley={g: iv[("shapley", g)] for g in groups},
        gap=iv[("gap", None)],
        shapley_per_seed={g: dict(zip(seeds, map(float, per_seed[row[("shapley", g)]]))) for g in groups},
        gap_per_seed=dict(zip(seeds, map(float, per_seed[row[("gap", None)]]))),
        variance=variance, cells={c: {int(s): float(v) for s, v in sorted(cells[c].items())} for c in order},
        borrowed=tuple(c for c in order if len(values[c]) < 2) if variance == WELCH else (), level=level,
        donors=donors if variance == WELCH else None,
    )


def holm_by_name(intervals: dict, alpha: float = ALPHA) -> dict:
    """holm_family over a named family ({name: Interval} -> {name: Holm interval}), in the same order."""
    return dict(zip(intervals, holm_family(list(intervals.values()), alpha)))


def group_leave_one_out(analysis: FactorialAnalysis, alpha: float = ALPHA) -> dict[str, Interval]:
    """Each group's leave-one-out read off the factorial, v(all) - v(all minus g), with the design's variance
    rule, as one Holm family over the groups: a 'measured' label read from these intervals keeps the chance
    of any false one at alpha."""
    full = frozenset(analysis.groups)
    return holm_by_name({g: analysis.contrast({full: 1.0, full - {g}: -1.0}) for g in analysis.groups}, alpha)
