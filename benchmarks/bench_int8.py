#!/usr/bin/env python3
"""int8 Linear layers (export --quantize dynamic_int8) against fp32: speed, embedding
cosine and top-10 neighbour agreement, on the demo's two product sets.

Both files come from the same random weights (PE-Core L14-336 unless --config), so
the comparison is of the quantization alone; random weights cannot show how real
weights quantize, which is why int8 stays opt-in (docs/encoder_speed.md).

For each demo set (the ones `perception-retrieval demo` writes, same seeds and sizes):
  speed:     images/s of pe::Encoder with the fp32 file and with the int8 file, through
             the evaluation's embed (crops included), in the order fp32, int8 on the
             first set and int8, fp32 on the second (the machine is shared);
  cosine:    per image, int8 embedding . fp32 embedding (both L2-normalised);
  agreement: per query, |top-10 by int8  intersect  top-10 by fp32| / 10 (the gallery
             may be smaller: then over its size), top-1 identical, and mAP@10 of each.
Prints the ISA, thread counts and the in-run sgemm rates, like bench_encoder.py.

    flock /tmp/pe-bench.lock .venv/bin/python benchmarks/bench_int8.py [--threads N] [--instances 8]
"""

import argparse
import os
import tempfile
import time

from perception_retrieval.process import claim_process

claim_process()  # before torch loads: what the command line runs with (process.PROCESS_ENVIRONMENT)

import numpy as np
import torch

import perception_retrieval as pr
from perception_retrieval import cli, evaluation, export

from bench_encoder import sgemm_gflops  # benchmarks/ is on sys.path when run as a script

DEPTH = 10


def agreement(dataset, fp32, int8):
    """Per-query top-10 overlap, top-1 equality and mAP@10 of each, from the same ranking code as eval."""
    _, rank32 = evaluation.rank(dataset, fp32, DEPTH)
    _, rank8 = evaluation.rank(dataset, int8, DEPTH)
    overlap = []
    for a, b in zip(rank32, rank8):
        a, b = set(a[a >= 0].tolist()), set(b[b >= 0].tolist())
        overlap.append(len(a & b) / max(1, min(len(a), len(b))))
    top1 = float(np.mean(rank32[:, 0] == rank8[:, 0]))
    map32 = evaluation.score(dataset, rank32, ks=(DEPTH,), map_k=DEPTH)[f"mAP@{DEPTH}"]
    map8 = evaluation.score(dataset, rank8, ks=(DEPTH,), map_k=DEPTH)[f"mAP@{DEPTH}"]
    return np.array(overlap), top1, map32, map8


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--config", default="PE-Core-L14-336", help="model config (test-tiny for a smoke run)")
    parser.add_argument("--instances", type=int, default=8, help="products per set (the demo's default, 8)")
    parser.add_argument("--views", type=int, default=4, help="views per product in the folders set (demo: 4)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes share the cores)")
    print(f"threads: torch intra-op {torch.get_num_threads()}, decode threads {args.threads}; cores {os.cpu_count()}; "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, OPENBLAS_THREAD_TIMEOUT={os.environ['OPENBLAS_THREAD_TIMEOUT']}; "
          f"torch {torch.__version__}; quantized engine {torch.backends.quantized.engine}; "
          f"perception_retrieval {pr.__version__}")
    print(f"CPU ISA: {pr.cpu_features()}; caps: " + ", ".join(
        f"{name}={os.environ.get(name, 'unset')}"
        for name in ("OPENBLAS_CORETYPE", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "PE_ENCODER_SIMD")))
    sgemm_before = sgemm_gflops()
    with tempfile.TemporaryDirectory() as folder:
        sets = cli.write_demo_datasets(os.path.join(folder, "data"), args.instances, args.views, args.seed)
        paths = {"fp32": os.path.join(folder, "fp32.pt"), "int8": os.path.join(folder, "int8.pt")}
        export.export(paths["fp32"], config=args.config, random_init=True, seed=args.seed, verify=False, log=None)
        export.export(paths["int8"], config=args.config, random_init=True, seed=args.seed, verify=False,
                      quantize="dynamic_int8", log=None)
        print(f"files: fp32 {os.path.getsize(paths['fp32']) / 2**20:.0f} MiB, "
              f"int8 {os.path.getsize(paths['int8']) / 2**20:.0f} MiB")
        runs = {name: evaluation.Evaluation(path, batch_size=args.batch_size, threads=args.threads,
                                            decode_threads=args.threads, bootstrap=0, log=lambda _line: None)
                for name, path in paths.items()}
        for name, run in runs.items():
            print(f"{name}: {run.encoder.forward_description}")
        for name, run in runs.items():  # warm-up: first-call allocations, TorchScript profiling
            run.embed(sets[0].images[:args.batch_size])

        seconds = dict.fromkeys(runs, 0.0)
        images = 0
        worst_overlap, cosines = 1.0, []
        for index, dataset in enumerate(sets):
            order = list(runs) if index % 2 == 0 else list(reversed(runs))
            embeddings = {}
            for name in order:
                started = time.perf_counter()
                embeddings[name], failures, _ = runs[name].embed(dataset.images, dataset.name)
                seconds[name] += time.perf_counter() - started
                if failures:
                    raise SystemExit(f"{name}: {len(failures)} images failed on {dataset.name}")
            images += len(dataset.images)
            cosine = (embeddings["fp32"] * embeddings["int8"]).sum(axis=1)
            cosines.append(cosine)
            overlap, top1, map32, map8 = agreement(dataset, embeddings["fp32"], embeddings["int8"])
            worst_overlap = min(worst_overlap, float(overlap.min()))
            print(f"{dataset.name}: {len(dataset.images)} images, {len(dataset.query_images)} queries; "
                  f"cosine int8 . fp32 min {cosine.min():.5f} median {np.median(cosine):.5f}; "
                  f"top-{DEPTH} overlap mean {overlap.mean():.3f} min {overlap.min():.2f}; "
                  f"top-1 identical {top1:.3f}; mAP@{DEPTH} fp32 {map32:.4f} int8 {map8:.4f}")
        sgemm = {lib: max(rate, sgemm_before[lib]) for lib, rate in sgemm_gflops().items()}
        rates = {name: images / total for name, total in seconds.items()}
        every = np.concatenate(cosines)
        print(f"speed over {images} images (decode, crop and forward): fp32 {rates['fp32']:.3f} img/s, "
              f"int8 {rates['int8']:.3f} img/s, int8 / fp32 {rates['int8'] / rates['fp32']:.2f}x")
        print(f"cosine int8 . fp32 over all images: min {every.min():.5f}, mean {every.mean():.5f}; "
              f"worst top-{DEPTH} overlap of a query {worst_overlap:.2f}")
        print("sgemm 2048^3 (best of before and after), " + ", ".join(f"{lib} {rate:.1f} GFLOP/s"
                                                                     for lib, rate in sgemm.items())
              + f" ({torch.get_num_threads()} threads)")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
