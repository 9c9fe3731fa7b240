"""The evaluation pipeline: datasets -> embeddings (cached) -> exact top-k -> metrics -> reports.

    from perception_retrieval import datasets, evaluation
    run = evaluation.Evaluation("pe_core_l14_336.pt", cache_dir="~/.cache/perception_retrieval")
    report = run.evaluate([datasets.load_spec("SOP=sop:/data/Stanford_Online_Products")], out_dir="runs/sop")

Each stage hands plain arrays to the next: Encoder (C++) -> numpy embeddings ->
Retriever (C++, exact search) -> ranking -> metrics (C++) -> Report. Every
number in the table comes from metrics.evaluate on the ranking the Retriever
returned; nothing is estimated.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__, cache as embedding_cache, errors, image, metrics, stats
from ._native import Retriever
from .datasets import Dataset, ImageRef, check_unique_names
from .encoder import DEFAULTS as ENCODER_DEFAULTS, Encoder

CURVE_DEPTH = 10          # P@k / R@k curves for k = 1..10, and the depth of every ranking
SAMPLE_RESULTS = 5        # results shown per sample query in the HTML report
FAILURE_QUERIES = 8       # lowest-AP queries shown per dataset
CONFUSED_PAIRS = 10       # most frequent (query instance -> wrong rank-1 instance) pairs listed
# Per-query CSV column of each leaderboard metric (mAP@10 is the mean of AP@10).
PER_QUERY_COLUMNS = {"P@1": "P@1", "P@5": "P@5", "R@1": "R@1", "R@5": "R@5", "mAP@10": f"AP@{CURVE_DEPTH}"}

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class EncodingProgress:
    """Progress over a whole dataset (several encode calls): a bar with rate and
    ETA on a terminal, otherwise one log line per chunk."""

    def __init__(self, label: str, total: int, cached: int, log: Log = _stderr, stream=None):
        self.label, self.total, self.cached, self.log = label, total, cached, log
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.perf_counter()
        self.done = 0
        self.bar = None
        if self.tty:  # tqdm's bar where tqdm is installed (encoder.progress_bar)
            from .encoder import _TqdmProgress, progress_bar

            bar = progress_bar(total, f"{label}: encoding", self.stream)
            if isinstance(bar, _TqdmProgress):
                self.bar = bar
                if cached:
                    bar.bar.set_postfix_str(f"{cached} cached")

    def update(self, done: int) -> None:
        self.done = done
        if self.bar is not None:
            self.bar(done, self.total)
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        cached = f", {self.cached} cached" if self.cached else ""
        if self.tty:
            width = 28
            filled = int(width * done / max(self.total, 1))
            self.stream.write(f"\r{self.label}: encoding [{'#' * filled}{'.' * (width - filled)}] "
                              f"{done}/{self.total} {rate:.1f} img/s ETA {_duration(eta)}{cached}  ")
            if done >= self.total:
                self.stream.write("\n")
            self.stream.flush()

    def chunk_finished(self) -> None:
        if not self.tty:
            elapsed = time.perf_counter() - self.started
            rate = self.done / max(elapsed, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self.log(f"{self.label}: encoded {self.done}/{self.total} ({rate:.1f} img/s, "
                     f"ETA {_duration(eta)})")


@dataclass
class EmbeddingPlan:
    """Evaluation.plan_embedding's answer (see there)."""

    keys: List[str]
    embeddings: np.ndarray      # N x D; cached rows filled in
    found: np.ndarray           # N bools: row came from the cache
    todo: List[int]             # rows to encode, in order, one per distinct content
    copies: List[Tuple[int, int]]  # (row, row with the same content in todo)
    hash_seconds: float

    def finish(self, failures: Dict[int, str], encode_started: float, **timing) -> Tuple[np.ndarray, Dict[int, str], dict]:
        """Copies each encoded row to its duplicates (or its failure), and the timing."""
        for i, original in self.copies:
            if original in failures:
                failures[i] = failures[original]
            else:
                self.embeddings[i] = self.embeddings[original]
        timing = {"hash_s": self.hash_seconds, "encode_s": time.perf_counter() - encode_started,
                  "encoded_images": len(self.todo) - sum(1 for i in self.todo if i in failures),
                  "cached_images": int(self.found.sum()), "failed_images": len(failures), **timing}
        return self.embeddings, failures, timing


class Evaluation:
    """One model, evaluated on one or several datasets.

    model_path: TorchScript file from the export tool.
    cache_dir:  embedding cache folder (None = no cache).
    chunk_size: images encoded between two cache writes; a killed run loses at
                most one chunk.
    on_error:   "raise" stops at the first unreadable image (naming it);
                "skip" leaves such images out and reports them.
    threads:    search and scoring threads (0 = every usable CPU); when > 0 also LibTorch's
                intra-op threads, process-wide (0 leaves LibTorch's setting alone)
    tune_allocator: see Encoder (process-wide; the command line turns it on)
    bootstrap:  resamples for the 95% intervals of every score (0 = none);
    seed:       seed of those resamples (see perception_retrieval.stats).
    client:     a dask.distributed Client: encoding and search run on its workers
                (perception_retrieval.distributed; threads is then per worker, 0 =
                its share of its host's CPUs, and device may be "worker"); scoring
                stays here. send_model / send_images: ship the model / image bytes
                from here instead of the workers reading the same paths.
    """

    def __init__(self, model_path: str, *, device: str = "cpu", dtype: str = "float32",
                 batch_size: int = ENCODER_DEFAULTS["batch_size"], threads: int = 0, decode_threads: int = 0,
                 tune_allocator: bool = False, cache_dir: Optional[str] = None,
                 chunk_size: int = 256, on_error: str = "raise", ap_normalizer: str = "min_r_k",
                 samples: int = 8, log: Log = _stderr,
                 bootstrap: int = stats.DEFAULT_RESAMPLES, seed: int = stats.DEFAULT_SEED,
                 client=None, send_model: bool = False, send_images: bool = False):
        self.bootstrap, self.seed = _bootstrap_settings(bootstrap, seed)
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"model file {model_path} not found; make one with "
                                    "perception-retrieval-export (see the README)")
        self.model_path = os.path.abspath(model_path)
        self.threads, self.chunk_size, self.on_error = threads, chunk_size, on_error
        self.ap_normalizer, self.samples, self.log = ap_normalizer, samples, log
        self.cache_dir = os.path.abspath(os.path.expanduser(cache_dir)) if cache_dir else None
        self.client, self.send_model, self.send_images = client, send_model, send_images
        self.batch_size, self.decode_threads, self.tune_allocator = batch_size, decode_threads, tune_allocator
        # With a cluster, this encoder only describes the model (metadata, width)
        # and embeds search queries; the device is the workers' business.
        self.encoder = Encoder(self.model_path, device=device if client is None else "cpu", batch_size=batch_size,
                               threads=threads, decode_threads=decode_threads, dtype=dtype,
                               tune_allocator=tune_allocator)
        self.metadata = self.encoder.metadata
        started = time.perf_counter()
        memo_dir = self.cache_dir or None
        if memo_dir:
            self.model_sha256 = embedding_cache.model_digest(self.model_path, memo_dir)
            key = embedding_cache.model_key(self.model_sha256, dtype, bool(self.metadata.get("normalized", True)))
            self.cache = embedding_cache.EmbeddingCache(self.cache_dir, key)
        else:
            self.model_sha256 = embedding_cache.file_sha256(self.model_path)
            self.cache = None
        self.hash_seconds = time.perf_counter() - started
        self.device, self.dtype = device, self.encoder.dtype

    @property
    def random_weights(self) -> bool:
        return self.metadata.get("source_checkpoint_layout") == "random-init"

    # -- encoding ------------------------------------------------------------

    def _model_input(self, ref: ImageRef):
        """What the Encoder takes for one image: its path, or its cropped pixels."""
        if ref.crop is None:
            return ref.path
        pixels = image.decode(ref.path)
        x, y, w, h = ref.crop
        return np.ascontiguousarray(pixels[y:y + h, x:x + w])

    def embed(self, images: Sequence[ImageRef], label: str = "images") -> Tuple[np.ndarray, Dict[int, str], dict]:
        """Embeddings of images (N x D float32, input order), failures {index: reason}
        (rows of failed images are zero; only with on_error="skip"), and timing."""
        if self.client is not None:
            from . import distributed

            return distributed.embed(self, images, label)
        plan = self.plan_embedding(images)
        keys, embeddings, found, todo = plan.keys, plan.embeddings, plan.found, plan.todo
        failures: Dict[int, str] = {}
        progress = EncodingProgress(label, len(todo), int(found.sum()), self.log)
        encode_started = time.perf_counter()
        if self.cache is not None and found.any():
            self.log(f"{label}: {int(found.sum())} of {len(images)} embeddings found in the cache "
                     f"({self.cache.folder})")
        for begin, end in embedding_cache.chunks(len(todo), self.chunk_size):
            indices = todo[begin:end]
            inputs, kept = [], []
            for i in indices:
                try:
                    inputs.append(self._model_input(images[i]))
                    kept.append(i)
                except errors.Error as error:
                    if self.on_error == "raise":
                        raise
                    failures[i] = str(error)
            chunk_progress = (lambda done, _total, base=begin + len(indices) - len(kept):
                              progress.update(base + done))
            if inputs:
                if self.on_error == "skip":
                    chunk_embeddings, rows, chunk_failures = self.encoder.encode(inputs, on_error="skip",
                                                                                 progress=chunk_progress)
                    for row, reason in chunk_failures:
                        failures[kept[row]] = reason
                    done = [kept[row] for row in np.asarray(rows, dtype=np.int64).tolist()]
                else:
                    chunk_embeddings = self.encoder.encode(inputs, progress=chunk_progress)
                    done = kept
                embeddings[done] = chunk_embeddings
                if self.cache is not None:
                    self.cache.store([keys[i] for i in done], chunk_embeddings)
            progress.update(end)
            progress.chunk_finished()
        return plan.finish(failures, encode_started)

    def plan_embedding(self, images: Sequence[ImageRef]) -> "EmbeddingPlan":
        """What embed must encode: the cached rows filled in, the rest to do,
        identical contents (copied files) listed once. Shared by embed and
        distributed.embed, so both encode the same images in the same order."""
        dim = self.encoder.embedding_dim
        started = time.perf_counter()
        if self.cache is not None:
            keys = self.cache.keys_for(images)
            embeddings, found = self.cache.lookup(keys, dim)
        else:
            keys = [str(i) for i in range(len(images))]
            embeddings, found = np.zeros((len(images), dim), dtype=np.float32), np.zeros(len(images), dtype=bool)
        hash_seconds = time.perf_counter() - started
        first_of_key: Dict[str, int] = {}
        todo, copies = [], []
        for i in np.flatnonzero(~found).tolist():
            if keys[i] in first_of_key:
                copies.append((i, first_of_key[keys[i]]))
            else:
                first_of_key[keys[i]] = i
                todo.append(i)
        return EmbeddingPlan(keys, embeddings, found, todo, copies, hash_seconds)

    # -- search and scoring --------------------------------------------------

    def _rank(self, dataset: Dataset, embeddings: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """rank() here, or on the cluster's sharded gallery (bitwise the same)."""
        if self.client is None:
            return rank(dataset, embeddings, CURVE_DEPTH, self.threads)
        from . import distributed

        return distributed.rank(self.client, dataset, embeddings, CURVE_DEPTH, self.threads)

    # -- the whole run -------------------------------------------------------

    def evaluate_dataset(self, dataset: Dataset) -> Tuple[dict, dict, List[dict]]:
        """(summary for report.json, metrics result with per-query arrays, sample queries)."""
        self.log(dataset.summary())
        embeddings, failures, timing = self.embed(dataset.images, dataset.name)
        failed_images = [{"image": str(dataset.images[i]), "reason": reason} for i, reason in sorted(failures.items())]
        if failures:
            self.log(f"{dataset.name}: {len(failures)} images could not be read and are left out:")
            for index, reason in list(failures.items())[:10]:
                self.log(f"  {dataset.images[index]}: {reason}")
            dataset, embeddings = _without_images(dataset, embeddings, set(failures))
        started = time.perf_counter()
        scores, ranking = self._rank(dataset, embeddings)
        timing["search_s"] = time.perf_counter() - started
        started = time.perf_counter()
        result = score(dataset, ranking, ap_normalizer=self.ap_normalizer, threads=self.threads)
        timing["score_s"] = time.perf_counter() - started
        ks = list(range(1, CURVE_DEPTH + 1))
        summary = {
            "name": dataset.name, "format": dataset.format, "path": dataset.root, "protocol": dataset.protocol,
            "num_queries": result["num_queries"], "lone_queries": result["lone_queries"],
            "total_queries": result["total_queries"], "gallery_size": int(len(dataset.gallery_images)),
            "num_images": len(dataset.images), "exclude_self": bool((dataset.query_self_indices >= 0).any()),
            "failed_images": failed_images,
            "notes": dataset.notes,
            "metrics": {column: result[column] for column in metrics.LEADERBOARD_COLUMNS},
            "curves": {"k": ks, "P@k": [result[f"P@{k}"] for k in ks], "R@k": [result[f"R@{k}"] for k in ks],
                       "HitRate@k": [result[f"HitRate@{k}"] for k in ks]},
            "timing": timing,
        }
        summary.update(_failure_analysis(dataset, result, scores, ranking))
        per_query = _per_query_rows(dataset, result, scores, ranking)
        return summary, per_query, _samples(dataset, result, scores, ranking, self.samples)

    def evaluate(self, datasets: Sequence[Dataset], out_dir: Optional[str] = None, html: bool = True) -> dict:
        """Runs every dataset, prints the table, writes the reports to out_dir."""
        check_unique_names(datasets)
        started = time.perf_counter()
        table = metrics.Report()
        summaries, samples, per_query = [], {}, {}
        if self.random_weights:
            self.log("NOTE: this model has random weights (exported with --random-init): the numbers below "
                     "exercise the pipeline and are not meaningful; export a real checkpoint for real scores.")
        for dataset in datasets:
            summary, rows, dataset_samples = self.evaluate_dataset(dataset)
            table.add(dataset.name, {**summary["metrics"], "num_queries": summary["num_queries"],
                                     "lone_queries": summary["lone_queries"], "ap_normalizer": self.ap_normalizer})
            summaries.append(summary)
            samples[dataset.name] = dataset_samples
            per_query[dataset.name] = rows
        report = {
            "title": "PE-Core retrieval evaluation",
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "model": {"path": self.model_path, "sha256": self.model_sha256, "random_weights": self.random_weights,
                      "device": self.device, "dtype": self.dtype, "metadata": self.metadata},
            "versions": _versions(),
            "metric_variant": {
                "ap_normalizer": self.ap_normalizer,
                "precision": "hits in top k / k",
                "recall": "hits in top k / R (R = relevant gallery items)",
                "mAP": {"min_r_k": "AP@k divided by min(R, k)", "r": "AP@k divided by R",
                        "hits": "AP@k divided by the hits in the top k"}[self.ap_normalizer],
                "lone_queries": "queries with R = 0 are excluded from every average and counted",
                "self_match": "a query's own image is excluded by index, not by dropping rank 1",
                "ties": "score descending, then gallery index ascending",
                "average": "macro mean over datasets",
            },
            "columns": list(metrics.LEADERBOARD_COLUMNS),
            "datasets": summaries,
            "average": table.average(),
            "threads": self.threads,
            "timing": {"model_hash_s": self.hash_seconds, "total_s": time.perf_counter() - started},
        }
        report.update(add_intervals(summaries, per_query, table, self.bootstrap, self.seed, self.threads))
        print(table.to_markdown(), flush=True)
        if out_dir:
            for path in write_outputs(out_dir, report, table, per_query, samples, html):
                self.log(f"wrote {path}")
        return report


def rank(dataset: Dataset, embeddings: np.ndarray, depth: int = CURVE_DEPTH,
         threads: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(scores, ranking): exact top-depth gallery positions per query (Q x depth,
    -1 padded when the gallery is smaller), each query's own image excluded by index.
    embeddings: one row per dataset image."""
    return search_gallery(Retriever(embeddings.shape[1]), dataset, embeddings, depth, threads)


def search_gallery(gallery, dataset: Dataset, embeddings: np.ndarray, depth: int,
                   threads: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """rank's work on an empty index: a Retriever, or distributed's
    ShardedRetriever (same contract), so both rank the same way."""
    gallery.add(np.ascontiguousarray(embeddings[dataset.gallery_images]),
                np.arange(len(dataset.gallery_images), dtype=np.int64))
    queries = np.ascontiguousarray(embeddings[dataset.query_images])
    if dataset.all_vs_all:
        return gallery.search(queries, depth, exclude_self=True, threads=threads)
    own = dataset.query_self_indices
    if (own >= 0).any():
        return gallery.search(queries, depth, exclude_ids=own, threads=threads)
    return gallery.search(queries, depth, threads=threads)


def score(dataset: Dataset, ranking: np.ndarray, ks: Sequence[int] = tuple(range(1, CURVE_DEPTH + 1)),
          map_k: int = CURVE_DEPTH, ap_normalizer: str = "min_r_k", threads: int = 0) -> dict:
    """metrics.evaluate over a ranking from rank(): P@k, R@k, HitRate@k for each
    k in ks and mAP@map_k, per query too."""
    codes = dataset.instance_codes()
    own = dataset.query_self_indices
    return metrics.evaluate(ranking, codes[dataset.query_images], codes[dataset.gallery_images],
                            ks=ks, map_k=map_k, ap_normalizer=ap_normalizer,
                            per_query=True, threads=threads, self_indices=own if (own >= 0).any() else None)


def _without_images(dataset: Dataset, embeddings: np.ndarray, failed: set) -> Tuple[Dataset, np.ndarray]:
    """The dataset and embeddings without the failed images (queries and gallery
    renumbered, never shifted against each other)."""
    keep = np.array([i not in failed for i in range(len(dataset.images))])
    new_index = np.cumsum(keep) - 1
    queries = dataset.query_images[keep[dataset.query_images]]
    gallery = dataset.gallery_images[keep[dataset.gallery_images]]
    if len(queries) == 0 or len(gallery) == 0:
        raise RuntimeError(f"dataset {dataset.name!r}: every {'query' if len(queries) == 0 else 'gallery'} image "
                           "failed to load; nothing to evaluate")
    reduced = replace(dataset, images=[im for im, k in zip(dataset.images, keep) if k],
                      instance_ids=[label for label, k in zip(dataset.instance_ids, keep) if k],
                      query_images=new_index[queries].astype(np.int64),
                      gallery_images=new_index[gallery].astype(np.int64),
                      notes=dataset.notes + [f"{len(failed)} unreadable images left out"])
    return reduced, embeddings[keep]


def _per_query_rows(dataset: Dataset, result: dict, scores: np.ndarray, ranking: np.ndarray) -> dict:
    columns = result["per_query"]
    rows = {
        "query": [dataset.images[i].path for i in dataset.query_images],
        "crop": [",".join(map(str, dataset.images[i].crop)) if dataset.images[i].crop else ""
                 for i in dataset.query_images],
        "instance_id": [dataset.instance_ids[i] for i in dataset.query_images],
        "R": columns["num_relevant"].tolist(),
    }
    for name in ("P@1", "P@5", "R@1", "R@5", "HitRate@1", "HitRate@5"):
        rows[name] = columns[name].tolist()
    rows[f"AP@{CURVE_DEPTH}"] = columns[f"AP@{CURVE_DEPTH}"].tolist()
    top = ranking[:, :SAMPLE_RESULTS]
    rows["top5"] = [";".join(dataset.images[dataset.gallery_images[g]].path for g in row if g >= 0) for row in top]
    # The same top 5 as JSON arrays (paths may hold ';'), with what a comparison
    # of two runs needs to draw them: instance ids, scores and crops.
    top_scores = scores[:, :SAMPLE_RESULTS]
    paths, ids, values, crops = [], [], [], []
    for row, row_scores in zip(top.tolist(), top_scores.tolist()):
        refs = [(dataset.images[dataset.gallery_images[g]], dataset.instance_ids[dataset.gallery_images[g]], score)
                for g, score in zip(row, row_scores) if g >= 0]
        paths.append(json.dumps([ref.path for ref, _, _ in refs]))
        ids.append(json.dumps([label for _, label, _ in refs]))
        values.append(json.dumps([float(score) for _, _, score in refs]))
        crops.append(json.dumps([list(ref.crop) if ref.crop else None for ref, _, _ in refs]))
    rows["top5_paths"], rows["top5_instance_ids"], rows["top5_scores"], rows["top5_crops"] = paths, ids, values, crops
    return rows


def _samples(dataset: Dataset, result: dict, scores: np.ndarray, ranking: np.ndarray, count: int) -> List[dict]:
    """A deterministic spread of scored queries with their top results."""
    scored = np.flatnonzero(np.asarray(result["per_query"]["num_relevant"]) > 0)
    if count <= 0 or len(scored) == 0:
        return []
    picks = scored[np.unique(np.linspace(0, len(scored) - 1, num=min(count, len(scored))).round().astype(int))]
    return [_sample(dataset, q, scores, ranking) for q in picks.tolist()]


def _sample(dataset: Dataset, q: int, scores: np.ndarray, ranking: np.ndarray) -> dict:
    """Query q with its top results, as the HTML report shows them."""
    query = dataset.images[dataset.query_images[q]]
    query_label = dataset.instance_ids[dataset.query_images[q]]
    results = []
    for g, score in zip(ranking[q, :SAMPLE_RESULTS].tolist(), scores[q, :SAMPLE_RESULTS].tolist()):
        if g < 0:
            break
        ref = dataset.images[dataset.gallery_images[g]]
        label = dataset.instance_ids[dataset.gallery_images[g]]
        results.append({"path": ref.path, "instance_id": label, "score": float(score),
                        "relevant": label == query_label, "crop": list(ref.crop) if ref.crop else None})
    return {"query": {"path": query.path, "instance_id": query_label,
                      "crop": list(query.crop) if query.crop else None}, "results": results}


def _failure_analysis(dataset: Dataset, result: dict, scores: np.ndarray, ranking: np.ndarray) -> dict:
    """Where the model fails: the lowest-AP scored queries with their top
    results (ties by query order), and the (query instance -> different instance
    at rank 1) pairs that occur most often, with counts."""
    columns = result["per_query"]
    ap = np.asarray(columns[f"AP@{CURVE_DEPTH}"], dtype=np.float64)
    scored = np.flatnonzero(np.asarray(columns["num_relevant"]) > 0)
    worst = scored[np.lexsort((scored, ap[scored]))][:FAILURE_QUERIES]
    lowest = []
    for q in worst.tolist():
        sample = _sample(dataset, q, scores, ranking)
        sample.update(ap=float(ap[q]), num_relevant=int(columns["num_relevant"][q]))
        lowest.append(sample)
    pairs: Dict[Tuple[str, str], int] = {}
    errors = 0
    for q in scored.tolist():
        g = int(ranking[q, 0]) if ranking.shape[1] else -1
        if g < 0:
            continue
        query_label = dataset.instance_ids[dataset.query_images[q]]
        found_label = dataset.instance_ids[dataset.gallery_images[g]]
        if found_label != query_label:
            errors += 1
            pairs[(query_label, found_label)] = pairs.get((query_label, found_label), 0) + 1
    ordered = sorted(pairs.items(), key=lambda item: (-item[1], str(item[0][0]), str(item[0][1])))
    return {"lowest_ap_queries": lowest, "rank1_errors": errors,
            "confusions": [{"query_instance": a, "retrieved_instance": b, "count": count}
                           for (a, b), count in ordered[:CONFUSED_PAIRS]]}


def _bootstrap_settings(bootstrap, seed) -> Tuple[int, int]:
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise ValueError(f"bootstrap must be an integer >= 0 (resamples; 0 = no intervals), got {bootstrap!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 64:
        raise ValueError(f"seed must be an integer in [0, 2^64), got {seed!r}")
    return int(bootstrap), int(seed)


def scored_values(rows: dict) -> np.ndarray:
    """The scored queries' leaderboard metrics as a Q x 5 float64 array (columns
    in metrics.LEADERBOARD_COLUMNS order) from per-query rows as
    _per_query_rows() makes them or as read back from per_query/<dataset>.csv."""
    scored = np.asarray([int(r) > 0 for r in rows["R"]], dtype=bool)
    columns = [np.asarray(rows[PER_QUERY_COLUMNS[c]], dtype=object)[scored] for c in metrics.LEADERBOARD_COLUMNS]
    return np.ascontiguousarray(np.array(columns, dtype=np.float64).T.reshape(int(scored.sum()), len(columns)))


def add_intervals(summaries: List[dict], per_query: Dict[str, dict], table: "metrics.Report", resamples: int,
                  seed: int, threads: int = 0) -> dict:
    """95% bootstrap intervals over queries for every dataset (summary["ci95"])
    and the Average row, also set on the table. Returns the report's
    "bootstrap" settings and "average_ci95" (absent with 0 resamples)."""
    settings = {"resamples": resamples, "seed": seed, "level": stats.LEVEL, "method": "percentile",
                "unit": "queries (each dataset resampled independently for the Average)",
                "generator": stats.GENERATOR, "streams": "dataset i (in the order given) uses stream i"}
    if resamples == 0 or not summaries:
        return {"bootstrap": settings}
    columns = list(metrics.LEADERBOARD_COLUMNS)
    found = stats.dataset_intervals([scored_values(per_query[s["name"]]) for s in summaries], resamples, seed,
                                    stats.LEVEL, threads)
    for summary, interval in zip(summaries, found["datasets"]):
        summary["ci95"] = stats.interval_dict(columns, interval)
        table.set_intervals(summary["name"], summary["ci95"])
    average = stats.interval_dict(columns, found["average"])
    table.set_average_intervals(average)
    table.set_interval_method(stats.LEVEL, resamples, seed)
    return {"bootstrap": settings, "average_ci95": average}


def _versions() -> dict:
    import torch

    return {"perception_retrieval": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "dataset"


def _write_text(path: str, text: str) -> str:
    # Write beside, then rename: an interrupted run never leaves half a file.
    with open(path + ".tmp", "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(path + ".tmp", path)
    return path


def _json_safe(value):
    """NaN (no scored query) becomes null: strict JSON readers reject NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_outputs(out_dir: str, report: dict, table: "metrics.Report", per_query: Dict[str, dict],
                  samples: Dict[str, List[dict]], html: bool = True) -> List[str]:
    """report.md/.csv/.json, results.json (per dataset, the five metrics as
    fractions), per_query/<dataset>.csv and report.html."""
    os.makedirs(os.path.join(out_dir, "per_query"), exist_ok=True)
    written = [
        _write_text(os.path.join(out_dir, "report.md"), table.to_markdown() + failures_markdown(report)),
        _write_text(os.path.join(out_dir, "report.csv"), table.to_csv()),
        _write_text(os.path.join(out_dir, "report.json"), json.dumps(_json_safe(report), indent=2)),
        _write_text(os.path.join(out_dir, "results.json"), json.dumps(_json_safe(
            {d["name"]: _results_entry(d) for d in report["datasets"]}), indent=2)),
    ]
    for name, rows in per_query.items():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(list(rows))
        for values in zip(*rows.values()):
            writer.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in values])
        written.append(_write_text(os.path.join(out_dir, "per_query", _safe_name(name) + ".csv"), buffer.getvalue()))
    if html:
        from . import html_report

        path = os.path.join(out_dir, "report.html")
        html_report.write_html_report(path, _json_safe(report), samples)
        written.append(path)
    return written


def _results_entry(summary: dict) -> dict:
    """A dataset's results.json entry: the five metrics (fractions) and, when
    intervals were computed, "ci95": {metric: [low, high]}."""
    entry = dict(summary["metrics"])
    if "ci95" in summary:
        entry["ci95"] = summary["ci95"]
    return entry


def _markdown_cell(value) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def failures_markdown(report: dict) -> str:
    """report.md's "Where the model fails" section: per dataset the lowest-AP
    queries with the instance ids of their top 5, and the pairs of instances
    most often confused at rank 1."""
    out = []
    for summary in report.get("datasets", []):
        lowest, confusions = summary.get("lowest_ap_queries"), summary.get("confusions")
        if not lowest and not confusions:
            continue
        out.append(f"\n### {_markdown_cell(summary['name'])}\n")
        if lowest:
            out.append(f"\nLowest AP@{CURVE_DEPTH} queries (top {SAMPLE_RESULTS}: instance ids, * = same instance):\n\n"
                       f"| Query | Instance | R | AP@{CURVE_DEPTH} | Top {SAMPLE_RESULTS} |\n|---|---|---|---|---|\n")
            for sample in lowest:
                query = sample["query"]
                top = ", ".join(("*" if r["relevant"] else "") + str(r["instance_id"]) for r in sample["results"])
                out.append(f"| {_markdown_cell(query['path'])} | {_markdown_cell(query['instance_id'])} | "
                           f"{sample['num_relevant']} | {100 * sample['ap']:.2f} | {_markdown_cell(top)} |\n")
        if confusions:
            out.append(f"\nMost confused instances ({summary.get('rank1_errors', 0)} queries with a wrong rank 1):\n\n"
                       "| Query instance | Wrong instance at rank 1 | Queries |\n|---|---|---|\n")
            for pair in confusions:
                out.append(f"| {_markdown_cell(pair['query_instance'])} | {_markdown_cell(pair['retrieved_instance'])} "
                           f"| {pair['count']} |\n")
    return ("\n## Where the model fails\n" + "".join(out)) if out else ""
