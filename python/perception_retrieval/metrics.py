"""Retrieval metrics: P@k, R@k, HitRate@k and AP@k / mAP@k (C++ core, numpy in and out).

Definitions follow the leaderboard protocol (docs/metrics.md):
P@k divides by k, R@k = hits / R with R counting every relevant gallery item,
AP@k divides by min(R, k) unless ``ap_normalizer`` says ``"r"`` or ``"hits"``.
Queries with R = 0 ("lone") are excluded from the averages and counted.

Arrays are passed to C++ without a copy when they already have the right type
(int64 rankings and ids, float32/float64 scores, C-contiguous); the GIL is
released while scoring, so threads in Python can score in parallel.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence, Union

import numpy as np

from ._native import _core

AP_NORMALIZERS = ("min_r_k", "r", "hits")
LEADERBOARD_COLUMNS = ("P@1", "P@5", "R@1", "R@5", "mAP@10")

_Ks = Union[int, Iterable[int], None]


def _cutoffs(value: _Ks, argument: str) -> list:
    if value is None:
        return []
    values = [value] if np.isscalar(value) else list(value)
    cutoffs = []
    for k in values:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"{argument} must hold integers, got {k!r} ({type(k).__name__})")
        cutoffs.append(int(k))
    return cutoffs


def _ids(query_ids, gallery_ids):
    """Instance ids as two int64 arrays. Integer ids pass through (no copy if
    already int64); other labels (strings, objects) are mapped jointly to integers
    so that equal labels stay equal."""
    queries = np.asarray(query_ids)
    gallery = np.asarray(gallery_ids)
    for name, ids in (("query_ids", queries), ("gallery_ids", gallery)):
        if ids.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one instance id per item), got shape {ids.shape}")
    signed = (np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64))
    small_unsigned = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32))
    if all(ids.dtype in signed + small_unsigned for ids in (queries, gallery)):
        return (np.ascontiguousarray(queries, dtype=np.int64),
                np.ascontiguousarray(gallery, dtype=np.int64))
    try:
        _, codes = np.unique(np.concatenate([queries, gallery]), return_inverse=True)
    except TypeError as error:
        raise TypeError(
            f"query_ids ({queries.dtype}) and gallery_ids ({gallery.dtype}) cannot be compared "
            f"with each other: {error}; give both the same kind of label (ints or strings)"
        ) from None
    codes = codes.astype(np.int64).reshape(-1)
    return np.ascontiguousarray(codes[: len(queries)]), np.ascontiguousarray(codes[len(queries):])


def _ranking(ranking) -> np.ndarray:
    array = np.asarray(ranking)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"ranking must hold integer gallery indices, got dtype {array.dtype}; "
            "for a similarity matrix use evaluate_scores()"
        )
    if array.ndim != 2:
        raise ValueError(f"ranking must be 2-D (queries x ranked gallery indices), got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.int64)


def _scores(scores) -> np.ndarray:
    array = np.asarray(scores)
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"scores must be float32 or float64, got dtype {array.dtype}; "
            "convert with scores.astype(np.float32)"
        )
    if array.ndim != 2:
        raise ValueError(f"scores must be 2-D (queries x gallery), got shape {array.shape}")
    return array


def _check_normalizer(ap_normalizer: str) -> str:
    if ap_normalizer not in AP_NORMALIZERS:
        raise ValueError(
            f"ap_normalizer must be one of {', '.join(AP_NORMALIZERS)}, got {ap_normalizer!r}: "
            "'min_r_k' divides AP@k by min(R, k) (the leaderboard), 'r' by R, 'hits' by the hits in the top k"
        )
    return ap_normalizer


def _threads(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise ValueError(f"threads must be an integer >= 0 (0 = all cores), got {threads!r}")
    return int(threads)


def _as_dict(evaluation, per_query: bool) -> dict:
    result = {name: float(evaluation.value(name)) for name in evaluation.metric_names()}
    result.update(
        num_queries=int(evaluation.num_queries),
        lone_queries=int(evaluation.lone_queries),
        total_queries=int(evaluation.total_queries),
        ap_normalizer=evaluation.ap_normalizer,
        exclude_self=bool(evaluation.exclude_self),
    )
    if per_query:
        columns = {}
        for j, k in enumerate(evaluation.ks):
            columns[f"P@{k}"] = evaluation.per_query_precision[:, j]
            columns[f"R@{k}"] = evaluation.per_query_recall[:, j]
            columns[f"HitRate@{k}"] = evaluation.per_query_hit_rate[:, j]
        for j, k in enumerate(evaluation.map_ks):
            columns[f"AP@{k}"] = evaluation.per_query_average_precision[:, j]
        columns["num_relevant"] = evaluation.num_relevant
        # Lone queries (num_relevant == 0) hold NaN in every metric column.
        result["per_query"] = columns
    return result


def _self_indices(self_indices):
    if self_indices is None:
        return None
    array = np.asarray(self_indices)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"self_indices must hold integer gallery indices (-1 = not in the gallery), "
                        f"got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)


def evaluate(ranking, query_ids, gallery_ids, ks: _Ks = (1, 5), map_k: _Ks = 10,
             ap_normalizer: str = "min_r_k", exclude_self: bool = False,
             per_query: bool = False, threads: int = 0, self_indices=None) -> dict:
    """Scores ranked retrieval results.

    ranking:      Q x K gallery indices, best first (int; -1 pads rows with fewer
                  results). Ranks past K count as non-relevant.
    query_ids:    Q instance ids; gallery_ids: N instance ids (ints or labels).
    ks:           cut-offs for P@k, R@k and HitRate@k; map_k: one or several
                  cut-offs for mAP@k.
    exclude_self: the query set is the gallery (Q == N, same ids): query i's own
                  gallery index i is dropped from its ranking and its R.
    self_indices: for query sets that partly overlap the gallery: Q gallery
                  indices, query i's own item (dropped like exclude_self), or -1
                  when query i is not in the gallery.
    per_query:    also return result["per_query"], arrays of Q values per metric
                  (AP@k for the per-query AP) plus "num_relevant"; NaN for lone queries.
    threads:      0 = all cores.

    Returns a dict with "P@k", "R@k", "HitRate@k" for each k and "mAP@k" for each
    map_k as fractions in [0, 1] (means over queries with R > 0; NaN if none),
    and "num_queries" (scored), "lone_queries", "total_queries", "ap_normalizer",
    "exclude_self".
    """
    queries, gallery = _ids(query_ids, gallery_ids)
    evaluation = _core.metrics.evaluate(
        _ranking(ranking), queries, gallery, _cutoffs(ks, "ks"), _cutoffs(map_k, "map_k"),
        _check_normalizer(ap_normalizer), bool(exclude_self), _self_indices(self_indices), _threads(threads))
    return _as_dict(evaluation, per_query)


def evaluate_scores(scores, query_ids, gallery_ids, ks: _Ks = (1, 5), map_k: _Ks = 10,
                    ap_normalizer: str = "min_r_k", exclude_self: bool = False,
                    per_query: bool = False, threads: int = 0, self_indices=None) -> dict:
    """Like evaluate(), from a Q x N similarity matrix (float32 or float64,
    C-contiguous, higher = more similar). Each row is ranked inside: score
    descending, ties by gallery index ascending. NaN scores are an error."""
    queries, gallery = _ids(query_ids, gallery_ids)
    evaluation = _core.metrics.evaluate_scores(
        _scores(scores), queries, gallery, _cutoffs(ks, "ks"), _cutoffs(map_k, "map_k"),
        _check_normalizer(ap_normalizer), bool(exclude_self), _self_indices(self_indices), _threads(threads))
    return _as_dict(evaluation, per_query)


class Report:
    """The leaderboard table over datasets: Markdown, CSV and JSON, percent with
    2 decimals and an Average row (macro mean), the AP normaliser named in each.

    >>> report = Report()
    >>> report.add("SOP", evaluate(ranking, ids, ids, exclude_self=True))
    >>> print(report.to_markdown())
    """

    def __init__(self, columns: Sequence[str] = LEADERBOARD_COLUMNS):
        self._report = _core.metrics.Report(list(columns))

    def add(self, dataset: str, result: Mapping) -> None:
        """Adds a dataset from a dict returned by evaluate()/evaluate_scores()
        (or one with the same keys: each column as a fraction, "num_queries",
        "lone_queries", "ap_normalizer")."""
        missing = [key for key in (*self.columns, "num_queries", "lone_queries", "ap_normalizer")
                   if key not in result]
        if missing:
            raise ValueError(f"Report.add({dataset!r}): the result lacks {', '.join(missing)}; "
                             "pass a dict from evaluate() computed with these ks / map_k")
        fractions = {column: float(result[column]) for column in self.columns}
        self._report.add_fractions(dataset, fractions, int(result["num_queries"]),
                                   int(result["lone_queries"]), str(result["ap_normalizer"]))

    def set_intervals(self, dataset: str, intervals: Mapping) -> None:
        """Intervals for a dataset already added: {column: (low, high)} as
        fractions (a column missing or None: no interval). Shown in brackets
        beside each value in to_markdown(), as extra columns in to_csv()."""
        self._report.set_intervals(dataset, self._bounds(intervals, f"set_intervals({dataset!r})"))

    def set_average_intervals(self, intervals: Mapping) -> None:
        """Intervals for the Average row, as in set_intervals()."""
        self._report.set_average_intervals(self._bounds(intervals, "set_average_intervals"))

    def set_interval_method(self, level: float, resamples: int, seed: int) -> None:
        """How the intervals were made (named in the footnote and the CSV)."""
        self._report.set_interval_method(float(level), int(resamples), int(seed))

    def _bounds(self, intervals: Mapping, where: str) -> list:
        if not isinstance(intervals, Mapping):
            raise TypeError(f"Report.{where}: intervals must be a dict {{column: (low, high)}}, "
                            f"got {type(intervals).__name__}")
        unknown = [key for key in intervals if key not in self.columns]
        if unknown:
            raise ValueError(f"Report.{where}: {', '.join(map(str, unknown))} not among the columns "
                             f"{', '.join(self.columns)}")
        out = []
        for column in self.columns:
            bounds = intervals.get(column)
            out.append((float("nan"), float("nan")) if bounds is None else (float(bounds[0]), float(bounds[1])))
        return out

    @property
    def columns(self) -> list:
        return list(self._report.columns)

    @property
    def datasets(self) -> list:
        return list(self._report.datasets)

    @property
    def ap_normalizer(self) -> str:
        return self._report.ap_normalizer

    def average(self) -> dict:
        """Macro mean per column, as fractions."""
        return dict(zip(self.columns, self._report.average()))

    def to_markdown(self) -> str:
        return self._report.to_markdown()

    def to_csv(self) -> str:
        return self._report.to_csv()

    def to_json(self) -> str:
        return self._report.to_json()

    def __len__(self) -> int:
        return len(self._report)

    def __repr__(self) -> str:
        return f"Report(datasets={self.datasets!r}, columns={self.columns!r}, ap_normalizer={self.ap_normalizer!r})"
