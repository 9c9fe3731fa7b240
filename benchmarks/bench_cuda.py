#!/usr/bin/env python3
"""pe::Encoder on a GPU: CUDA fp32, bf16 and fp16 embeddings against CPU fp32, and images/s.

For a machine with an NVIDIA GPU and the PyPI stack (the torch wheel is a CUDA build;
docs/stacks.md). Exports PE-Core (default L14-336, random weights) to TorchScript, then
encodes the same JPEG photos with pr.Encoder on the CPU in fp32 (the reference) and on
CUDA in float32, bfloat16 and float16 (pinned host memory, a stream per call:
src/encoder/encoder.cpp). Prints the GPU, threads, CPU ISA, images/s of each and the
minimum embedding cosine of each CUDA variant to the CPU's; exits 1 when a cosine is
below its bound (fp32 0.99999: TF32 is off in LibTorch by default, so only summation
order differs; fp16 0.999; bf16 0.99: 8 bits of mantissa) and 2 when no GPU is visible.

    .venv-pypi/bin/python benchmarks/bench_cuda.py [--images 64] [--batch-size 32] [--cpu-images 16]
"""

import argparse
import os
import sys
import tempfile
import time

import torch

import perception_retrieval as pr
from perception_retrieval import export

from bench_encoder import write_photos  # benchmarks/ is on sys.path when run as a script

BOUNDS = {"float32": 0.99999, "float16": 0.999, "bfloat16": 0.99}


def rate(encoder, paths):
    encoder.encode(paths[: encoder._encoder.batch_size])  # warm-up: kernels, allocator
    started = time.perf_counter()
    out = encoder.encode(paths)
    return out, len(paths) / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="PE-Core-L14-336")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--cpu-images", type=int, default=16, help="images for the (slow) CPU reference")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda:0")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(f"bench_cuda: no CUDA device visible to torch {torch.__version__} (CUDA {torch.version.cuda}); "
              "run it on a machine with an NVIDIA GPU and driver", file=sys.stderr)
        return 2
    threads = pr.usable_cpu_count()
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA {torch.version.cuda}; "
          f"CPU threads {threads}; CPU ISA {pr.cpu_features()}")
    failed = False
    with tempfile.TemporaryDirectory() as folder:
        paths = write_photos(folder, max(args.images, args.cpu_images))
        model = os.path.join(folder, "model.pt")
        export.export(model, config=args.config, random_init=True, seed=0, verify=False, log=None)
        cpu = pr.Encoder(model, batch_size=8, threads=threads, decode_threads=threads, tune_allocator=True)
        reference, cpu_rate = rate(cpu, paths[: args.cpu_images])
        print(f"{'cpu float32':>16}: {cpu_rate:8.2f} img/s (reference)")
        for dtype, bound in BOUNDS.items():
            encoder = pr.Encoder(model, device=args.device, dtype=dtype, batch_size=args.batch_size,
                                 decode_threads=threads)
            out, gpu_rate = rate(encoder, paths[: args.images])
            cosine = float((out[: args.cpu_images] * reference).sum(axis=1).min())
            verdict = "ok" if cosine >= bound else f"BELOW {bound}"
            failed |= cosine < bound
            print(f"{'cuda ' + dtype:>16}: {gpu_rate:8.2f} img/s ({gpu_rate / cpu_rate:.1f}x CPU); "
                  f"embedding cosine to CPU fp32 min {cosine:.6f} ({verdict})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
