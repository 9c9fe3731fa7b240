#!/usr/bin/env python3
"""pe::Encoder end to end vs the Python eager pipeline, same machine, same run.

PE-Core L14-336 with random weights (exported by perception_retrieval.export),
N JPEG photos of ~800 x 600 written by this script:
  ours:      perception_retrieval.Encoder(...).encode(paths)   (C++: libjpeg-turbo
             decode + PIL-exact resize on decode threads, overlapped with its own
             forward: fused attention, Linear layers on the GEMM route measured at load)
  reference: PIL open/convert/resize + ToTensor/Normalize + the eager nn.Module
             (python/perception_retrieval/pe_core.py, BLAS matmuls), batched the same way
Also: the forward pass alone (the same 336 x 336 pixels into both: no decoding, an
identity resize), decoding alone and preprocessing alone (images/s vs PIL, one thread each),
the pixel difference to PIL after preprocessing, and the end-to-end rate in
GFLOP/s (matmul FLOPs: 384 GFLOP per L14 336 px image) against this machine's sgemm GFLOP/s,
measured here for both matmul libraries (torch.mm: OpenBLAS or MKL, oneDNN via
mkldnn_linear), best of before and after the runs, and torch.mm's rate sampled between
the forward-alone batches (InterleavedSgemm), and the ceiling at that rate: the time the
Linear layers' GEMMs alone would take, against eager's forward (both run those GEMMs, so no
forward on this BLAS beats eager by more). The ratios are of the summed times; each batch's
ratio (ours against the eager run next to it) and their median follow, the steadier figure
where the machine's speed moves during the run. --blas also times our Encoder with onednn=False.

--breakdown [--breakdown-layers 2]: first the per-operator breakdown of the forward
(benchmarks/forward_breakdown.py: Linear layers, attention matmuls, softmax, RoPE,
LayerNorm, GELU, copies) as time and as a multiple of the GEMM limit, for the eager
reference, the TorchScript file with oneDNN Linear layers (before) and pe::Encoder's own
forward (after), each mode timed twice (the second round in reverse order) and the faster kept;
--breakdown-only stops there. Every run prints the CPU's vector ISA,
the thread counts and the in-run sgemm rates. To see an AVX2-only machine on an AVX-512
one: OPENBLAS_CORETYPE=Haswell ONEDNN_MAX_CPU_ISA=AVX2 PE_ENCODER_SIMD=avx2 ATEN_CPU_CAPABILITY=avx2.

    flock /tmp/pe-bench.lock .venv/bin/python benchmarks/bench_encoder.py [--images 64] [--batch-size 8]
        [--threads N] [--gemm ROUTES] [--blas] [--breakdown [--breakdown-only]]
"""

import argparse
import os
import re
import tempfile
import time

from perception_retrieval.process import claim_process

claim_process()  # before torch loads: what the command line runs with (process.PROCESS_ENVIRONMENT)

import numpy as np
import torch
from PIL import Image

import perception_retrieval as pr
from perception_retrieval import export, pe_core

import forward_breakdown  # benchmarks/ is on sys.path when run as a script
from bench_pe_core import attention_flops, forward_flops



def write_photos(folder, count, seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    y, x = np.mgrid[0:600, 0:800]
    for i in range(count):
        base = np.stack([(x // (i % 7 + 2)) % 256, (y // 3 + i * 9) % 256, ((x + y) // 5) % 256], axis=-1)
        pixels = np.clip(base + rng.integers(-30, 30, base.shape), 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"photo{i:03d}.jpg")
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def sgemm_gflops(size=2048, repeats=5):
    """Best float32 matmul rate of torch.mm (OpenBLAS on Debian's torch, MKL in the PyPI wheel)
    and of oneDNN (mkldnn_linear)."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    out = torch.empty(size, size)
    rates = {}
    torch.mm(a, b, out=out)
    rates[_torch_blas()] = 2 * size ** 3 / min(_timed(lambda: torch.mm(a, b, out=out)) for _ in range(repeats)) / 1e9
    if torch.backends.mkldnn.is_available():
        a_onednn = a.to_mkldnn()
        torch._C._nn.mkldnn_linear(a_onednn, b, None)
        best = min(_timed(lambda: torch._C._nn.mkldnn_linear(a_onednn, b, None)) for _ in range(repeats))
        rates["oneDNN"] = 2 * size ** 3 / best / 1e9
    return rates


class InterleavedSgemm:
    """torch.mm's 2048^3 rate sampled between the batches of an interleaved run (a pseudo
    pipeline for interleaved()): the rate the machine gave while the forwards ran, as
    against sgemm_gflops()'s best moment before or after them. This VM's rate moves
    between 285 and 366 GFLOP/s within an hour, so a forward's share of the best moment
    is a lower bound, and its share of the interleaved mean the like-for-like figure."""

    def __init__(self, size=2048, repeats=3):
        self.a, self.b = torch.randn(size, size), torch.randn(size, size)
        self.out = torch.empty(size, size)
        self.repeats, self.flops, self.seconds = repeats, 2 * size ** 3, []

    def __call__(self, _batch):
        for _ in range(self.repeats):
            self.seconds.append(_timed(lambda: torch.mm(self.a, self.b, out=self.out)))

    def mean_gflops(self):
        return self.flops * len(self.seconds) / sum(self.seconds) / 1e9


def _torch_blas():
    """The BLAS behind torch.mm: BLAS_INFO=mkl in the PyPI wheel; Debian's torch says
    generic (libblas.so.3, which is OpenBLAS once libopenblas0-pthread is installed)."""
    found = re.findall(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return {"mkl": "MKL", "open": "OpenBLAS", "generic": "OpenBLAS"}.get(found[0] if found else "", "BLAS")


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(pipelines, batches):
    """Each pipeline over every batch, interleaved batch by batch in ABBA order (the
    machine is shared, and load from other processes then hits every pipeline alike),
    after one warm-up call each (first-call allocations, TorchScript profiling). Returns
    each pipeline's summed seconds, its outputs per batch and its seconds per batch."""
    for run in pipelines.values():
        run(batches[0])
    per_batch = {name: [] for name in pipelines}
    outputs = {name: [] for name in pipelines}
    for index, batch in enumerate(batches):
        names = list(pipelines) if index % 2 == 0 else list(reversed(pipelines))
        for name in names:
            start = time.perf_counter()
            outputs[name].append(pipelines[name](batch))
            per_batch[name].append(time.perf_counter() - start)
    return {name: sum(times) for name, times in per_batch.items()}, outputs, per_batch


def batch_ratios(per_batch, name, reference="eager Python"):
    """The reference's seconds over `name`'s on each batch: the two ran back to back, so
    each ratio sees one phase of this VM's speed, which moves by 15-20% over tens of
    seconds and so moves the ratio of the sums with it."""
    return [ref / ours for ref, ours in zip(per_batch[reference], per_batch[name])]


def pil_preprocess(path, size=336):
    resized = np.array(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))
    tensor = torch.from_numpy(resized).permute(2, 0, 1).float().div(255)
    return (tensor - 0.5) / 0.5


def run_breakdown(args, route):
    sgemm = sgemm_gflops()
    best = max(sgemm.values())
    print("sgemm 2048^3, " + ", ".join(f"{lib} {rate:.1f} GFLOP/s" for lib, rate in sgemm.items())
          + f"; the GEMM limit below uses the best, {best:.1f}")
    modes = [("eager", "openblas"), ("script-onednn", "onednn")]
    if hasattr(torch.ops, "pe") and _has_fused_attention():
        if route != "openblas":  # the plain products too, to show what the chosen routes change
            modes.append(("native", "openblas"))
        modes.append(("native", route))
    # Two rounds, the second in reverse order, each mode's faster kept: on these VMs the
    # whole machine runs 15-20% slower for tens of seconds at a time, which would otherwise
    # land on whichever mode happened to run then.
    results = {}
    for order in (modes, modes[::-1]):
        for mode, route in order:
            result = forward_breakdown.breakdown(args.config, args.batch_size, args.breakdown_layers, mode, best, route)
            kept = results.get((mode, route))
            if kept is None or result["ms_per_image"] < kept["ms_per_image"]:
                results[(mode, route)] = result
    for mode, route in modes:
        print(forward_breakdown.format_table(results[(mode, route)], best))


def _has_fused_attention():
    try:
        pr.cpu_features()  # loads the native module, which registers pe::rope_attention
        torch.ops.pe.rope_attention
        return True
    except (AttributeError, RuntimeError):
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--blas", action="store_true", help="also time our Encoder with onednn=False")
    parser.add_argument("--config", default="PE-Core-L14-336", help="model config (test-tiny for a smoke run)")
    parser.add_argument("--gemm", default="auto",
                        help='our Encoder\'s gemm option: auto (timed at load), a route, or e.g. "qkv=strassen,fc2=onednn"')
    parser.add_argument("--breakdown", action="store_true", help="per-operator breakdown of the forward first")
    parser.add_argument("--breakdown-only", action="store_true", help="the breakdown alone")
    parser.add_argument("--breakdown-layers", type=int, default=2, help="blocks timed in the breakdown")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes share the cores)")
    print(f"threads: torch intra-op {torch.get_num_threads()} (both pipelines), decode threads {args.threads}; "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, OPENBLAS_THREAD_TIMEOUT={os.environ['OPENBLAS_THREAD_TIMEOUT']}; cores {os.cpu_count()}; torch {torch.__version__}; perception_retrieval {pr.__version__}")
    print(f"CPU ISA: {pr.cpu_features()}; caps: " + ", ".join(
        f"{name}={os.environ.get(name, 'unset')}"
        for name in ("OPENBLAS_CORETYPE", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "PE_ENCODER_SIMD")))

    with tempfile.TemporaryDirectory() as folder:
        paths = write_photos(folder, args.images)
        model_path = os.path.join(folder, "l14.pt")
        export.export(model_path, config=args.config, random_init=True, seed=0, verify=False, log=None)
        eager = pe_core.build(args.config, seed=0).eval()
        size = eager.config.image_size
        gflop_per_image = forward_flops(eager.config, size, size) / 1e9
        encoder = pr.Encoder(model_path, batch_size=args.batch_size, threads=args.threads,
                             decode_threads=args.threads, gemm=args.gemm)
        print(f"ours: Linear layers via {'oneDNN' if encoder.uses_onednn else 'BLAS'}; {encoder.forward_description}")
        if args.breakdown or args.breakdown_only:
            run_breakdown(args, encoder.gemm_route if encoder.uses_fused_attention else "openblas")
            if args.breakdown_only:
                return

        # Decoding and preprocessing alone, best of 3 passes over the files.
        def best_of_3(fn):
            return min(_timed(fn) for _ in range(3))

        t_pil_decode = best_of_3(lambda: [Image.open(p).convert("RGB") for p in paths])
        t_ours_decode = best_of_3(lambda: [pr.image.decode(p) for p in paths])
        print(f"decode JPEG 800x600 to RGB, 1 thread each: PIL {len(paths) / t_pil_decode:7.1f} img/s, "
              f"ours {len(paths) / t_ours_decode:7.1f} img/s, ratio {t_pil_decode / t_ours_decode:.2f}x")
        t_pil = best_of_3(lambda: [pil_preprocess(p, size) for p in paths])
        t_ours_pre = best_of_3(lambda: [pr.image.preprocess(pr.image.decode(p), size) for p in paths])
        print(f"preprocess (decode + resize + normalise), 1 thread each: PIL {len(paths) / t_pil:7.1f} img/s, "
              f"ours {len(paths) / t_ours_pre:7.1f} img/s, ratio {t_pil / t_ours_pre:.2f}x")
        worst = max(float(np.abs(pr.image.preprocess(pr.image.decode(p), size) - pil_preprocess(p, size).numpy()).max())
                    for p in paths)
        print(f"preprocessed model input vs PIL's: max abs difference {worst:.3g} "
              f"= {worst * 127.5:.3g} levels of 255 (target <= 1 level)")

        # End to end, interleaved batch by batch in ABBA order: the machine is shared, and
        # load from other processes then hits every pipeline alike. A pipeline's time is the
        # sum over its batches; each of our calls decodes its own batch (no overlap with a
        # previous forward, which costs us ~0.1% here).
        def eager_pipeline(batch_paths):
            with torch.no_grad():
                batch = torch.stack([pil_preprocess(p, size) for p in batch_paths])
                return torch.nn.functional.normalize(eager(batch), dim=1).numpy()

        pipelines = {"eager Python": eager_pipeline, "ours": encoder.encode}
        if args.blas:
            blas = pr.Encoder(model_path, batch_size=args.batch_size, threads=args.threads,
                              decode_threads=args.threads, onednn=False)
            pipelines["ours, onednn=False"] = blas.encode
        batches = [paths[i:i + args.batch_size] for i in range(0, len(paths), args.batch_size)]
        sgemm_before = sgemm_gflops()
        seconds, outputs, batch_seconds = interleaved(pipelines, batches)
        # The forward pass alone: 336 x 336 pixels in (no decoding; the resize is the
        # identity), the same pixels for both, as float32 tensors for the eager model.
        pixels = [np.random.default_rng(index).integers(0, 256, (len(batch), size, size, 3), dtype=np.uint8)
                  for index, batch in enumerate(batches)]

        def eager_forward(batch_pixels):
            with torch.no_grad():
                tensor = torch.from_numpy(batch_pixels).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
                return torch.nn.functional.normalize(eager(tensor), dim=1).numpy()

        probe = InterleavedSgemm()
        forward_seconds, forward_outputs, forward_batch_seconds = interleaved(
            {"eager Python": eager_forward, "ours": encoder.encode, "sgemm probe": probe}, pixels)
        del forward_seconds["sgemm probe"], forward_outputs["sgemm probe"], forward_batch_seconds["sgemm probe"]
        probe.seconds = probe.seconds[probe.repeats:]  # the warm-up call's
        # The best rate seen before and after the runs: a busy machine lowers both, so the
        # percentages below are conservative.
        sgemm = {lib: max(rate, sgemm_before[lib]) for lib, rate in sgemm_gflops().items()}
        print("sgemm 2048^3 (best of before and after), " + ", ".join(f"{name} {rate:.1f} GFLOP/s"
                                                                     for name, rate in sgemm.items())
              + f" ({torch.get_num_threads()} threads); {_torch_blas()} interleaved with the forward-alone batches "
              f"{probe.mean_gflops():.1f} GFLOP/s (mean of {len(probe.seconds)})")
        worst_cosine = {}
        for title, times, results, per_batch, target in (
                (f"end to end, {len(paths)} JPEGs 800x600", seconds, outputs, batch_seconds, "ratio target >= 1.2x"),
                (f"forward alone, {len(paths)} images of {size} x {size} pixels", forward_seconds, forward_outputs,
                 forward_batch_seconds, "target >= 90% of sgemm")):
            t_ref = times["eager Python"]
            print(f"{title}, batch {args.batch_size} ({target}):")
            reference_out = np.concatenate(results["eager Python"])
            for name, total in times.items():
                gflops = gflop_per_image * len(paths) / total
                cosine = (np.concatenate(results[name]) * reference_out).sum(axis=1)
                worst_cosine[name] = min(worst_cosine.get(name, 1.0), float(cosine.min()))
                print(f"{name:>20}: {len(paths) / total:.3f} img/s, {t_ref / total:.2f}x eager; {gflops:.1f} GFLOP/s = "
                      + ", ".join(f"{100 * gflops / rate:.0f}% of {lib} sgemm" for lib, rate in sgemm.items())
                      + (f", {100 * gflops / probe.mean_gflops():.0f}% of interleaved" if times is forward_seconds
                         else "")
                      + f"; embedding cosine to eager min {cosine.min():.7f}")
            for name in times:
                if name != "eager Python":
                    ratios = batch_ratios(per_batch, name)
                    print(f"{name:>20}: per batch, against eager run next to it: "
                          + " ".join(f"{ratio:.2f}x" for ratio in ratios)
                          + f"; median {float(np.median(ratios)):.2f}x")
        # The ceiling for any forward on this BLAS: the Linear layers' FLOPs (everything but
        # the attention matmuls) at the interleaved sgemm rate, with every other op free.
        # Both pipelines run these GEMMs, so eager's forward time over this bounds our ratio.
        attention_gflop = attention_flops(eager.config, size, size) / 1e9
        linear_seconds = (gflop_per_image - attention_gflop) * len(paths) / probe.mean_gflops()
        print(f"ceiling: the Linear layers alone at the interleaved sgemm rate take {linear_seconds:.2f} s for "
              f"these images, eager's forward {forward_seconds['eager Python']:.2f} s: no forward on these GEMMs "
              f"can beat eager by more than {forward_seconds['eager Python'] / linear_seconds:.2f}x; ours is at "
              f"{forward_seconds['eager Python'] / forward_seconds['ours']:.2f}x")
        print(f"load average after: {os.getloadavg()[0]:.2f} (other processes share the cores)")
        if worst > 0:
            raise SystemExit(f"the preprocessed input differs from PIL's by {worst:.3g}; it must be identical")
        for name, cosine in worst_cosine.items():
            if name != "eager Python" and cosine < 0.999999:
                raise SystemExit(f"{name}: embedding cosine to eager {cosine:.7f} < 0.999999")


if __name__ == "__main__":
    main()
