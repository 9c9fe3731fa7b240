"""Two models side by side: `perception-retrieval compare RUN_A RUN_B --out DIR`.

RUN_A and RUN_B are folders written by `perception-retrieval eval` on the same
datasets (queries are matched by path relative to the dataset's folder, so the
same set evaluated from two locations compares). Everything is computed from their per_query/<dataset>.csv files (the
per-query values behind every number of the table): per dataset and metric the
two scores, the difference B - A with a paired bootstrap 95% interval, and a
two-sided sign-flip permutation p-value (perception_retrieval.stats). Runs whose
datasets, queries, instance ids or relevant-image counts differ are refused with
a message naming the dataset and the difference: a paired comparison of unlike
query sets would be meaningless.

Outputs in DIR: comparison.json ({dataset: {metric: {"a", "b", "diff", "ci95":
[low, high], "p"}}, plus "Average"; fractions), comparison.md,
comparison_report.json (the settings, run metadata and the queries where the
models disagree most) and comparison.html (self-contained, offline).

    from perception_retrieval import compare
    report = compare.compare_runs("runs/l14", "runs/b16", out_dir="runs/l14-vs-b16")
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__, metrics, stats
from .evaluation import PER_QUERY_COLUMNS, _json_safe, _safe_name, _write_text, scored_values

SAMPLE_RESULTS = 5
RESULTS_TOLERANCE = 1e-9  # per-query means vs results.json: both are means of the same floats


class CompareError(ValueError):
    """Two runs that cannot be compared; the message names what differs."""


class Run:
    """An `eval` output folder, read back: report.json (may be absent in old
    runs), results.json and per_query/<dataset>.csv."""

    def __init__(self, folder: str, label: str):
        self.folder, self.label = os.path.abspath(folder), label
        if not os.path.isdir(self.folder):
            raise FileNotFoundError(f"{label} {folder}: no such folder; give an output folder of "
                                    "perception-retrieval eval (--out)")
        self.report = self._json("report.json", required=False) or {}
        self.results = self._json("results.json", required=not self.report) or {}
        names = [d.get("name") for d in self.report.get("datasets", []) if isinstance(d, dict)]
        self.datasets: List[str] = [str(n) for n in names if n is not None] or list(self.results)
        if not self.datasets:
            raise CompareError(f"{label} {folder}: results.json and report.json name no dataset")
        self._rows: Dict[str, dict] = {}

    def _json(self, name: str, required: bool):
        path = os.path.join(self.folder, name)
        if not os.path.isfile(path):
            if required:
                raise FileNotFoundError(f"{self.label} {self.folder}: no {name}; is it an output folder of "
                                        "perception-retrieval eval?")
            return None
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError) as error:
            raise CompareError(f"{self.label}: {path} is not readable JSON ({error}); re-run the evaluation") from None

    @property
    def model(self) -> dict:
        return self.report.get("model") if isinstance(self.report.get("model"), dict) else {}

    @property
    def ap_normalizer(self) -> Optional[str]:
        variant = self.report.get("metric_variant")
        return variant.get("ap_normalizer") if isinstance(variant, dict) else None

    def summary(self, dataset: str) -> dict:
        for summary in self.report.get("datasets", []):
            if isinstance(summary, dict) and summary.get("name") == dataset:
                return summary
        return {}

    def rows(self, dataset: str) -> dict:
        """per_query/<dataset>.csv as {column: [values as text]}."""
        if dataset not in self._rows:
            path = os.path.join(self.folder, "per_query", _safe_name(dataset) + ".csv")
            if not os.path.isfile(path):
                raise CompareError(f"{self.label} {self.folder}: no per-query file for dataset {dataset!r} "
                                   f"({path}); re-run the evaluation of that dataset")
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                header = next(reader, None)
                body = list(reader)
            needed = ["query", "crop", "instance_id", "R", *PER_QUERY_COLUMNS.values()]
            missing = [c for c in needed if not header or c not in header]
            if missing:
                raise CompareError(f"{self.label}: {path} lacks the column(s) {', '.join(missing)}; "
                                   "it was not written by perception-retrieval eval")
            columns = {name: [row[i] if i < len(row) else "" for row in body] for i, name in enumerate(header)}
            self._rows[dataset] = columns
        return self._rows[dataset]


def _keys(rows: dict, root: Optional[str] = None) -> List[Tuple[str, str]]:
    """Each query's identity: its path (relative to the dataset's root when both
    runs record one, so a copy of the data elsewhere still matches) and crop."""
    if root:  # report.json's dataset "path": the folder its image paths start from
        return [(os.path.relpath(path, root), crop) for path, crop in zip(rows["query"], rows["crop"])]
    return list(zip(rows["query"], rows["crop"]))


def _roots(run_a: "Run", run_b: "Run", dataset: str) -> Tuple[Optional[str], Optional[str]]:
    root_a, root_b = run_a.summary(dataset).get("path"), run_b.summary(dataset).get("path")
    return (root_a, root_b) if root_a and root_b else (None, None)


def _describe(rows: dict, index: int) -> str:
    path, crop = rows["query"][index], rows["crop"][index]
    return f"{path} (crop {crop})" if crop else path


def check_comparable(run_a: Run, run_b: Run) -> None:
    """Raises CompareError naming the first difference that makes a paired
    comparison meaningless: datasets, AP normaliser, queries, their instance ids
    or their relevant-image counts (R, i.e. the galleries)."""
    only_a = [d for d in run_a.datasets if d not in run_b.datasets]
    only_b = [d for d in run_b.datasets if d not in run_a.datasets]
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{', '.join(map(repr, only_a))} only in RUN_A ({run_a.folder})")
        if only_b:
            parts.append(f"{', '.join(map(repr, only_b))} only in RUN_B ({run_b.folder})")
        raise CompareError("the runs cover different datasets: " + "; ".join(parts) +
                           ". Evaluate both models on the same datasets")
    if run_a.ap_normalizer and run_b.ap_normalizer and run_a.ap_normalizer != run_b.ap_normalizer:
        raise CompareError(f"mAP@10 divides by {run_a.ap_normalizer} in RUN_A but by {run_b.ap_normalizer} in RUN_B; "
                           "evaluate both with the same --ap-normalizer")
    for dataset in run_a.datasets:
        rows_a, rows_b = run_a.rows(dataset), run_b.rows(dataset)
        root_a, root_b = _roots(run_a, run_b, dataset)
        keys_a, keys_b = _keys(rows_a, root_a), _keys(rows_b, root_b)
        for label, keys in (("RUN_A", keys_a), ("RUN_B", keys_b)):
            if len(set(keys)) != len(keys):
                raise CompareError(f"dataset {dataset!r}: {label} lists a query twice; its per-query file is damaged")
        set_a, set_b = set(keys_a), set(keys_b)
        if set_a != set_b:
            missing = [i for i, k in enumerate(keys_a) if k not in set_b]
            extra = [i for i, k in enumerate(keys_b) if k not in set_a]
            parts = []
            if missing:
                parts.append(f"{len(missing)} of RUN_A's {len(keys_a)} queries are not in RUN_B "
                             f"(first: {_describe(rows_a, missing[0])})")
            if extra:
                parts.append(f"{len(extra)} of RUN_B's {len(keys_b)} queries are not in RUN_A "
                             f"(first: {_describe(rows_b, extra[0])})")
            raise CompareError(f"dataset {dataset!r}: the query sets differ: " + "; ".join(parts) +
                               ". Compare runs of the same dataset files")
        position_b = {key: i for i, key in enumerate(keys_b)}
        order = [position_b[key] for key in keys_a]
        ids_b = [rows_b["instance_id"][i] for i in order]
        for q, (id_a, id_b) in enumerate(zip(rows_a["instance_id"], ids_b)):
            if id_a != id_b:
                raise CompareError(f"dataset {dataset!r}: query {_describe(rows_a, q)} is instance {id_a!r} in RUN_A "
                                   f"but {id_b!r} in RUN_B; the datasets' labels differ")
        r_b = [rows_b["R"][i] for i in order]
        differ = [(q, a, b) for q, (a, b) in enumerate(zip(rows_a["R"], r_b)) if a != b]
        if differ:
            q, a, b = differ[0]
            raise CompareError(f"dataset {dataset!r}: {len(differ)} queries have a different number of relevant "
                               f"gallery images (first: {_describe(rows_a, q)}, R = {a} in RUN_A, {b} in RUN_B): the "
                               "galleries differ (images left out with --on-error skip?); compare runs over the "
                               "same gallery")


def _aligned(run_a: Run, run_b: Run, dataset: str) -> Tuple[dict, dict]:
    """Both runs' rows of a dataset, B reordered to A's query order."""
    rows_a, rows_b = run_a.rows(dataset), run_b.rows(dataset)
    root_a, root_b = _roots(run_a, run_b, dataset)
    position_b = {key: i for i, key in enumerate(_keys(rows_b, root_b))}
    order = [position_b[key] for key in _keys(rows_a, root_a)]
    return rows_a, {name: [values[i] for i in order] for name, values in rows_b.items()}


def _values(run: Run, rows: dict, dataset: str) -> np.ndarray:
    """Scored queries' five metrics, Q x 5, checked against results.json."""
    try:
        values = scored_values(rows)
    except ValueError as error:
        raise CompareError(f"{run.label}: per_query/{_safe_name(dataset)}.csv holds a value that is not a number "
                           f"({error}); it is damaged, re-run the evaluation") from None
    recorded = run.results.get(dataset) if isinstance(run.results.get(dataset), dict) else {}
    for j, column in enumerate(metrics.LEADERBOARD_COLUMNS):
        value = recorded.get(column)
        if isinstance(value, (int, float)) and len(values):
            mean = float(values[:, j].mean())
            if abs(mean - value) > RESULTS_TOLERANCE:
                raise CompareError(f"{run.label}: per_query/{_safe_name(dataset)}.csv gives {column} = {mean:.6f} but "
                                   f"results.json says {value:.6f}; one of them was changed, re-run the evaluation")
    return values


def _top(rows: dict, q: int) -> List[dict]:
    """Query q's top results from the JSON columns (or, in runs older than
    them, the paths of the ';'-joined top5 column, without ids or scores)."""
    if "top5_paths" in rows and rows["top5_paths"][q]:
        try:
            paths = json.loads(rows["top5_paths"][q])
            ids = json.loads(rows["top5_instance_ids"][q]) if "top5_instance_ids" in rows else [None] * len(paths)
            scores = json.loads(rows["top5_scores"][q]) if "top5_scores" in rows else [None] * len(paths)
            crops = json.loads(rows["top5_crops"][q]) if "top5_crops" in rows else [None] * len(paths)
        except ValueError:
            paths, ids, scores, crops = [], [], [], []
        query_id = rows["instance_id"][q]
        return [{"path": p, "instance_id": i, "score": s, "crop": c,
                 "relevant": None if i is None else str(i) == query_id}
                for p, i, s, c in zip(paths, ids, scores, crops)][:SAMPLE_RESULTS]
    legacy = rows.get("top5", [""] * (q + 1))[q]
    return [{"path": p, "instance_id": None, "score": None, "crop": None, "relevant": None}
            for p in legacy.split(";") if p][:SAMPLE_RESULTS]


def _crop(text: str):
    if not text:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        return None


def disagreements(rows_a: dict, rows_b: dict, count: int) -> List[dict]:
    """The scored queries where the two models disagree most: largest
    |AP@10 of B - AP@10 of A| first, then fewest top-5 images in common, then
    query order."""
    if count <= 0:
        return []
    ap_column = PER_QUERY_COLUMNS["mAP@10"]
    candidates = []
    for q, r in enumerate(rows_a["R"]):
        if int(r) <= 0:
            continue
        ap_a, ap_b = float(rows_a[ap_column][q]), float(rows_b[ap_column][q])
        top_a, top_b = _top(rows_a, q), _top(rows_b, q)
        shared = len({t["path"] for t in top_a} & {t["path"] for t in top_b})
        candidates.append((-abs(ap_b - ap_a), shared, q, ap_a, ap_b, top_a, top_b))
    candidates.sort(key=lambda c: c[:3])
    out = []
    for _, shared, q, ap_a, ap_b, top_a, top_b in candidates[:count]:
        out.append({"query": {"path": rows_a["query"][q], "instance_id": rows_a["instance_id"][q],
                              "crop": _crop(rows_a["crop"][q])},
                    "num_relevant": int(rows_a["R"][q]), "ap": {"a": ap_a, "b": ap_b}, "shared_top5": shared,
                    "a": top_a, "b": top_b})
    return out


def _metric_table(columns: Sequence[str], result: dict) -> dict:
    table = {}
    for j, column in enumerate(columns):
        low, high = (float(v) for v in result["ci95"][j])
        table[column] = {"a": float(result["a"][j]), "b": float(result["b"][j]), "diff": float(result["diff"][j]),
                         "ci95": None if math.isnan(low) or math.isnan(high) else [low, high],
                         "p": None if math.isnan(float(result["p"][j])) else float(result["p"][j])}
    return table


def compare_runs(folder_a: str, folder_b: str, out_dir: Optional[str] = None, *,
                 resamples: int = stats.DEFAULT_RESAMPLES, permutations: int = stats.DEFAULT_PERMUTATIONS,
                 seed: int = stats.DEFAULT_SEED, threads: int = 0, samples: int = 8, html: bool = True,
                 log=None) -> dict:
    """Compares two eval output folders (B against A) and, with out_dir, writes
    comparison.json / .md / comparison_report.json / comparison.html there.
    Returns the comparison report (what comparison_report.json holds; its
    "comparison" is comparison.json). Raises CompareError when the runs differ
    in datasets or queries."""
    for name, value in (("resamples", resamples), ("permutations", permutations), ("samples", samples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    run_a, run_b = Run(folder_a, "RUN_A"), Run(folder_b, "RUN_B")
    check_comparable(run_a, run_b)
    columns = list(metrics.LEADERBOARD_COLUMNS)
    values_a, values_b, aligned = [], [], []
    for dataset in run_a.datasets:
        rows_a, rows_b = _aligned(run_a, run_b, dataset)
        values_a.append(_values(run_a, rows_a, dataset))
        values_b.append(_values(run_b, rows_b, dataset))
        aligned.append((rows_a, rows_b))
    found = stats.paired_comparison(values_a, values_b, resamples, permutations, seed, stats.LEVEL, threads)
    comparison = {dataset: _metric_table(columns, result) for dataset, result in zip(run_a.datasets, found["datasets"])}
    average = _metric_table(columns, found["average"])
    if "Average" not in comparison:  # a dataset named "Average" keeps its name; the mean is in the report
        comparison["Average"] = average
    datasets = []
    for dataset, (rows_a, rows_b), values in zip(run_a.datasets, aligned, values_a):
        total = len(rows_a["query"])
        datasets.append({"name": dataset, "num_queries": int(len(values)), "lone_queries": total - int(len(values)),
                         "total_queries": total, "metrics": comparison[dataset],
                         "disagreements": disagreements(rows_a, rows_b, samples)})
    report = {
        "title": "PE-Core retrieval comparison",
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "runs": {key: {"folder": run.folder, "model": run.model.get("path"), "sha256": run.model.get("sha256"),
                       "random_weights": run.model.get("random_weights"), "created": run.report.get("created")}
                 for key, run in (("a", run_a), ("b", run_b))},
        "columns": columns,
        "unit": "fractions; diff = b - a",
        "bootstrap": {"resamples": resamples, "seed": seed, "level": stats.LEVEL, "method": "percentile",
                      "paired": "the same resampled queries for both models",
                      "average": "each dataset resampled independently, then the mean over datasets",
                      "generator": stats.GENERATOR, "streams": "dataset i: stream 2 i"},
        "permutation_test": {"permutations": permutations, "seed": seed,
                             "statistic": "mean over queries of b - a (the average: mean over datasets)",
                             "null": "a and b exchangeable per query: each query's difference flips sign at random",
                             "p": "(1 + #{|T_perm| >= |T_observed|}) / (1 + permutations), two-sided",
                             "streams": "dataset i: stream 2 i + 1"},
        "ap_normalizer": run_a.ap_normalizer,
        "versions": {"perception_retrieval": __version__},
        "datasets": datasets,
        "average": average,
        "comparison": comparison,
    }
    if out_dir:
        for path in write_comparison(out_dir, report, html):
            if log:
                log(f"wrote {path}")
    return report


def _points(value) -> str:
    return "—" if value is None else f"{100 * value:+.2f}"


def _percent(value) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def format_p(p) -> str:
    """p with 3 decimals, or in scientific notation below 0.001."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def _md(text) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def comparison_markdown(report: dict) -> str:
    """The comparison table (percent; differences in percentage points)."""
    runs = report["runs"]
    lines = ["# Model comparison: B - A", "",
             f"- A: {_md(runs['a'].get('model') or '?')} ({_md(runs['a']['folder'])})",
             f"- B: {_md(runs['b'].get('model') or '?')} ({_md(runs['b']['folder'])})", "",
             "| Dataset | Metric | A | B | B - A | 95% CI of B - A | p |", "|---|---|---|---|---|---|---|"]
    rows = [(d["name"], d["metrics"]) for d in report["datasets"]] + [("Average", report["average"])]
    for name, table in rows:
        for column in report["columns"]:
            cell = table[column]
            ci = cell["ci95"]
            interval = "—" if ci is None else f"[{_points(ci[0])}, {_points(ci[1])}]"
            lines.append(f"| {_md(name)} | {column} | {_percent(cell['a'])} | {_percent(cell['b'])} | "
                         f"{_points(cell['diff'])} | {interval} | {format_p(cell['p'])} |")
    boot, perm = report["bootstrap"], report["permutation_test"]
    counts = "; ".join(f"{_md(d['name'])} {d['num_queries']}" for d in report["datasets"])
    lines += ["", f"Values in percent, differences in percentage points. Scored queries: {counts}.",
              f"Interval: paired bootstrap over queries, percentile method, {boot['resamples']} resamples, seed "
              f"{boot['seed']} (the Average resamples every dataset independently).",
              f"p: two-sided sign-flip permutation test of the mean per-query difference, {perm['permutations']} "
              f"random sign assignments, seed {perm['seed']}; p = (1 + #{{|T*| >= |T|}}) / (1 + "
              f"{perm['permutations']}), so it is never below {format_p(1 / (1 + perm['permutations']))}."
              if perm["permutations"] else "p: not computed (--permutations 0).", ""]
    return "\n".join(lines)


def write_comparison(out_dir: str, report: dict, html: bool = True) -> List[str]:
    os.makedirs(out_dir, exist_ok=True)
    written = [
        _write_text(os.path.join(out_dir, "comparison.json"), json.dumps(_json_safe(report["comparison"]), indent=2)),
        _write_text(os.path.join(out_dir, "comparison.md"), comparison_markdown(report)),
        _write_text(os.path.join(out_dir, "comparison_report.json"), json.dumps(_json_safe(report), indent=2)),
    ]
    if html:
        from . import html_report

        path = os.path.join(out_dir, "comparison.html")
        html_report.write_comparison_html(path, _json_safe(report))
        written.append(path)
    return written
