#!/usr/bin/env python3
"""perception_retrieval.distributed on one machine against one process, same run.

  encode  a LocalCluster of --workers worker processes (what `perception-retrieval
          eval --workers 2` starts: cores / workers LibTorch threads each) against
          one process whose Encoder has all the cores, on the same N JPEGs of
          800 x 600, for test-tiny and PE-Core L14-336 (random weights). Passes
          alternate (one process, cluster, one process, cluster, ...) so that load
          from other processes hits both. Reported: img/s, the cluster's time over
          the one process's (target at L14: <= 1.10, i.e. <= 10% overhead), and what
          a run pays once: starting the cluster and loading the model on the workers.
  search  ShardedRetriever with 2 shards on the same cluster against one Retriever
          with all the cores: gallery 100,000 x 1024, k = 10, Q = 1000 and Q = 1;
          ids and scores must be bitwise identical. Also the client-side merge alone.

Exits 1 when results disagree: embeddings further apart than 1e-5 (the two sides
run OpenBLAS with different thread counts, which moves last bits; see
docs/distributed.md), or sharded search not bitwise equal to Retriever's.

    flock /tmp/pe-bench.lock .venv/bin/python benchmarks/bench_distributed.py [--l14-images 16]
        [--tiny-images 512] [--workers 2] [--skip-l14] [--skip-search]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

# Both sides as the command line runs them: idle OpenMP threads sleep (read when
# torch loads; the local cluster's workers inherit it), glibc keeps freed memory
# for the oneDNN path (tune_allocator below).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import perception_retrieval as pr  # noqa: E402
from perception_retrieval import distributed, export  # noqa: E402

from bench_encoder import write_photos  # benchmarks/ is on sys.path when run as a script


def cpu_flags():
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [flag for flag in ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                                          "avx512vl", "avx512_bf16", "amx_tile") if flag in flags]
    return []


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def thread_counts():
    """LibTorch's intra-op threads and the threads OpenBLAS really uses (asked
    from the loaded library: its environment variable is read once, at load)."""
    import ctypes

    import torch as torch_module

    counts = {"torch": torch_module.get_num_threads()}
    with open("/proc/self/maps") as maps:
        libraries = {line.split()[-1] for line in maps if "libopenblas" in line}
    for library in sorted(libraries):
        try:
            counts["OpenBLAS"] = ctypes.CDLL(library).openblas_get_num_threads()
            break
        except (OSError, AttributeError):
            continue
    return counts


def worker_threads(client):
    return "; ".join(f"{address.rsplit(':', 1)[-1]}: {counts}"
                     for address, counts in sorted(client.run(thread_counts).items()))


def bench_encode(client, config, count, args, folder, failures):
    model = os.path.join(folder, f"{config}.pt")
    seconds, _ = timed(lambda: export.export(model, config=config, random_init=True, seed=0, verify=False, log=None))
    paths = write_photos(folder, count)
    cores = pr.usable_cpu_count()
    print(f"\n== encode, {config} (random weights), {count} JPEGs 800x600, batch {args.batch_size} "
          f"(export took {seconds:.0f} s)")
    local = pr.Encoder(model, batch_size=args.batch_size, threads=cores, decode_threads=cores, tune_allocator=True)
    # Two forwards each before timing: the first allocates and the second is
    # where TorchScript's profiling executor optimises the graph.
    warm_up = paths[:args.batch_size * args.workers]
    for _ in range(2):
        local.encode(paths[:args.batch_size])
    first, _ = timed(lambda: distributed.encode(client, model, warm_up, batch_size=args.batch_size,
                                                chunk_size=args.batch_size, tune_allocator=True))
    distributed.encode(client, model, warm_up, batch_size=args.batch_size, chunk_size=args.batch_size,
                       tune_allocator=True)
    print(f"cluster first call (each worker loads the model, then one batch): {first:.1f} s")
    print(f"threads: one process {thread_counts()}, decode {cores}; workers (by port) {worker_threads(client)}, "
          f"decode {max(1, cores // args.workers)} each")
    one, cluster = [], []
    for round_ in range(args.rounds):
        order = ("one", "cluster") if round_ % 2 == 0 else ("cluster", "one")
        for side in order:
            if side == "one":
                seconds, want = timed(lambda: local.encode(paths))
                one.append(seconds)
            else:
                seconds, got = timed(lambda: distributed.encode(client, model, paths, batch_size=args.batch_size,
                                                                tune_allocator=True))
                cluster.append(seconds)
    t_one, t_cluster = sum(one), sum(cluster)
    paired = statistics.median(c / o for c, o in zip(cluster, one))
    difference = float(np.abs(got - want).max())
    cosine = float((got * want).sum(axis=1).min())
    ratio = t_cluster / t_one
    print(f"one process ({cores} threads): {count * len(one) / t_one:.2f} img/s; passes {[f'{s:.1f}' for s in one]} s")
    print(f"cluster ({args.workers} workers): {count * len(cluster) / t_cluster:.2f} img/s; passes "
          f"{[f'{s:.1f}' for s in cluster]} s")
    print(f"cluster time / one-process time: {ratio:.3f} over all passes ({100 * (ratio - 1):+.1f}% overhead"
          + (", target <= +10%" if "L14" in config else "") + f"); median of the pass pairs {paired:.3f}")
    print(f"embeddings: max abs difference {difference:.2e}, min cosine {cosine:.8f}")
    if difference > 1e-5:
        failures.append(f"{config}: embeddings differ by {difference:.2e}")
    return ratio


def bench_search(client, args, failures):
    n, dim, k = args.n, args.dim, args.k
    print(f"\n== search, {n:,} x {dim} gallery (cosine, float32), k = {k}, 2 shards vs one Retriever")
    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((n, dim), dtype=np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    ids = np.arange(n, dtype=np.int64)
    queries = np.ascontiguousarray(gallery[rng.integers(0, n, args.queries)]
                                   + 0.05 * rng.standard_normal((args.queries, dim), dtype=np.float32))
    cores = pr.usable_cpu_count()
    single = pr.Retriever(dim)
    single.add(gallery, ids)
    sharded = distributed.ShardedRetriever(client, dim, shards=2)
    seconds, _ = timed(lambda: sharded.add(gallery, ids))
    print(f"sharded add (scatter {gallery.nbytes / 2**20:.0f} MiB to 2 workers, build the shards): {seconds:.2f} s")
    print(f"threads: one Retriever {cores}; each shard cores / workers = {max(1, cores // args.workers)}; "
          f"kernels {pr.Retriever.simd()}")
    results = {}
    for count, repeats in ((args.queries, args.repeats), (1, 10 * args.repeats)):
        batch = np.ascontiguousarray(queries[:count])
        single.search(batch, k, threads=cores)
        sharded.search(batch, k)
        times = {"one": [], "sharded": []}
        for r in range(repeats):
            for side in (("one", "sharded") if r % 2 == 0 else ("sharded", "one")):
                if side == "one":
                    seconds, want = timed(lambda: single.search(batch, k, threads=cores))
                else:
                    seconds, got = timed(lambda: sharded.search(batch, k))
                times[side].append(seconds)
        same = np.array_equal(got[1], want[1]) and np.array_equal(got[0].view(np.uint32), want[0].view(np.uint32))
        if not same:
            failures.append(f"sharded search Q={count} is not bitwise Retriever's")
        t_one, t_sharded = statistics.median(times["one"]), statistics.median(times["sharded"])
        gflop = 2 * count * n * dim / 1e9
        print(f"Q = {count}: one Retriever {1e3 * t_one:.2f} ms ({gflop / t_one:.0f} GFLOP/s), sharded "
              f"{1e3 * t_sharded:.2f} ms ({gflop / t_sharded:.0f} GFLOP/s); sharded / one {t_sharded / t_one:.2f}x; "
              f"ids and scores bitwise identical: {same}")
        results[count] = t_sharded / t_one
    # The merge alone, on the shards' own answers computed here.
    halves = []
    for begin, end in ((0, n // 2), (n // 2, n)):
        part = pr.Retriever(dim)
        part.add(np.ascontiguousarray(gallery[begin:end]), ids[begin:end].copy())
        halves.append(part.search(queries, k, threads=cores))
    merge = statistics.median(timed(lambda: distributed.merge_top_k(halves, k))[0] for _ in range(20))
    print(f"merge of 2 x ({args.queries} x {k}) shard answers on the client: {1e3 * merge:.2f} ms")
    sharded.close()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tiny-images", type=int, default=512)
    parser.add_argument("--l14-images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="passes per side (alternating)")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-l14", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (the machine is shared: other processes use the cores)")
    print(f"usable CPUs {pr.usable_cpu_count()}; CPU flags {' '.join(cpu_flags())} (library: {pr.cpu_features()}); "
          f"Retriever kernels {pr.Retriever.simd()}; "
          f"torch {torch.__version__}; perception_retrieval {pr.__version__}; OMP_WAIT_POLICY "
          f"{os.environ.get('OMP_WAIT_POLICY')}")
    failures = []
    started = time.perf_counter()
    with distributed.connect(workers=args.workers, log=None) as client:
        client.wait_for_workers(args.workers, timeout=120)
        print(f"cluster start ({args.workers} worker processes, 1 task thread each): "
              f"{time.perf_counter() - started:.1f} s; {distributed.describe(client)}")
        with tempfile.TemporaryDirectory() as folder:
            bench_encode(client, "test-tiny", args.tiny_images, args, folder, failures)
            if not args.skip_l14:
                bench_encode(client, "PE-Core-L14-336", args.l14_images, args, folder, failures)
        if not args.skip_search:
            bench_search(client, args, failures)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if failures:
        print("DISAGREEMENT: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
