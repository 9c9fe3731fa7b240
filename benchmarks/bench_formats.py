#!/usr/bin/env python3
"""The model formats pe::Encoder runs, against each other and against two peers, in one run.

PE-Core (default L14-336, random weights), one batch size, the same intra-op threads for
everyone, every variant fed the same preprocessed batches, interleaved round by round
so that load from other processes hits all alike:

  eager         the nn.Module from perception_retrieval.pe_core (PyTorch, torch.no_grad)
  torchscript   pe::Encoder on the TorchScript file (Linear layers through oneDNN)
  pt2           pe::Encoder on the .pt2 AOTInductor package (torch >= 2.6)
  onnxruntime   the same model exported to ONNX (torch.onnx.export) run by ONNX Runtime's
                CPU provider (intra_op_num_threads = the same threads)

Reports images/s, each variant's speed relative to eager and to ONNX Runtime, and the
embedding cosine of every variant against eager fp32 (both our formats must reach
0.999999, ONNX Runtime 0.9999); exits 1 when any variant disagrees. Our variants go
through pr.Encoder.encode on 336 x 336 uint8 images, so their time includes the
(identity) resize and normalisation, a few ms per batch; the peers get the float input.

    flock /tmp/pe-bench.lock python benchmarks/bench_formats.py [--config PE-Core-L14-336]
        [--batch 8] [--rounds 3] [--threads N] [--skip pt2,onnxruntime]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads (see bench_pe_core.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import perception_retrieval as pr  # noqa: E402
from perception_retrieval import export, pe_core  # noqa: E402

VARIANTS = ("eager", "torchscript", "pt2", "onnxruntime")
REQUIRED_COSINE = {"torchscript": 0.999999, "pt2": 0.999999, "onnxruntime": 0.9999}


def timed(label, fn):
    started = time.perf_counter()
    result = fn()
    print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)
    return result


def export_onnx(model, size, path):
    """The tower's functional path (the one torch.export traces) to ONNX, batch dynamic."""
    model.exportable = True
    wrapper = export._ExportableEncoder(model, normalize=True).eval()
    example = torch.zeros(2, 3, size, size)
    with torch.no_grad():
        torch.onnx.export(wrapper, (example,), path, input_names=["images"], output_names=["embeddings"],
                          dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1, max=1024)}},
                          dynamo=True, external_data=True)
    model.exportable = False


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=pe_core.DEFAULT_CONFIG)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="timed batches per variant")
    parser.add_argument("--threads", type=int, default=pr.usable_cpu_count())
    parser.add_argument("--skip", default="", help="comma-separated variants to leave out")
    args = parser.parse_args()
    skip = {name for name in args.skip.split(",") if name}
    torch.set_num_threads(args.threads)
    config = pe_core.get_config(args.config)
    size = config.image_size
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes share the cores)")
    print(f"threads: {args.threads} intra-op for every variant (torch {torch.get_num_threads()}); "
          f"CPU ISA: {pr.cpu_features()}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    print(f"torch {torch.__version__}; model {config.name}, batch {args.batch}, {size} px, fp32, random weights")

    eager = pe_core.build(config, seed=0).eval()
    runners = {"eager": None}
    with tempfile.TemporaryDirectory() as folder:
        print("preparing:")
        script_path = os.path.join(folder, "model.pt")
        timed("TorchScript export", lambda: export.export(script_path, config=config, random_init=True, seed=0,
                                                          verify=False, log=None))
        runners["torchscript"] = pr.Encoder(script_path, batch_size=args.batch, threads=args.threads,
                                            decode_threads=args.threads, tune_allocator=True)
        if "pt2" not in skip and export.has_aoti():
            pt2_path = os.path.join(folder, "model.pt2")
            timed(".pt2 export (torch.export + AOTInductor compile)",
                  lambda: export.export(pt2_path, config=config, random_init=True, seed=0, verify=False, log=None))
            runners["pt2"] = pr.Encoder(pt2_path, batch_size=args.batch, threads=args.threads,
                                        decode_threads=args.threads)
        elif "pt2" not in skip:
            print(f"  .pt2: skipped, torch {torch.__version__} has no AOTInductor packages")
        if "onnxruntime" not in skip:
            try:
                import onnxruntime
            except ImportError:
                onnxruntime = None
                print("  onnxruntime: skipped, not installed (pip install onnxruntime onnx onnxscript)")
            if onnxruntime is not None:
                onnx_path = os.path.join(folder, "model.onnx")
                timed("ONNX export (torch.onnx.export, dynamo)", lambda: export_onnx(eager, size, onnx_path))
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = args.threads
                options.inter_op_num_threads = 1
                options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
                session = timed("ONNX Runtime session", lambda: onnxruntime.InferenceSession(
                    onnx_path, options, providers=["CPUExecutionProvider"]))
                runners["onnxruntime"] = session
                print(f"  onnxruntime {onnxruntime.__version__}, intra-op threads {args.threads}")

        rng = np.random.default_rng(0)
        pixels = [rng.integers(0, 256, (args.batch, size, size, 3), dtype=np.uint8) for _ in range(args.rounds + 1)]
        batches = [torch.from_numpy(np.stack([pr.image.preprocess(p, size) for p in batch])) for batch in pixels]

        def run(name, index):
            if name == "eager":
                with torch.no_grad():
                    return F.normalize(eager(batches[index]), dim=1).numpy()
            if name == "onnxruntime":
                return runners[name].run(None, {"images": batches[index].numpy()})[0]
            return runners[name].encode(pixels[index])

        names = list(runners)
        outputs = {name: [run(name, 0)] for name in names}  # warm-up round (first-call work)
        seconds = {name: [] for name in names}
        for index in range(1, args.rounds + 1):
            order = names if index % 2 else list(reversed(names))
            for name in order:
                started = time.perf_counter()
                outputs[name].append(run(name, index))
                seconds[name].append(time.perf_counter() - started)

    reference = np.concatenate(outputs["eager"])
    rate = {name: args.batch / statistics.median(samples) for name, samples in seconds.items()}
    ok = True
    print(f"results (median of {args.rounds} batches of {args.batch}):")
    for name in names:
        cosine = float((np.concatenate(outputs[name]) * reference).sum(axis=1).min())
        line = f"  {name:>12}: {rate[name]:6.3f} img/s, {rate[name] / rate['eager']:.2f}x eager"
        if "onnxruntime" in rate:
            line += f", {rate[name] / rate['onnxruntime']:.2f}x ONNX Runtime"
        line += f"; embedding cosine to eager fp32 min {cosine:.7f}"
        if name in REQUIRED_COSINE and cosine < REQUIRED_COSINE[name]:
            line += f"  DISAGREES (needs >= {REQUIRED_COSINE[name]})"
            ok = False
        print(line)
    if "pt2" in rate:
        print(f"  .pt2 vs TorchScript (both through pe::Encoder): {rate['pt2'] / rate['torchscript']:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if not ok:
        print("bench_formats: a variant's embeddings disagree with eager", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
