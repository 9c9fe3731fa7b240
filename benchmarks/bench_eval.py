#!/usr/bin/env python3
"""Search + scoring at Stanford Online Products scale (issue #7).

60,502 synthetic L2-normalised 1024-d embeddings in 11,316 instances (SOP's
test split sizes), all-vs-all with self-exclusion, depth k = 100, scored with
the evaluation's metrics (P@1..10, R@1..10, mAP@10, min(R, k) normaliser):

  ours   evaluation.rank (pe::Retriever, exact) + evaluation.score (pe::metrics),
         the very functions `perception-retrieval eval` runs
  peer   FAISS IndexFlatIP search (k + 1, then the query itself dropped) + the
         vectorised numpy metrics of bench_metrics.py

Same thread count for both (printed); one run each after agreeing on the
numbers (7.5 TFLOP per search, so a run takes tens of seconds). Run it alone:
    flock /tmp/pe-bench.lock /usr/bin/python3 benchmarks/bench_eval.py
"""

import argparse
import os
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60_502)
    parser.add_argument("--instances", type=int, default=11_316)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both (default: all cores)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 6,000 images x 256-d")
    return parser.parse_args()


ARGS = parse_args()
if ARGS.quick:
    ARGS.images, ARGS.instances, ARGS.dim = 6_000, 1_100, 256
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)  # FAISS's sgemm reads it at load

import numpy as np  # noqa: E402

import perception_retrieval  # noqa: E402  (imports torch first, as users do)
from perception_retrieval import evaluation  # noqa: E402
from perception_retrieval.datasets import Dataset, ImageRef  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_metrics import numpy_metrics  # noqa: E402

try:
    import faiss  # noqa: E402
except ImportError:  # pragma: no cover
    sys.exit("faiss is not importable: apt-get install python3-faiss and run with /usr/bin/python3")


def sop_like_embeddings(images, instances, dim, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.concatenate([np.repeat(np.arange(instances), 2), rng.integers(0, instances, images - 2 * instances)])
    ids.sort()
    centres = rng.standard_normal((instances, dim), dtype=np.float32)
    embeddings = centres[ids] + 1.1 * rng.standard_normal((images, dim), dtype=np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings, ids.astype(np.int64)


def peer(embeddings, ids, depth, ks, map_k):
    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(embeddings)
    _, ranking = index.search(embeddings, depth + 1)  # the query itself comes back too
    ranking = ranking.astype(np.int64)
    return ranking, numpy_metrics(ranking, ids, ids, ks=ks, map_k=map_k, exclude_self=True)


def ours(dataset, embeddings, depth, ks, map_k, threads):
    _, ranking = evaluation.rank(dataset, embeddings, depth, threads)
    return ranking, evaluation.score(dataset, ranking, ks=ks, map_k=map_k, threads=threads)


def main():
    threads, depth, ks, map_k = ARGS.threads, ARGS.depth, tuple(range(1, 11)), 10
    faiss.omp_set_num_threads(threads)  # importing torch set OpenMP to 1 thread
    embeddings, ids = sop_like_embeddings(ARGS.images, ARGS.instances, ARGS.dim)
    labels = [str(i) for i in ids]
    everything = np.arange(len(ids), dtype=np.int64)
    dataset = Dataset("SOP-like", "synthetic", "", [ImageRef(str(i)) for i in everything], labels,
                      everything, everything.copy(), "all-vs-all")
    flops = 2.0 * len(ids) * len(ids) * ARGS.dim
    print(f"perception_retrieval {perception_retrieval.__version__}, faiss {faiss.__version__}; "
          f"{len(ids)} x {ARGS.dim} embeddings, {ARGS.instances} instances, all-vs-all, depth {depth}, "
          f"metrics P@1..10 R@1..10 mAP@10")
    print(f"threads: ours {threads}, FAISS omp {faiss.omp_get_max_threads()}, "
          f"OpenBLAS {os.environ['OPENBLAS_NUM_THREADS']}; cores {os.cpu_count()}; SIMD {perception_retrieval.Retriever.simd()}")

    started = time.perf_counter()
    ranking_peer, metrics_peer = peer(embeddings, ids, depth, ks, map_k)
    t_peer = time.perf_counter() - started
    started = time.perf_counter()
    ranking_ours, metrics_ours = ours(dataset, embeddings, depth, ks, map_k, threads)
    t_ours = time.perf_counter() - started

    # Agreement: our ranking is the peer's with the query itself removed.
    not_self = ranking_peer != np.arange(len(ids))[:, None]
    peer_without_self = np.array([row[keep][:depth] for row, keep in zip(ranking_peer, not_self)])
    same_rows = float(np.mean(np.all(peer_without_self == ranking_ours, axis=1)))
    worst = max(abs(metrics_ours[key] - value) for key, value in metrics_peer.items())
    # Rows can differ where two gallery items score the same to float precision;
    # the metrics below are what must agree.
    print(f"rankings identical on {same_rows * 100:.2f}% of queries; largest metric difference {worst:.2e}")
    print("  " + ", ".join(f"{key} {metrics_ours[key] * 100:.2f}" for key in ("P@1", "P@5", "R@1", "R@5", "mAP@10")))
    print(f"FAISS + numpy : {t_peer:8.2f} s  ({flops / t_peer / 1e9:6.1f} GFLOP/s of inner products)")
    print(f"ours          : {t_ours:8.2f} s  ({flops / t_ours / 1e9:6.1f} GFLOP/s)  ratio {t_peer / t_ours:.2f}x")
    if worst > 1e-9:
        raise SystemExit(f"the metrics disagree with FAISS + numpy by {worst:.2e} (> 1e-9)")


if __name__ == "__main__":
    main()
