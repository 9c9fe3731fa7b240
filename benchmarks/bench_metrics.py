#!/usr/bin/env python3
"""pe::metrics vs a vectorised numpy implementation at SOP scale.

60,502 queries (all-vs-all, self excluded), 11,316 instances, top-100 rankings
(101 columns, the query itself still inside as a search returns it). The
rankings come from a real exact search (FAISS) over simulated 32-d embeddings,
so hits sit where a model would put them. Both implementations score the same
rankings in the same run; their numbers are checked equal before timing.

    .venv/bin/python benchmarks/bench_metrics.py [--threads N] [--repeats R]

Prints the thread counts used, the best-of-R wall times and the ratio
numpy / ours (issue target: >= 5x).
"""

import argparse
import os

import numpy as np

import perception_retrieval
from perception_retrieval import metrics

from timing import best_time  # benchmarks/ is on sys.path when run as a script

NUM_IMAGES = 60_502
NUM_INSTANCES = 11_316
DEPTH = 100


def sop_like_rankings(seed=0, dim=32):
    import faiss

    rng = np.random.default_rng(seed)
    # Every instance gets at least 2 images, the rest spread at random (SOP has 2-12).
    ids = np.concatenate([np.repeat(np.arange(NUM_INSTANCES), 2),
                          rng.integers(0, NUM_INSTANCES, NUM_IMAGES - 2 * NUM_INSTANCES)])
    ids.sort()
    centres = rng.standard_normal((NUM_INSTANCES, dim)).astype(np.float32)
    embeddings = centres[ids] + 0.9 * rng.standard_normal((NUM_IMAGES, dim)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(dim)
    index.add(embeddings)
    _, ranking = index.search(embeddings, DEPTH + 1)  # the query itself comes back too
    return ranking.astype(np.int64), ids.astype(np.int64)


def numpy_metrics(ranking, query_ids, gallery_ids, ks=(1, 5), map_k=10, exclude_self=True):
    """The same definitions, vectorised: P@k / k, R@k / R, AP@k / min(R, k)."""
    num_queries = ranking.shape[0]
    relevant = gallery_ids[ranking] == query_ids[:, None]
    if exclude_self:
        not_self = ranking != np.arange(num_queries)[:, None]
        relevant &= not_self
        # Move the self column to the end of its row, keeping the others in order.
        order = np.argsort(~not_self, axis=1, kind="stable")
        relevant = np.take_along_axis(relevant, order, axis=1)
    unique_ids, counts = np.unique(gallery_ids, return_counts=True)
    num_relevant = counts[np.searchsorted(unique_ids, query_ids)] - (1 if exclude_self else 0)
    scored = num_relevant > 0
    hits = np.cumsum(relevant, axis=1)
    out = {}
    for k in ks:
        out[f"P@{k}"] = (hits[scored, k - 1] / k).mean()
        out[f"R@{k}"] = (hits[scored, k - 1] / num_relevant[scored]).mean()
    precision_at_i = hits[:, :map_k] / np.arange(1, map_k + 1)
    ap = (precision_at_i * relevant[:, :map_k]).sum(axis=1)[scored] / np.minimum(num_relevant[scored], map_k)
    out[f"mAP@{map_k}"] = ap.mean()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for ours (default: all cores)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    ranking, ids = sop_like_rankings()
    print(f"perception_retrieval {perception_retrieval.__version__}; {NUM_IMAGES} queries x {DEPTH + 1} ranked "
          f"(self included), {NUM_INSTANCES} instances, all-vs-all with self-exclusion")
    print(f"threads: ours {args.threads} (also timed with 1); numpy single-threaded "
          f"(elementwise ops do not use BLAS); cores {os.cpu_count()}")

    ours = metrics.evaluate(ranking, ids, ids, exclude_self=True, threads=args.threads)
    reference = numpy_metrics(ranking, ids, ids)
    for key, value in reference.items():
        if not abs(ours[key] - value) < 1e-9:
            raise SystemExit(f"{key}: ours {ours[key]!r} vs numpy {value!r}; the benchmark's numbers disagree")
    print("numbers agree: " + ", ".join(f"{key} {ours[key] * 100:.2f}" for key in reference))

    t_numpy = best_time(lambda: numpy_metrics(ranking, ids, ids), args.repeats)
    t_ours = best_time(lambda: metrics.evaluate(ranking, ids, ids, exclude_self=True, threads=args.threads),
                       args.repeats)
    t_ours_1 = best_time(lambda: metrics.evaluate(ranking, ids, ids, exclude_self=True, threads=1), args.repeats)
    print(f"numpy vectorised   : {t_numpy * 1000:8.1f} ms")
    print(f"ours, {args.threads} threads    : {t_ours * 1000:8.1f} ms   ratio {t_numpy / t_ours:5.1f}x (target >= 5x)")
    print(f"ours, 1 thread     : {t_ours_1 * 1000:8.1f} ms   ratio {t_numpy / t_ours_1:5.1f}x")


if __name__ == "__main__":
    main()
