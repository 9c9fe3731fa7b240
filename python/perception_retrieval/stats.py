"""Uncertainty of retrieval scores: bootstrap intervals over queries and paired
permutation tests between two models (C++ core, numpy in and out).

A dataset's score is a mean over its queries, so its uncertainty is that of a
mean: resample the queries with replacement (the bootstrap), recompute the mean,
and read the 2.5th and 97.5th percentiles of those replicate means (the
percentile method). Comparing two models on the same queries is paired: the
interval is the bootstrap of the per-query differences, and the p-value comes
from flipping the sign of each query's difference at random (a sign-flip
permutation test). docs/statistics.md explains what the numbers mean and do not.

Every random draw comes from one fully specified generator (SplitMix64-seeded
xoshiro256**, include/pe/stats.hpp), so a seed gives the same interval on every
machine, whatever the thread count:

* bootstrap replicate r of stream s uses the generator (seed, s, r);
* dataset i of an evaluation uses stream i (in the order the datasets were given);
* a comparison uses stream 2 i for the bootstrap of dataset i and 2 i + 1 for
  its sign flips.

Per-query arrays (Q x M, float32 or float64, C-contiguous) reach C++ without a
copy and the GIL is released while resampling.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from ._native import _core

DEFAULT_RESAMPLES = 1000
DEFAULT_PERMUTATIONS = 10000
DEFAULT_SEED = 0
LEVEL = 0.95
GENERATOR = "xoshiro256** seeded by SplitMix64; substreams by jumps (include/pe/stats.hpp)"

_UINT64_MAX = (1 << 64) - 1


def _count(value, argument: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{argument} must be an integer >= 0, got {value!r}")
    return int(value)


def _seed(value, argument: str = "seed") -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not 0 <= value <= _UINT64_MAX:
        raise ValueError(f"{argument} must be an integer in [0, 2^64), got {value!r}")
    return int(value)


def _threads(threads) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise ValueError(f"threads must be an integer >= 0 (0 = all cores), got {threads!r}")
    return int(threads)


def _per_query(values, argument: str) -> np.ndarray:
    """values as a Q x M float array C++ can read in place: float32/float64
    C-contiguous arrays pass through untouched; 1-D becomes Q x 1; other
    numbers are converted (a copy) to float64."""
    array = np.asarray(values)
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{argument} must hold numbers (per-query metric values), got dtype {array.dtype}")
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(f"{argument} must be 1-D (one value per query) or 2-D (queries x metrics), "
                         f"got shape {array.shape}")
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    return np.ascontiguousarray(array)


def bootstrap_means(values, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED, stream: int = 0,
                    threads: int = 0) -> np.ndarray:
    """Bootstrap replicates of the column means of values (Q queries x M metrics;
    finite: leave lone queries out). Returns resamples x M float64: row r is the
    mean of Q rows drawn with replacement by the generator (seed, stream, r).
    All NaN when Q is 0."""
    return _core.stats.bootstrap_means(_per_query(values, "values"), _count(resamples, "resamples"), _seed(seed),
                                       _seed(stream, "stream"), _threads(threads))


def sign_flip_means(differences, permutations: int = DEFAULT_PERMUTATIONS, seed: int = DEFAULT_SEED,
                    stream: int = 0, threads: int = 0) -> np.ndarray:
    """Sign-flip replicates of the column means of paired differences (Q x M,
    B minus A per query). Returns permutations x M float64: row p is the mean
    after negating the rows whose sign bit from the generator (seed, stream, p)
    is set."""
    return _core.stats.sign_flip_means(_per_query(differences, "differences"), _count(permutations, "permutations"),
                                       _seed(seed), _seed(stream, "stream"), _threads(threads))


def percentile_interval(replicates, level: float = LEVEL) -> np.ndarray:
    """Percentile intervals, M x 2 (low, high), of replicates (R x M): the
    (1 - level) / 2 and (1 + level) / 2 quantiles with linear interpolation
    (numpy's default quantile method). NaN where a column holds NaN or R is 0."""
    array = np.ascontiguousarray(np.asarray(replicates, dtype=np.float64))
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    return _core.stats.percentile_intervals(array, float(level))


TIE_TOLERANCE = 1e-9


def tie_tolerance(differences) -> np.ndarray:
    """Per metric, 1e-9 * mean |difference| (Q x M in, M out): the slack under
    which a permuted mean ties with the observed one, so that rounding (at most
    about Q * 1e-16 of that scale) never decides a tie. 0 for all-zero columns."""
    array = np.asarray(differences, dtype=np.float64)
    array = array.reshape(len(array), -1)
    return TIE_TOLERANCE * np.abs(array).mean(axis=0) if len(array) else np.zeros(array.shape[1])


def permutation_p_value(permuted, observed, tolerance=None) -> np.ndarray:
    """Two-sided p-values, one per column of permuted (P x M, from
    sign_flip_means) against observed (M means of the unflipped differences):
    (1 + #{|T_p| >= |T_obs| - tolerance}) / (1 + P), tolerance from
    tie_tolerance (None: exact comparisons). Exactly 1 when every difference
    is 0; never below 1 / (1 + P)."""
    permuted = np.ascontiguousarray(np.asarray(permuted, dtype=np.float64))
    if permuted.ndim == 1:
        permuted = permuted.reshape(-1, 1)
    observed = np.ascontiguousarray(np.asarray(observed, dtype=np.float64).reshape(-1))
    if tolerance is not None:
        tolerance = np.ascontiguousarray(np.asarray(tolerance, dtype=np.float64).reshape(-1))
    return _core.stats.permutation_p_values(permuted, observed, tolerance)


def random_stream(seed: int, stream: int, substream: int, count: int) -> np.ndarray:
    """The first count raw 64-bit outputs (uint64) of the generator (seed,
    stream, substream): for checking the generator against another
    implementation of its specification."""
    return _core.stats.random_u64(_seed(seed), _seed(stream, "stream"), _seed(substream, "substream"),
                                  _count(count, "count"))


def random_integers(seed: int, stream: int, substream: int, bound: int, count: int) -> np.ndarray:
    """The first count integers in [0, bound) (uint32) that the generator
    (seed, stream, substream) draws, as a bootstrap does."""
    if isinstance(bound, bool) or not isinstance(bound, (int, np.integer)) or not 1 <= bound < (1 << 32):
        raise ValueError(f"bound must be an integer in [1, 2^32), got {bound!r}")
    return _core.stats.random_bounded(_seed(seed), _seed(stream, "stream"), _seed(substream, "substream"),
                                      int(bound), _count(count, "count"))


# --------------------------------------------------------------------------- over datasets

def _nan_interval(columns: int) -> np.ndarray:
    return np.full((columns, 2), np.nan)


def dataset_intervals(per_query: Sequence, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                      level: float = LEVEL, threads: int = 0) -> dict:
    """Bootstrap intervals for several datasets and their average.

    per_query: one Q_i x M array per dataset (the scored queries' metric values,
    the same M metrics everywhere). Dataset i is resampled on stream i. The
    average's replicate r is the mean over datasets of their replicate r, so
    each dataset is resampled independently within every replicate, as the
    average itself weighs each dataset equally whatever its size.

    Returns {"datasets": [M x 2 per dataset], "average": M x 2,
    "replicates": [resamples x M per dataset]}; all NaN when resamples is 0.
    """
    arrays = [_per_query(values, f"per_query[{i}]") for i, values in enumerate(per_query)]
    columns = arrays[0].shape[1] if arrays else 0
    for i, array in enumerate(arrays):
        if array.shape[1] != columns:
            raise ValueError(f"per_query[{i}] has {array.shape[1]} metrics but per_query[0] has {columns}; "
                             "give every dataset the same metric columns")
    replicates = [bootstrap_means(array, resamples, seed, i, threads) for i, array in enumerate(arrays)]
    if resamples == 0 or not arrays:
        return {"datasets": [_nan_interval(columns) for _ in arrays], "average": _nan_interval(columns),
                "replicates": replicates}
    average = np.mean(np.stack(replicates), axis=0)
    return {"datasets": [percentile_interval(r, level) for r in replicates],
            "average": percentile_interval(average, level), "replicates": replicates}


def paired_comparison(a: Sequence, b: Sequence, resamples: int = DEFAULT_RESAMPLES,
                      permutations: int = DEFAULT_PERMUTATIONS, seed: int = DEFAULT_SEED, level: float = LEVEL,
                      threads: int = 0) -> dict:
    """Model B against model A on the same queries of several datasets.

    a, b: per dataset a Q_i x M array, row q of both for the same query q.
    Per dataset: "a" and "b" (column means, summed exactly with math.fsum so
    that equal values in another order give diff 0), "diff" (b - a), "ci95" (paired
    bootstrap percentile interval of the mean difference: the same resampled
    queries for both models; stream 2 i) and "p" (sign-flip permutation test of
    the mean difference; stream 2 i + 1). The same for "average", the mean over
    datasets, with every dataset resampled and sign-flipped independently.
    Intervals are NaN with resamples = 0, p-values NaN with permutations = 0.
    """
    if len(a) != len(b):
        raise ValueError(f"a has {len(a)} datasets but b has {len(b)}; give both models the same datasets")
    a = [_as_float64(values, f"a[{i}]") for i, values in enumerate(a)]
    b = [_as_float64(values, f"b[{i}]") for i, values in enumerate(b)]
    _count(resamples, "resamples")
    _count(permutations, "permutations")
    datasets, bootstraps, flips, tolerances = [], [], [], []
    for i, (values_a, values_b) in enumerate(zip(a, b)):
        if values_a.shape != values_b.shape:
            raise ValueError(f"dataset {i}: a has shape {values_a.shape} but b has {values_b.shape}; "
                             "pair the same queries and metrics")
        differences = values_b - values_a
        replicates = bootstrap_means(differences, resamples, seed, 2 * i, threads)
        permuted = sign_flip_means(differences, permutations, seed, 2 * i + 1, threads)
        bootstraps.append(replicates)
        flips.append(permuted)
        tolerances.append(tie_tolerance(differences))
        datasets.append(_summary(values_a, values_b, replicates, permuted, tolerances[-1], level))
    average = None
    if datasets:
        mean_a = np.mean([d["a"] for d in datasets], axis=0)
        mean_b = np.mean([d["b"] for d in datasets], axis=0)
        observed = mean_b - mean_a
        replicates = np.mean(np.stack(bootstraps), axis=0)
        permuted = np.mean(np.stack(flips), axis=0)
        tolerance = np.mean(tolerances, axis=0)
        average = {"a": mean_a, "b": mean_b, "diff": observed,
                   "ci95": percentile_interval(replicates, level) if resamples else _nan_interval(len(observed)),
                   "p": (permutation_p_value(permuted, observed, tolerance) if permutations
                         else np.full(len(observed), np.nan))}
    return {"datasets": datasets, "average": average}


def _as_float64(values, argument: str) -> np.ndarray:
    array = _per_query(values, argument)
    return array if array.dtype == np.float64 else array.astype(np.float64)


def _exact_means(values: np.ndarray) -> np.ndarray:
    """Column means with correctly rounded sums: two models with the same
    values on different queries get bit-identical means, hence diff 0."""
    if len(values) == 0:
        return np.full(values.shape[1], np.nan)
    return np.array([math.fsum(column) / len(values) for column in values.T.tolist()])


def _summary(values_a, values_b, replicates, permuted, tolerance, level) -> dict:
    columns = values_a.shape[1]
    mean_a, mean_b = _exact_means(values_a), _exact_means(values_b)
    observed = mean_b - mean_a
    return {
        "a": mean_a, "b": mean_b, "diff": observed,
        "ci95": percentile_interval(replicates, level) if len(replicates) else _nan_interval(columns),
        "p": permutation_p_value(permuted, observed, tolerance) if len(permuted) else np.full(columns, np.nan),
    }


def interval_dict(columns: Sequence[str], interval: np.ndarray) -> Dict[str, Optional[List[float]]]:
    """{column: [low, high]} (fractions) from an M x 2 array; None where NaN."""
    out: Dict[str, Optional[List[float]]] = {}
    for column, (low, high) in zip(columns, np.asarray(interval, dtype=np.float64).tolist()):
        out[column] = None if (np.isnan(low) or np.isnan(high)) else [float(low), float(high)]
    return out
