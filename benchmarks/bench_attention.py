#!/usr/bin/env python3
"""The fused attention operator alone vs the eager model's separate ops, same run.

One L14 micro-batch (3 images of 577 tokens, 16 heads of 64): ``torch.ops.pe.rope_attention``
(qkv bias, RoPE, scaled QK^T, softmax and AV in one pass) against what the eager model
runs for the same work (pe_core's inference path: RoPE by copies and multiplies, then per
image bmm, softmax, bmm and the head merge), on two kinds of input:

  typical: q, k, v of unit scale, as after a LayerNorm and a qkv projection of the
           model's initial weights (scores spread over a few units);
  peaked:  8x that scale (scores spread over a few hundred units), the way a trained
           model's attention can concentrate on few tokens. Most probabilities are then
           below float32's smallest normal number (1.2e-38), where every operation costs
           an x86 core a microcode assist unless the kernel flushes them to zero
           (src/common/denormals.hpp).

Prints ms per image, the ratio, the largest difference between the two outputs, the attention matmuls' GFLOP/s against the in-run
2048^3 sgemm, the kernel's ISA and the threads.

    .venv/bin/python benchmarks/bench_attention.py [--threads N] [--repeats 5]
"""

import argparse
import os

from perception_retrieval.process import claim_process

claim_process()  # before torch loads (see bench_encoder.py)

import torch

import perception_retrieval as pr
from perception_retrieval import pe_core

from timing import best_time  # benchmarks/ is on sys.path when run as a script

IMAGES, TOKENS, HEADS, HEAD_DIM, GRID = 3, 577, 16, 64, 24


class EagerAttention:
    """pe_core.RopeSelfAttention.add_into's attention, between its two Linear layers, with
    its workspace buffers allocated once (its qkv GEMM has added the bias already)."""

    def __init__(self, cos_qk, sin_qk):
        self.cos_qk, self.sin_qk = cos_qk, sin_qk
        self.rotated = torch.empty(IMAGES, TOKENS, 2, HEADS, HEAD_DIM)
        self.merged = torch.empty(IMAGES, TOKENS, HEADS, HEAD_DIM)
        self.scores = torch.empty(HEADS, TOKENS, TOKENS)
        self.head_out = torch.empty(HEADS, TOKENS, HEAD_DIM)

    def __call__(self, qkv):
        qkv = qkv.view(IMAGES, TOKENS, 3, HEADS, HEAD_DIM)
        qk = qkv[:, :, :2]
        pairs = self.rotated.view(IMAGES, TOKENS, 2, HEADS, HEAD_DIM // 2, 2)
        qk_pairs = qk.reshape(IMAGES, TOKENS, 2, HEADS, HEAD_DIM // 2, 2)
        pairs[..., 0].copy_(qk_pairs[..., 1])
        pairs[..., 1].copy_(qk_pairs[..., 0])
        self.rotated.mul_(self.sin_qk).addcmul_(qk, self.cos_qk)
        for b in range(IMAGES):
            torch.bmm(self.rotated[b, :, 0].transpose(0, 1), self.rotated[b, :, 1].transpose(0, 1).transpose(1, 2),
                      out=self.scores)
            torch.softmax(self.scores, -1, out=self.scores)
            torch.bmm(self.scores, qkv[b, :, 2].transpose(0, 1), out=self.head_out)
            self.merged[b] = self.head_out.transpose(0, 1)
        return self.merged


def best_seconds(fn, repeats):
    fn()  # warm-up: first-call allocations
    return best_time(fn, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU ISA: {pr.cpu_features()}; PE_ENCODER_SIMD={os.environ.get('PE_ENCODER_SIMD', 'unset')}; "
          f"threads {torch.get_num_threads()}; torch {torch.__version__}")
    a, b, out = torch.randn(2048, 2048), torch.randn(2048, 2048), torch.empty(2048, 2048)
    sgemm = 2 * 2048 ** 3 / best_seconds(lambda: torch.mm(a, b, out=out), args.repeats) / 1e9
    flops = IMAGES * HEADS * 2 * 2 * TOKENS * TOKENS * HEAD_DIM  # QK^T and AV
    print(f"sgemm 2048^3 {sgemm:.1f} GFLOP/s; attention matmuls {flops / IMAGES / 1e9:.2f} GFLOP per image")
    cos_qk, sin_qk = pe_core._rope_tables(GRID, GRID, HEAD_DIM, True, 10000.0, HEAD_DIM ** -0.5, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    eager_attention = EagerAttention(cos_qk, sin_qk)
    for name, scale in (("typical", 1.0), ("peaked", 8.0)):
        qkv = torch.randn(IMAGES, TOKENS, 3 * HEADS * HEAD_DIM, generator=generator) * scale
        bias = torch.randn(3 * HEADS * HEAD_DIM, generator=generator) * 0.1
        fused = best_seconds(lambda: torch.ops.pe.rope_attention(qkv, cos_qk, sin_qk, HEADS, "best", bias),
                             args.repeats)
        biased = qkv + bias  # the fused kernel adds the bias as it reads; eager's addmm did
        eager = best_seconds(lambda: eager_attention(biased), args.repeats)
        # Head 0 of image 0 before RoPE (a rotation keeps the spread's scale).
        width = HEADS * HEAD_DIM
        spread = torch.mm(qkv[0, :, :HEAD_DIM] * HEAD_DIM ** -0.5, qkv[0, :, width:width + HEAD_DIM].t())
        spread = float((spread.amax(-1) - spread.amin(-1)).mean())
        difference = float((torch.ops.pe.rope_attention(qkv, cos_qk, sin_qk, HEADS, "best", bias)
                            - eager_attention(biased).reshape(IMAGES, TOKENS, -1)).abs().max())
        print(f"{name:>8} (a row's scores spread over about {spread:.0f}): fused {1e3 * fused / IMAGES:.2f} ms "
              f"per image ({flops / fused / 1e9:.0f} GFLOP/s, {100 * flops / fused / 1e9 / sgemm:.0f}% of sgemm), "
              f"eager ops {1e3 * eager / IMAGES:.2f} ms: {eager / fused:.2f}x; outputs differ by {difference:.1e} at most")


if __name__ == "__main__":
    main()
