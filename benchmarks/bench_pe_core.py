#!/usr/bin/env python3
"""Benchmark the PE-Core vision tower on CPU: TorchScript vs eager, and GFLOP/s vs sgemm.

Runs, in one process and interleaved so that machine noise hits both alike:
  1. the machine's sgemm rate (square float32 matmuls, best of several sizes),
  2. eager and ``torch.jit.script`` forwards of a random-weight model (default
     PE-Core-L14-336, batch 8, 336 px), the scripted one also with its Linear layers
     through oneDNN (``onednn_linears``, what pe::Encoder runs; this script then sets
     glibc's malloc thresholds as pe::Encoder does), and optionally a dynamic-int8 one.

Reports seconds per batch (best and median), images/s, achieved GFLOP/s (matmul
FLOPs counted from the config: 384 GFLOP per 336 px L14 image), that rate as a
percentage of sgemm, and the scripted/eager speed ratio (eager time / scripted
time: >= 1 means the scripted module is at least as fast).

Debian's torch starts with one intra-op thread: this script sets
``torch.set_num_threads`` (``--threads``, default ``os.cpu_count()``) and prints it.
OpenMP wait policy: ATen's OpenMP threads and OpenBLAS's own threads take turns on
the same cores; with libgomp's default (spinning) waits each side's idle threads
steal the cores from the other, which cost ~15% of the forward on the 2-core VM
(63% vs 76% of sgemm, measured). libgomp reads OMP_WAIT_POLICY when torch is
imported, so this script sets it first (``--omp-wait-policy``, default PASSIVE;
``default`` leaves the environment alone) and prints the policy in effect.

Run it under the shared lock so benchmarks do not overlap:

    flock /tmp/pe-bench.lock /usr/bin/python3 benchmarks/bench_pe_core.py
"""

import argparse
import json
import os
import statistics
import sys
import time


def _early_wait_policy(argv) -> str:
    """--omp-wait-policy must act before torch (and libgomp) load."""
    policy = "PASSIVE"
    for i, arg in enumerate(argv):
        if arg == "--omp-wait-policy" and i + 1 < len(argv):
            policy = argv[i + 1]
        elif arg.startswith("--omp-wait-policy="):
            policy = arg.split("=", 1)[1]
    if policy != "default":
        os.environ.setdefault("OMP_WAIT_POLICY", policy)
    return os.environ.get("OMP_WAIT_POLICY", "unset (libgomp default: spin, then sleep)")


if __name__ == "__main__":
    _early_wait_policy(sys.argv[1:])

import torch  # noqa: E402

from perception_retrieval import pe_core  # noqa: E402


def attention_flops(config: pe_core.PECoreConfig, height: int, width: int) -> int:
    """FLOPs (2 per MAC) of the attention matmuls (q k^T and attn v over all heads, every
    block) in one image's forward: the part of forward_flops that is not a Linear layer's."""
    tokens = (height // config.patch_size) * (width // config.patch_size) + int(config.use_cls_token)
    return 2 * config.layers * 2 * tokens * tokens * config.width


def forward_flops(config: pe_core.PECoreConfig, height: int, width: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of the matmuls in one image's forward."""
    d, p = config.width, config.patch_size
    patches = (height // p) * (width // p)
    tokens = patches + int(config.use_cls_token)
    macs = patches * 3 * p * p * d  # conv1
    per_layer = tokens * d * 3 * d + tokens * d * d + 2 * tokens * d * config.mlp_width
    macs += config.layers * per_layer + attention_flops(config, height, width) // 2
    if config.pool_type == "attn":
        m = config.resolved_pool_mlp_width
        macs += d * d + tokens * d * 2 * d + 2 * tokens * d + d * d + 2 * d * m
    macs += d * config.output_dim
    return 2 * macs


def measure_sgemm(sizes=(1024, 2048, 3072), repeats: int = 5) -> dict:
    rates = {}
    for n in sizes:
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - start)
        rates[n] = 2 * n ** 3 / best / 1e9
    return rates


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=pe_core.DEFAULT_CONFIG)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=None, help="default: the config's")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed runs per variant; scripted variants get one more (TorchScript "
                             "profiles its first call)")
    parser.add_argument("--quantize", action="store_true", help="also time a dynamic-int8 scripted model")
    parser.add_argument("--no-onednn", dest="onednn", action="store_false",
                        help="skip the scripted model with oneDNN Linear layers")
    parser.add_argument("--json", default=None, help="write the results to this file too")
    parser.add_argument("--omp-wait-policy", default="PASSIVE",
                        help="OMP_WAIT_POLICY set before torch loads (PASSIVE, ACTIVE, or 'default' "
                             "to leave the environment alone); an existing OMP_WAIT_POLICY wins")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    config = pe_core.get_config(args.config)
    size = args.image_size or config.image_size
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes share the cores)")
    print(f"OMP_WAIT_POLICY: {os.environ.get('OMP_WAIT_POLICY', 'unset (libgomp default)')}")
    print(f"torch {torch.__version__}; threads: torch {torch.get_num_threads()}, "
          f"interop {torch.get_num_interop_threads()}, os.cpu_count {os.cpu_count()}")
    print(f"model {config.name}, batch {args.batch}, {size}x{size} px, fp32, random weights")

    sgemm = measure_sgemm()
    sgemm_best = max(sgemm.values())
    print("sgemm GFLOP/s: " + ", ".join(f"{n}: {r:.1f}" for n, r in sgemm.items())
          + f" -> reference {sgemm_best:.1f}")

    model = pe_core.build(config, seed=0)
    scripted = torch.jit.script(model)
    variants = {"eager": model, "scripted": scripted}
    if args.onednn and torch.backends.mkldnn.is_available():
        # What pe::Encoder does on CPU (src/encoder.cpp keep_freed_memory): without it oneDNN's
        # per-call output buffers are faulted in from the OS on every call.
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
        onednn_model = pe_core.build(config, seed=0)
        onednn_model.onednn_linears = True
        variants["scripted_onednn"] = torch.jit.script(onednn_model)
    if args.quantize:
        from perception_retrieval import export

        variants["scripted_int8"] = torch.jit.script(export.quantize_dynamic_int8(pe_core.build(config, seed=0)))

    images = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    outputs = {}
    times = {name: [] for name in variants}
    with torch.no_grad():
        for name, module in variants.items():
            for _ in range(args.warmup + (0 if name == "eager" else 1)):
                outputs[name] = module(images)
        for _ in range(args.repeats):  # interleaved
            for name, module in variants.items():
                start = time.perf_counter()
                module(images)
                times[name].append(time.perf_counter() - start)

    # sgemm again after the model runs: the reference is the best rate seen (conservative).
    for n, rate in measure_sgemm().items():
        sgemm[n] = max(sgemm[n], rate)
    sgemm_best = max(sgemm.values())
    print("sgemm GFLOP/s after the runs (best of both): " + ", ".join(f"{n}: {r:.1f}" for n, r in sgemm.items())
          + f" -> reference {sgemm_best:.1f}")
    flops = forward_flops(config, size, size) * args.batch
    print(f"matmul work: {flops / args.batch / 1e9:.1f} GFLOP per image, {flops / 1e9:.1f} per batch")
    results = {"config": config.name, "batch": args.batch, "image_size": size,
               "threads": torch.get_num_threads(), "torch": torch.__version__,
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
               "sgemm_gflops": {str(k): v for k, v in sgemm.items()}, "sgemm_reference_gflops": sgemm_best,
               "gflop_per_image": flops / args.batch / 1e9, "variants": {}}
    for name, samples in times.items():
        best, median = min(samples), statistics.median(samples)
        rate = flops / best / 1e9
        results["variants"][name] = {"best_s": best, "median_s": median, "images_per_s": args.batch / best,
                                     "gflops": rate, "sgemm_fraction": rate / sgemm_best}
        print(f"{name:>14}: best {best:.3f} s, median {median:.3f} s per batch; "
              f"{args.batch / best:.2f} img/s; {rate:.1f} GFLOP/s = {100 * rate / sgemm_best:.1f}% of sgemm")
    ratio = min(times["eager"]) / min(times["scripted"])
    ratio_median = statistics.median(times["eager"]) / statistics.median(times["scripted"])
    max_diff = (outputs["eager"] - outputs["scripted"]).abs().max().item()
    results.update(scripted_over_eager_speed=ratio, scripted_over_eager_speed_median=ratio_median,
                   scripted_vs_eager_max_abs_diff=max_diff)
    print(f"scripted/eager speed ratio: {ratio:.3f} (best), {ratio_median:.3f} (median); "
          f"outputs max abs diff {max_diff:.2e}")
    if "scripted_onednn" in times:
        onednn_ratio = min(times["eager"]) / min(times["scripted_onednn"])
        onednn_cosine = torch.nn.functional.cosine_similarity(outputs["eager"], outputs["scripted_onednn"], dim=1)
        results.update(onednn_over_eager_speed=onednn_ratio, onednn_cosine_min=onednn_cosine.min().item())
        print(f"scripted_onednn/eager speed ratio: {onednn_ratio:.3f} (best); "
              f"embedding cosine min {onednn_cosine.min().item():.7f}")
    if args.quantize:
        cosine = torch.nn.functional.cosine_similarity(outputs["eager"], outputs["scripted_int8"], dim=1)
        int8_ratio = min(times["scripted"]) / min(times["scripted_int8"])
        results.update(int8_cosine_min=cosine.min().item(), int8_cosine_mean=cosine.mean().item(),
                       int8_speed_over_fp32_scripted=int8_ratio)
        print(f"dynamic int8: embedding cosine vs fp32 min {cosine.min().item():.4f} "
              f"mean {cosine.mean().item():.4f}; speed vs fp32 scripted {int8_ratio:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    # The speed of a wrong forward is no result.
    eager_scale = outputs["eager"].abs().max().item()
    if max_diff > 1e-4 * max(eager_scale, 1.0):
        print(f"FAILED: scripted and eager outputs differ by {max_diff:.2e}", file=sys.stderr)
        return 1
    if results.get("onednn_cosine_min", 1.0) < 0.999999:
        print(f"FAILED: the oneDNN path's embedding cosine is {results['onednn_cosine_min']:.7f} < 0.999999",
              file=sys.stderr)
        return 1
    if results.get("int8_cosine_min", 1.0) < 0.99:
        print(f"FAILED: int8 embedding cosine {results['int8_cosine_min']:.4f} < 0.99", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
