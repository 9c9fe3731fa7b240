#!/usr/bin/env python3
"""What the library's hands-off defaults cost, measured on this machine.

A library is a guest in its user's process, so perception_retrieval changes no
process-wide setting unless asked (docs/architecture.md). This benchmark runs the
same L14-336 forward passes (random weights, in-memory 336 px pixels, so only
the model is timed) in fresh processes that differ only in those settings:

  cli          what the command-line tools choose: OMP_WAIT_POLICY=PASSIVE before
               torch loads, LibTorch threads = every usable CPU, tune_allocator=True
  no-passive   the same without OMP_WAIT_POLICY
  no-tuning    the same without tune_allocator (glibc's default malloc)
  no-threads   the same with threads left as LibTorch starts (Debian's: 1)
  library      all three left alone: what `pr.Encoder(model)` gives in a fresh
               Python process

Each process prints its images/s, LibTorch's thread count and the sgemm rate it
measured; the table gives each rate as a ratio to `cli` measured in the same run
and as a share of the machine's sgemm rate.

    .venv/bin/python benchmarks/bench_defaults.py [--batches 3] [--batch-size 8] [--config PE-Core-L14-336]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

CONFIGS = {
    "cli": {"passive": True, "tune_allocator": True, "threads": "all"},
    "no-passive": {"passive": False, "tune_allocator": True, "threads": "all"},
    "no-tuning": {"passive": True, "tune_allocator": False, "threads": "all"},
    "no-threads": {"passive": True, "tune_allocator": True, "threads": "leave"},
    "library": {"passive": False, "tune_allocator": False, "threads": "leave"},
}

# Runs in a child process, so each configuration starts with a fresh libgomp,
# a fresh malloc and LibTorch's own starting thread count.
CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import torch
    import perception_retrieval as pr
    model, batch, batches, threads, tune = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
    encoder = pr.Encoder(model, batch_size=batch, tune_allocator=tune,
                         threads=pr.usable_cpu_count() if threads == "all" else 0)
    size = encoder.image_size
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(batch)]
    encoder.encode(images)  # warm-up: first-call allocations and oneDNN primitive creation
    best = float("inf")
    for _ in range(batches):
        start = time.perf_counter()
        encoder.encode(images)
        best = min(best, time.perf_counter() - start)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    sgemm = min((lambda t0: (torch.mm(a, b), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(5))
    print(json.dumps({"images_per_s": batch / best, "torch_threads": torch.get_num_threads(),
                      "sgemm_gflops": 2 * 2048 ** 3 / sgemm / 1e9, "onednn": encoder.uses_onednn}))
""")


def run(name, settings, model, args):
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if settings["passive"]:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    done = subprocess.run([sys.executable, "-c", CHILD, model, str(args.batch_size), str(args.batches),
                           settings["threads"], "1" if settings["tune_allocator"] else "0"],
                          capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{name}: the child process failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="PE-Core-L14-336")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=3, help="timed batches per configuration (best is kept)")
    parser.add_argument("--only", nargs="*", choices=sorted(CONFIGS), help="run these configurations only")
    args = parser.parse_args()

    import perception_retrieval as pr
    from perception_retrieval import export

    print(f"CPU: {pr.cpu_features()}; usable CPUs: {pr.usable_cpu_count()}; batch {args.batch_size}, "
          f"best of {args.batches} batches per configuration, each in a fresh process")
    with tempfile.TemporaryDirectory() as folder:
        model = os.path.join(folder, "model.pt")
        export.export(model, config=args.config, random_init=True, seed=0, log=None, verify=False)
        results = {}
        for name, settings in CONFIGS.items():
            if args.only and name not in args.only:
                continue
            results[name] = run(name, settings, model, args)
            print(f"  {name:<11} {results[name]['images_per_s']:.3f} img/s, LibTorch threads "
                  f"{results[name]['torch_threads']}, sgemm {results[name]['sgemm_gflops']:.0f} GFLOP/s", flush=True)
    from bench_pe_core import forward_flops  # benchmarks/ is on sys.path when run as a script
    from perception_retrieval import pe_core

    config = pe_core.get_config(args.config)
    flops = forward_flops(config, config.image_size, config.image_size)
    reference = results.get("cli")
    print("\n| configuration | img/s | vs cli | GFLOP/s | of its sgemm |\n|---|---|---|---|---|")
    for name, result in results.items():
        gflops = result["images_per_s"] * flops / 1e9
        ratio = f"{result['images_per_s'] / reference['images_per_s']:.2f}x" if reference else "-"
        print(f"| {name} | {result['images_per_s']:.3f} | {ratio} | {gflops:.0f} | "
              f"{gflops / result['sgemm_gflops']:.0%} |")
    if reference and any(r["torch_threads"] != reference["torch_threads"] for n, r in results.items()
                         if CONFIGS[n]["threads"] == "all"):
        raise SystemExit("the configurations that ask for every CPU did not all get the same thread count")


if __name__ == "__main__":
    main()
