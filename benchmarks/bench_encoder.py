#!/usr/bin/env python3
"""pe::Encoder end to end vs the Python eager pipeline, same machine, same run.

PE-Core L14-336 with random weights (exported by perception_retrieval.export),
N JPEG photos of ~800 x 600 written by this script:
  ours:      perception_retrieval.Encoder(...).encode(paths)   (C++: stb decode +
             PIL-exact resize on decode threads, overlapped with the TorchScript forward)
  reference: PIL open/convert/resize + ToTensor/Normalize + the eager nn.Module,
             batched the same way
Also: preprocessing alone (images/s vs PIL), and the forward's GFLOP/s against
this machine's sgemm GFLOP/s measured here (384 GFLOP per 336 px image).

    .venv/bin/python benchmarks/bench_encoder.py [--images 64] [--batch-size 8] [--threads N]
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads; see perception_retrieval/__init__.py

import numpy as np
import torch
from PIL import Image

import perception_retrieval as pr
from perception_retrieval import export, pe_core

GFLOP_PER_IMAGE = 384.0


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


def sgemm_gflops(threads, size=2048, repeats=5):
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pil_preprocess(path, size=336):
    resized = np.array(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))
    tensor = torch.from_numpy(resized).permute(2, 0, 1).float().div(255)
    return (tensor - 0.5) / 0.5


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads: torch intra-op {torch.get_num_threads()} (both pipelines), decode threads {args.threads}; "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; cores {os.cpu_count()}; torch {torch.__version__}; perception_retrieval {pr.__version__}")

    with tempfile.TemporaryDirectory() as folder:
        paths = write_photos(folder, args.images)
        model_path = os.path.join(folder, "l14.pt")
        export.export(model_path, config="PE-Core-L14-336", random_init=True, seed=0, verify=False, log=None)
        eager = pe_core.build("PE-Core-L14-336", seed=0).eval()
        encoder = pr.Encoder(model_path, batch_size=args.batch_size, threads=args.threads,
                             decode_threads=args.threads)

        # Preprocessing alone.
        t_pil = _timed(lambda: [pil_preprocess(p) for p in paths])
        t_ours_pre = _timed(lambda: [pr.image.preprocess(pr.image.decode(p)) for p in paths])
        print(f"preprocess (decode + resize + normalise), 1 thread each: PIL {len(paths) / t_pil:7.1f} img/s, "
              f"ours {len(paths) / t_ours_pre:7.1f} img/s, ratio {t_pil / t_ours_pre:.2f}x")

        # End to end.
        def reference():
            outputs = []
            with torch.no_grad():
                for start in range(0, len(paths), args.batch_size):
                    batch = torch.stack([pil_preprocess(p) for p in paths[start:start + args.batch_size]])
                    outputs.append(torch.nn.functional.normalize(eager(batch), dim=1))
            return torch.cat(outputs).numpy()

        encoder.encode(paths[: args.batch_size])  # warm up both
        start = time.perf_counter()
        reference_out = reference()
        t_ref = time.perf_counter() - start
        start = time.perf_counter()
        ours_out = encoder.encode(paths)
        t_ours = time.perf_counter() - start
        cosine = (ours_out * reference_out).sum(axis=1)
        sgemm = sgemm_gflops(args.threads)
        print(f"end to end, {len(paths)} JPEGs 800x600, batch {args.batch_size}: "
              f"eager Python {len(paths) / t_ref:.2f} img/s, ours {len(paths) / t_ours:.2f} img/s, "
              f"ratio {t_ref / t_ours:.2f}x (target >= 1.2x)")
        print(f"embedding cosine ours vs eager: min {cosine.min():.6f}")
        ours_gflops = GFLOP_PER_IMAGE * len(paths) / t_ours
        print(f"ours end to end {ours_gflops:.1f} GFLOP/s = {100 * ours_gflops / sgemm:.0f}% of sgemm "
              f"({sgemm:.1f} GFLOP/s measured, {args.threads} threads)")


if __name__ == "__main__":
    main()
