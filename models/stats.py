"""The project's statistics: every interval a job or report quotes, computed one way.

* :func:`wilson_interval`: 95 % Wilson score interval of a binomial proportion (a realised
  roll rate per risk band; small bands get honest, asymmetric intervals).
* :func:`t_interval`: mean, standard deviation and two-sided Student-t interval of the mean
  (the policy simulation's uplift over seeds).
* :func:`percentile_bootstrap`: 95 % percentile bootstrap interval of any statistic of a
  resample of units (accounts), reproducible from a seed; stratified (each group resampled
  within itself, e.g. an experiment's arm and its control) when strata are given.
* :func:`group_bootstrap_standard_errors`: bootstrap standard errors of statistics of rows,
  resampling whole groups (an account's rows together): the noise the calibration choice
  weighs a gain against.
* :func:`calibration_backtest`: predicted against realised rate per group (risk band) and over
  all rows, with the Wilson interval of each realised rate: the backtest behind ``rollrisk
  monitor`` and the strategy report's calibration section.
* :func:`jeffreys_test`: the Jeffreys (binomial) test of predicted against realised rate per
  risk grade, the back-test banks use for PD grades: the training report's calibration table.
* :func:`stability_noise`: what sampling noise alone gives a PSI (or CSI) between two
  samples of one distribution, its mean and the value it exceeds with a small probability:
  the sample-size-aware threshold of ``rollrisk monitor``.

Pure functions, no I/O. Callers add their own judgement on top (monitoring's ``act``/``ok``
verdict, a report's wording).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

WILSON_Z = 1.959963984540054  # two-sided 95 %: the normal quantile at 0.975
POWER_80_Z = 0.8416212335729143  # power 80 %: the normal quantile at 0.80
BOOTSTRAP_PERCENTILES = (2.5, 97.5)  # two-sided 95 %, written out so the edges are exact
ALL_ROWS = "all"  # the group name of the overall row of a calibration backtest
BACKTEST_COLUMNS = (
    "group",
    "accounts",
    "rolled",
    "predicted_mean",
    "realised_rate",
    "ci_lower",
    "ci_upper",
    "gap",
)


def wilson_interval(
    positives: ArrayLike, n: ArrayLike, z: float = WILSON_Z
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Wilson score interval of a binomial proportion ``positives / n`` (NaN where ``n`` is 0).

    ``positives`` may be fractional (a rate times ``n``), as when only the rate is at hand.
    """
    n_float = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.asarray(positives, dtype=np.float64) / n_float
        denominator = 1.0 + z**2 / n_float
        centre = (p + z**2 / (2 * n_float)) / denominator
        half = z * np.sqrt(p * (1 - p) / n_float + z**2 / (4 * n_float**2)) / denominator
    return centre - half, centre + half


def t_interval(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean, standard deviation and two-sided Student-t interval of the mean over the values.

    Returns ``mean, sd, ci_low, ci_high``; with fewer than two values only the mean is defined
    (the others are NaN).
    """
    from scipy import stats  # imported here: scipy is slow to import and most jobs never need it

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return {"mean": mean, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * sd / math.sqrt(len(x))
    return {"mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def percentile_bootstrap(
    statistic: Callable[[NDArray[np.int64]], float],
    n: int,
    samples: int,
    seed: int,
    strata: ArrayLike | None = None,
) -> tuple[float, float]:
    """95 % percentile bootstrap interval of ``statistic`` over ``n`` resampled units.

    Each of ``samples`` resamples draws ``n`` positions in ``0..n-1`` with replacement (one
    ``default_rng(seed)`` stream, so the interval is reproducible) and passes them to
    ``statistic``, which computes the figure on those rows of its own arrays. NaN, NaN when
    there is no unit to resample.

    With ``strata`` (one label per unit) the resample is stratified: each stratum's units are
    drawn from that stratum only, as many as it has, so every resample keeps the strata's
    sizes. This is the two-sample bootstrap of an A/B comparison (strata: arm and control): a
    small arm never vanishes from a resample, which a draw from the pooled units allows.
    """
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    if strata is None:
        draws = [statistic(rng.integers(0, n, n)) for _ in range(samples)]
    else:
        codes, _ = pd.factorize(np.asarray(strata))
        if codes.size != n:
            raise ValueError(f"strata has {codes.size} labels for {n} units")
        if (codes < 0).any():  # a unit without a stratum would never be drawn
            raise ValueError(f"strata has {int((codes < 0).sum())} missing label(s)")
        members = [np.flatnonzero(codes == code) for code in range(codes.max() + 1)]
        draws = [
            statistic(np.concatenate([m[rng.integers(0, m.size, m.size)] for m in members]))
            for _ in range(samples)
        ]
    low, high = np.percentile(draws, BOOTSTRAP_PERCENTILES)
    return float(low), float(high)


def group_bootstrap_draws(
    statistic: Callable[[NDArray[np.int64]], Sequence[float]],
    groups: ArrayLike,
    samples: int,
    seed: int,
) -> NDArray[np.float64]:
    """The figures ``statistic`` returns on each of ``samples`` resamples of groups: a matrix,
    one row per draw kept, one column per figure.

    Each draw picks as many groups as there are, with replacement (one ``default_rng(seed)``
    stream), and passes the row positions of the picked groups (every row of a group, a group
    picked twice twice) to ``statistic``, which returns its figures on those rows of its own
    arrays (all figures from one draw: paired). A draw where a figure is NaN (e.g. a resample
    with one outcome) is left out.
    """
    codes, _ = pd.factorize(np.asarray(groups))
    if codes.size == 0:
        return np.empty((0, 0), dtype=np.float64)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(codes.max() + 1))
    sizes = np.append(starts[1:], codes.size) - starts
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(samples):
        picked = rng.integers(0, starts.size, size=starts.size)
        lengths = sizes[picked]
        # each picked group's rows: its first position in ``order``, then 0..length-1 past it
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        figures = np.asarray(
            statistic(order[np.repeat(starts[picked], lengths) + offsets]), dtype=np.float64
        )
        if not np.isnan(figures).any():
            draws.append(figures)
    return np.vstack(draws) if draws else np.empty((0, 0), dtype=np.float64)


def group_bootstrap_standard_errors(
    statistic: Callable[[NDArray[np.int64]], Sequence[float]],
    groups: ArrayLike,
    samples: int,
    seed: int,
) -> NDArray[np.float64]:
    """Bootstrap standard error of each figure ``statistic`` returns, resampling groups
    (:func:`group_bootstrap_draws`): the sample standard deviation of each figure over the
    draws kept (NaN with fewer than two)."""
    draws = group_bootstrap_draws(statistic, groups, samples, seed)
    if draws.shape[0] < 2:
        return np.full(draws.shape[1], math.nan)
    return np.std(draws, axis=0, ddof=1)


NOISE_TAIL_DRAWS = 20  # replications beyond the critical value, at least: its quantile is steady
MIN_NOISE_REPLICATIONS = 2_000
MAX_NOISE_REPLICATIONS = 400_000


@dataclass(frozen=True)
class StabilityNoise:
    """PSI of two samples of one distribution, by sampling noise alone (:func:`stability_noise`).

    ``expected``: its mean; ``critical``: the value noise exceeds with probability ``level``;
    ``replications``: the Monte Carlo pairs behind both.
    """

    expected: float
    critical: float
    level: float
    replications: int


def stability_noise(
    reference_counts: ArrayLike,
    current_size: int,
    level: float,
    epsilon: float = 1e-4,
    seed: int = 0,
) -> StabilityNoise:
    """The PSI that two samples of the *same* distribution show, by chance, on fixed bins.

    ``reference_counts``: the reference's rows per bin (the bins of the PSI being judged, e.g.
    a :class:`~rollrisk.models.metrics.PsiResult` table's ``expected_count``); their total is the
    reference size. ``current_size``: the rows of the population judged against it.

    PSI is never 0 between two finite samples: with bin shares ``p``, reference size ``n`` and
    current size ``m``, PSI is to second order ``sum((a - e)**2 / p)``, a chi-square with
    ``bins - 1`` degrees of freedom times ``1/n + 1/m``: about ``(bins - 1) * (1/n + 1/m)`` on
    average (0.15 for 10 bins, 60 accounts against 10,000). Small samples have a heavier tail
    than the chi-square says, because a bin left empty by chance is floored at ``epsilon`` and
    alone adds ``p * ln(p / epsilon)`` (0.69 for a decile). So the distribution is simulated
    instead: pairs of multinomial samples of sizes ``n`` and ``m`` drawn from the reference's
    shares, each pair's PSI computed as :func:`~rollrisk.models.metrics.
    population_stability_index` does (shares floored at ``epsilon``), with ``max(2,000,
    20 / level)`` pairs (at most 400,000) from ``default_rng(seed)``: the same inputs always
    give the same threshold.

    Raises:
        ValueError: no reference row, ``current_size`` < 1, or ``level`` outside (0, 1).
    """
    counts = np.asarray(reference_counts, dtype=np.int64)
    reference_size = int(counts.sum())
    if counts.ndim != 1 or reference_size < 1 or (counts < 0).any():
        raise ValueError("reference_counts must be non-negative counts per bin, not all 0")
    if current_size < 1:
        raise ValueError(f"current_size must be at least 1, got {current_size}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    replications = int(
        min(
            MAX_NOISE_REPLICATIONS, max(MIN_NOISE_REPLICATIONS, math.ceil(NOISE_TAIL_DRAWS / level))
        )
    )
    shares = counts[counts > 0] / reference_size  # a bin the reference never fills stays empty
    if shares.size == 1:  # one bin: both samples fall in it, PSI is 0 whatever the sizes
        return StabilityNoise(0.0, 0.0, level, replications)
    rng = np.random.default_rng(seed)
    reference = np.maximum(
        rng.multinomial(reference_size, shares, replications) / reference_size, epsilon
    )
    current = np.maximum(
        rng.multinomial(current_size, shares, replications) / current_size, epsilon
    )
    psi = ((current - reference) * np.log(current / reference)).sum(axis=1)
    return StabilityNoise(
        expected=float(psi.mean()),
        critical=float(np.quantile(psi, 1.0 - level)),
        level=level,
        replications=replications,
    )


def calibration_backtest(
    probability: ArrayLike,
    outcome: ArrayLike,
    group: ArrayLike,
    groups: Sequence[str],
    z: float = WILSON_Z,
) -> pd.DataFrame:
    """Predicted against realised rate per group, and over all rows (the last row, ``all``).

    Needs, per row, the predicted ``probability``, the matured 0/1 ``outcome`` (no missing
    values: rows whose outcome has not matured are the caller's to drop) and its ``group``
    (e.g. the risk band). ``groups`` are the groups reported, in that order; a listed group
    with no row is reported with 0 accounts and NaN rates, and a row whose group is not
    listed counts only in ``all``.

    Returns :data:`BACKTEST_COLUMNS`: ``group, accounts, rolled`` (outcomes that are 1),
    ``predicted_mean, realised_rate``, the Wilson 95 % interval of the realised rate
    ``ci_lower, ci_upper`` (another level with ``z``, its two-sided normal quantile), and
    ``gap`` = realised - predicted.
    """
    predicted = np.asarray(probability, dtype=np.float64)
    rolled = np.asarray(outcome, dtype=np.int64)
    labels = np.asarray(group, dtype=object)
    masks = [(name, labels == name) for name in groups] + [
        (ALL_ROWS, np.ones(len(predicted), dtype=bool))
    ]
    accounts = np.array([int(mask.sum()) for _, mask in masks], dtype=np.int64)
    positives = np.array([int(rolled[mask].sum()) for _, mask in masks], dtype=np.int64)
    predicted_mean = np.array(
        [float(predicted[mask].mean()) if mask.any() else np.nan for _, mask in masks]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        realised = positives / accounts.astype(np.float64)
    lower, upper = wilson_interval(positives, accounts, z=z)
    return pd.DataFrame(
        {
            "group": [name for name, _ in masks],
            "accounts": accounts,
            "rolled": positives,
            "predicted_mean": predicted_mean,
            "realised_rate": realised,
            "ci_lower": lower,
            "ci_upper": upper,
            "gap": realised - predicted_mean,
        }
    )


JEFFREYS_COLUMNS = (
    *BACKTEST_COLUMNS[: BACKTEST_COLUMNS.index("gap")],  # the backtest's columns, then the test's
    "p_value_under",
    "p_value_over",
    "verdict",
)


def jeffreys_test(
    probability: ArrayLike,
    outcome: ArrayLike,
    group: ArrayLike,
    groups: Sequence[str],
    level: float = 0.95,
) -> pd.DataFrame:
    """The Jeffreys test of predicted against realised rates per group (risk grade), and over
    all rows (the last row, ``all``): the binomial test banks use to back-test PD grades.

    Per group of ``n`` rows with ``d`` outcomes of 1 and mean prediction ``p``, the realised
    rate's Jeffreys posterior is ``Beta(d + 1/2, n - d + 1/2)``. ``p_value_under`` is its
    distribution function at ``p`` (the ECB's Jeffreys test: small when the realised rate is
    significantly above the prediction, i.e. the model *under*-estimates), ``p_value_over``
    its complement (small when it *over*-estimates). Each side is tested at ``(1 - level) /
    2``, so the verdict (``consistent``, ``underestimates`` or ``overestimates``; ``no rows``
    for an empty group) is a two-sided test at ``1 - level``; ``ci_lower``, ``ci_upper`` are
    the equal-tailed Jeffreys interval at ``level``. Inputs as for
    :func:`calibration_backtest` (matured outcomes only; a row whose group is not listed
    counts only in ``all``). Returns :data:`JEFFREYS_COLUMNS`.
    """
    from scipy import stats  # imported here: scipy is slow to import and most jobs never need it

    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    predicted = np.asarray(probability, dtype=np.float64)
    rolled = np.asarray(outcome, dtype=np.int64)
    labels = np.asarray(group, dtype=object)
    if not predicted.shape == rolled.shape == labels.shape:
        raise ValueError(
            f"probability, outcome and group differ in length: {predicted.size}, "
            f"{rolled.size}, {labels.size}"
        )
    tail = (1.0 - level) / 2.0
    masks = [(name, labels == name) for name in groups] + [
        (ALL_ROWS, np.ones(len(predicted), dtype=bool))
    ]
    rows = []
    for name, mask in masks:
        n, d = int(mask.sum()), int(rolled[mask].sum())
        if n == 0:
            rows.append((name, 0, 0, *([math.nan] * 6), "no rows"))
            continue
        mean = float(predicted[mask].mean())
        posterior = stats.beta(d + 0.5, n - d + 0.5)
        under = float(posterior.cdf(mean))
        verdict = (
            "underestimates"
            if under < tail
            else "overestimates"
            if 1.0 - under < tail
            else "consistent"
        )
        rows.append(
            (
                name,
                n,
                d,
                mean,
                d / n,
                float(posterior.ppf(tail)),
                float(posterior.ppf(1.0 - tail)),
                under,
                1.0 - under,
                verdict,
            )
        )
    return pd.DataFrame(rows, columns=list(JEFFREYS_COLUMNS))


def two_way_bootstrap(
    values: NDArray[np.float64],
    samples: int,
    seed: int,
    statistic: str = "sum",
    batch: int = 100,
) -> tuple[float, float]:
    """95 % percentile interval of a per-unit figure resampling units AND replications together.

    ``values`` is a (units x replications) matrix, e.g. the paired uplift of each account
    (rows) on each simulation seed (columns). Each resample draws the units with replacement
    and, independently, the replications with replacement, and computes the units' ``"sum"``
    (or ``"mean"``) of their mean over the drawn replications. This covers both which units
    happen to be in the sample and the randomness of the replications; an interval over the
    replications alone (a t-interval over seeds) covers only the latter.

    The resamples are drawn as multiplicity counts (how often each unit and each replication
    is drawn), ``batch`` resamples at a time, so a 100,000 x 20 matrix costs a few matrix
    products (counts x values x counts) rather than a copy per resample. NaN, NaN when there
    are no units or no replications. :func:`two_way_bootstraps` gives several figures of the
    same units the same resamples, drawn once.
    """
    return two_way_bootstraps([values], samples, seed, [statistic], batch)[0]


def two_way_bootstraps(
    matrices: Sequence[NDArray[np.float64]],
    samples: int,
    seed: int,
    statistics: Sequence[str] | None = None,
    batch: int = 100,
) -> list[tuple[float, float]]:
    """:func:`two_way_bootstrap` of each of ``matrices`` (all units x replications of the same
    shape: figures of the same units on the same replications), each with its ``statistics``
    entry (default ``"sum"``), all on the same resamples: each interval is exactly the one
    :func:`two_way_bootstrap` gives that matrix with the same ``seed``, and the counts, the
    costly part at 100,000 units, are drawn once instead of once per figure."""
    stacks = [np.asarray(m, dtype=np.float64) for m in matrices]
    chosen = list(statistics) if statistics is not None else ["sum"] * len(stacks)
    if len(chosen) != len(stacks):
        raise ValueError(f"{len(chosen)} statistics for {len(stacks)} matrices")
    for statistic in chosen:
        if statistic not in ("sum", "mean"):
            raise ValueError(f"statistic must be 'sum' or 'mean', got {statistic!r}")
    shapes = {m.shape for m in stacks}
    if len(shapes) > 1:
        raise ValueError(f"the matrices differ in shape: {sorted(shapes)}")
    if not stacks:
        return []
    units, replications = stacks[0].shape
    if units == 0 or replications == 0:
        return [(math.nan, math.nan)] * len(stacks)
    rng = np.random.default_rng(seed)
    draws: list[list[NDArray[np.float64]]] = [[] for _ in stacks]
    for start in range(0, samples, batch):
        size = min(batch, samples - start)
        seed_counts = _draw_counts(rng, replications, size)
        unit_counts = _draw_counts(rng, units, size)
        for matrix, statistic, out in zip(stacks, chosen, draws, strict=True):
            # each resample's drawn units summed per replication (size x replications), then
            # the mean over its drawn replications: two small products, no units x size array
            per_replication = unit_counts @ matrix
            totals = (per_replication * seed_counts).sum(axis=1) / replications
            out.append(totals / units if statistic == "mean" else totals)
    intervals = []
    for out in draws:
        low, high = np.percentile(np.concatenate(out), BOOTSTRAP_PERCENTILES)
        intervals.append((float(low), float(high)))
    return intervals


def _draw_counts(rng: np.random.Generator, n: int, size: int) -> NDArray[np.float64]:
    """(size x n): how many times each of ``n`` units is drawn in each of ``size`` resamples of
    ``n`` draws with replacement (a bincount of uniform integers: far faster than a multinomial
    over many categories)."""
    picks = rng.integers(0, n, (size, n)) + np.arange(size)[:, None] * n
    return np.bincount(picks.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)
