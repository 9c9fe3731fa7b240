"""The perception-retrieval command line.

    perception-retrieval demo   [--out DIR] [--checkpoint PE-Core-L14-336.pt]
    perception-retrieval eval   --model M.pt [--model M2.pt] --dataset NAME=FORMAT:PATH [...] [--out DIR]
                                [--workers N | --scheduler ADDRESS]
    perception-retrieval compare RUN_A RUN_B --out DIR
    perception-retrieval encode --model M.pt INPUT --out embeddings.npz [--workers N | --scheduler ADDRESS]
    perception-retrieval search --model M.pt --gallery embeddings.npz|INPUT QUERY [QUERY ...] [-k 5]

FORMAT is sop, products10k, vprc, manifest or folders (see datasets.py); INPUT
is a dataset in the same NAME=FORMAT:PATH form, or simply a folder of instance
folders or a manifest .csv. Embeddings are cached by model and image contents
(--cache DIR, default ~/.cache/perception_retrieval; --no-cache to disable), so
a re-run encodes nothing twice and an interrupted run resumes.

Every score gets a 95% bootstrap interval over queries (--bootstrap N
resamples, 0 = none; --seed). compare reads two eval folders of the same
datasets and writes the differences B - A with paired intervals and
permutation p-values; eval with two --model options does both runs and the
comparison (docs/statistics.md).

--workers N runs encoding and search on a local Dask cluster of N processes,
--scheduler ADDRESS on an existing one (perception_retrieval.distributed,
docs/distributed.md); without them Dask is not used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np

from . import __version__

DEMO_CONFIG = "PE-Core-L14-336"


def _add_model_options(parser: argparse.ArgumentParser, model_required: bool = True,
                       two_models: bool = False) -> None:
    parser.add_argument("--model", required=model_required, metavar="M.pt", action="append" if two_models else "store",
                        help="TorchScript model made by perception-retrieval-export" +
                             ("; give it twice (A, then B) to evaluate both and compare them" if two_models else ""))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu); on a cluster also "
                        "'worker': each worker's device from its Dask resources (cuda:N=1 or GPU=1)")
    from .encoder import DEFAULTS

    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16", "fp32", "fp16", "bf16"),
                        help="float16/bfloat16 on CUDA only (default float32)")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"],
                        help=f"images per forward pass (default {DEFAULTS['batch_size']})")
    parser.add_argument("--threads", type=int, default=0,
                        help="compute threads (default 0 = every CPU this process may use)")
    parser.add_argument("--decode-threads", type=int, default=0,
                        help="image decoding threads (default 0 = every CPU this process may use)")
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--cache", metavar="DIR", default=None,
                       help="embedding cache folder (default $XDG_CACHE_HOME/perception_retrieval)")
    cache.add_argument("--no-cache", action="store_true", help="encode everything, store nothing")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="an unreadable image stops the run (raise, default) or is left out and reported (skip)")


def _add_statistics_options(parser: argparse.ArgumentParser) -> None:
    from . import stats

    parser.add_argument("--bootstrap", type=int, default=stats.DEFAULT_RESAMPLES, metavar="N",
                        help=f"bootstrap resamples for the 95%% intervals (default {stats.DEFAULT_RESAMPLES}; 0 = none)")
    parser.add_argument("--permutations", type=int, default=stats.DEFAULT_PERMUTATIONS, metavar="N",
                        help="random sign assignments of the permutation test between two models "
                             f"(default {stats.DEFAULT_PERMUTATIONS}; 0 = no p-values)")
    parser.add_argument("--seed", type=int, default=stats.DEFAULT_SEED,
                        help=f"seed of the resampling (default {stats.DEFAULT_SEED}); the same seed gives the same "
                             "intervals on every machine")


def _statistics(args) -> dict:
    """The --bootstrap / --seed (and --permutations) values, checked."""
    for option in ("bootstrap", "permutations"):
        value = getattr(args, option)
        if value < 0:
            raise ValueError(f"--{option} must be >= 0 (0 turns it off), got {value}")
    if not 0 <= args.seed < 2 ** 64:
        raise ValueError(f"--seed must be in [0, 2^64), got {args.seed}")
    return {"bootstrap": args.bootstrap, "seed": args.seed}


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster (Dask; see docs/distributed.md)")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="encode and search on a local Dask cluster of N worker processes (CPUs split between "
                            "them; on a cluster --threads counts per worker process)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="encode and search on an existing Dask cluster, e.g. tcp://scheduler-host:8786")
    group.add_argument("--connect-timeout", type=float, default=30.0, metavar="SECONDS",
                       help="how long to wait for the scheduler and a first worker (default 30)")
    group.add_argument("--send-model", action="store_true",
                       help="send the model file to the workers instead of them reading --model's path")
    group.add_argument("--send-images", action="store_true",
                       help="send image bytes to the workers instead of them reading the paths")


def _cluster_client(args):
    """A Dask client for --workers/--scheduler, else None (and Dask is not imported)."""
    if getattr(args, "workers", None) is None and getattr(args, "scheduler", None) is None:
        if getattr(args, "send_model", False) or getattr(args, "send_images", False):
            raise ValueError("--send-model and --send-images need --workers or --scheduler")
        return contextlib.nullcontext(None)
    if args.connect_timeout <= 0:
        raise ValueError(f"--connect-timeout must be > 0 seconds, got {args.connect_timeout}")
    from . import distributed

    return distributed.connect(workers=args.workers, scheduler=args.scheduler, timeout=args.connect_timeout)


def _cluster_options(args, client) -> dict:
    return {} if client is None else {"client": client, "send_model": args.send_model, "send_images": args.send_images}


def _evaluation(args, model_path: str, **extra):
    from . import cache, evaluation

    cache_dir = None if args.no_cache else (args.cache or cache.default_cache_dir())
    from ._native import usable_cpu_count

    # A command-line run owns its process, so it opts in to the process-wide
    # settings a library leaves alone: every CPU for LibTorch, and the
    # allocator tuning the oneDNN path needs (include/pe/encoder.hpp).
    # On a cluster --threads counts per worker process, and 0 lets each worker
    # take its share of its host's CPUs (perception_retrieval.distributed).
    threads = args.threads or (0 if extra.get("client") is not None else usable_cpu_count())
    return evaluation.Evaluation(model_path, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                                 threads=threads, decode_threads=args.decode_threads,
                                 tune_allocator=True, cache_dir=cache_dir,
                                 on_error=args.on_error, **extra)


def _default_out_dir(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_eval(args: argparse.Namespace) -> int:
    from . import datasets

    loaded = [datasets.load_spec(spec) for spec in args.dataset]  # every dataset checked before any encoding
    datasets.check_unique_names(loaded)
    out_dir = args.out or _default_out_dir("eval")
    with _cluster_client(args) as client:
        run = _evaluation(args, args.model, samples=args.samples, ap_normalizer=args.ap_normalizer,
                          chunk_size=args.chunk_size, **_statistics(args), **_cluster_options(args, client))
        run.evaluate(loaded, out_dir=out_dir, html=not args.no_html)
    print(f"reports in {os.path.abspath(out_dir)}" + ("" if args.no_html else
                                                       f" (open {os.path.join(out_dir, 'report.html')})"))
    return 0


def run_eval_command(args: argparse.Namespace) -> int:
    """eval with one --model (run_eval), or with two: both runs and their comparison."""
    models = args.model
    if len(models) > 2:
        raise ValueError(f"--model given {len(models)} times; give one model, or two (A and B) to compare them")
    if len(models) == 2:
        return run_eval_pair(args)
    args.model = models[0]
    return run_eval(args)


def _pair_folders(out_dir: str, models) -> list:
    """out_dir/A-<model stem> and out_dir/B-<model stem>."""
    from .evaluation import _safe_name

    return [os.path.join(out_dir, f"{label}-{_safe_name(os.path.splitext(os.path.basename(model))[0])}")
            for label, model in zip("AB", models)]


def run_eval_pair(args: argparse.Namespace) -> int:
    """Evaluates model A, then model B, each into its own subfolder of --out,
    then compares them into --out itself (comparison.json, .md, .html)."""
    from . import compare, datasets

    settings = _statistics(args)
    loaded = [datasets.load_spec(spec) for spec in args.dataset]  # every dataset checked before any encoding
    datasets.check_unique_names(loaded)
    out_dir = args.out or _default_out_dir("eval")
    folders = _pair_folders(out_dir, args.model)
    with _cluster_client(args) as client:
        for label, model, folder in zip("AB", args.model, folders):
            print(f"== model {label}: {model}", flush=True)
            run = _evaluation(args, model, samples=args.samples, ap_normalizer=args.ap_normalizer,
                              chunk_size=args.chunk_size, **settings, **_cluster_options(args, client))
            run.evaluate(loaded, out_dir=folder, html=not args.no_html)
            del run  # one model in memory at a time
    report = compare.compare_runs(folders[0], folders[1], out_dir, resamples=args.bootstrap,
                                  permutations=args.permutations, seed=args.seed, threads=args.threads,
                                  samples=args.samples, html=not args.no_html, log=_log)
    print(compare.comparison_markdown(report), flush=True)
    print(f"runs in {folders[0]} and {folders[1]}; comparison in {os.path.abspath(out_dir)}" +
          ("" if args.no_html else f" (open {os.path.join(out_dir, 'comparison.html')})"))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from . import compare

    _statistics(args)
    out_dir = args.out or _default_out_dir("compare")
    report = compare.compare_runs(args.run_a, args.run_b, out_dir, resamples=args.bootstrap,
                                  permutations=args.permutations, seed=args.seed, threads=args.threads,
                                  samples=args.samples, html=not args.no_html, log=_log)
    print(compare.comparison_markdown(report), flush=True)
    print(f"comparison in {os.path.abspath(out_dir)}" +
          ("" if args.no_html else f" (open {os.path.join(out_dir, 'comparison.html')})"))
    return 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _export_demo_model(args, models_dir: str) -> str:
    from . import export

    os.makedirs(models_dir, exist_ok=True)
    if args.checkpoint:
        stem = os.path.splitext(os.path.basename(args.checkpoint))[0]
        path = os.path.join(models_dir, f"{args.config}-{stem}.pt")
    else:
        path = os.path.join(models_dir, f"{args.config}-random-seed{args.seed}.pt")
    if os.path.isfile(path):
        print(f"[demo] reusing the exported model {path}")
        return path
    if args.checkpoint:
        print(f"[demo] exporting {args.config} from the checkpoint {args.checkpoint}")
        export.export(path, args.checkpoint, config=args.config)
    else:
        print(f"[demo] exporting {args.config} with RANDOM WEIGHTS (seed {args.seed}): no checkpoint was given, "
              "so the scores only show that the pipeline works end to end. Pass --checkpoint with the official "
              "PE-Core file for meaningful numbers.")
        export.export(path, config=args.config, random_init=True, seed=args.seed)
    return path


def write_demo_datasets(data_dir: str, instances: int, views: int, seed: int) -> list:
    """The demo's two labelled sets, written under data_dir and loaded: one folder per
    product (views per product), and a VPRC-layout shelf set with cropped queries. Also
    what benchmarks/bench_int8.py measures on."""
    from . import datasets, synthetic

    products = synthetic.write_folder_dataset(os.path.join(data_dir, "products"), num_instances=instances,
                                              views_per_instance=views, seed=seed)
    shelf = synthetic.write_vprc_dataset(os.path.join(data_dir, "shelf"), num_instances=instances,
                                         gallery_views=2, queries_per_instance=1, seed=seed + 1)
    return [datasets.load_folders(products, "Demo products (folders)"),
            datasets.load_vprc(shelf, "Demo shelf (VPRC layout)")]


def run_demo(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out_dir = os.path.abspath(args.out)
    data_dir = os.path.join(out_dir, "data")
    print(f"[demo] writing two small labelled product sets under {data_dir}")
    loaded = write_demo_datasets(data_dir, args.instances, args.views, args.seed)
    model_path = args.model or _export_demo_model(args, os.path.join(out_dir, "models"))
    if not args.no_cache and not args.cache:
        args.cache = os.path.join(out_dir, "cache")  # keep everything the demo makes in one folder
    run = _evaluation(args, model_path, samples=6)
    run.evaluate(loaded, out_dir=os.path.join(out_dir, "report"))
    print(f"[demo] done in {time.perf_counter() - started:.0f} s; open {os.path.join(out_dir, 'report', 'report.html')}")
    if run.random_weights:
        print("[demo] reminder: random weights; the table shows the pipeline works, not how good PE-Core is.")
    return 0


def _load_input(spec: str):
    from . import datasets

    return datasets.load_spec(spec)


def run_encode(args: argparse.Namespace) -> int:
    dataset = _load_input(args.input)
    print(dataset.summary(), file=sys.stderr)
    with _cluster_client(args) as client:
        run = _evaluation(args, args.model, **_cluster_options(args, client))
        embeddings, failures, timing = run.embed(dataset.images, dataset.name)
    keep = np.array([i not in failures for i in range(len(dataset.images))], dtype=bool)
    crops = np.array([ref.crop if ref.crop else (-1, -1, -1, -1) for ref in dataset.images], dtype=np.int64)
    out = os.path.abspath(args.out)
    with open(out + ".tmp", "wb") as handle:  # np.savez appends .npz to names without it
        np.savez(handle, embeddings=embeddings[keep], paths=np.array([r.path for r in dataset.images])[keep],
                 instance_ids=np.array(dataset.instance_ids)[keep], crops=crops[keep].reshape(-1, 4),
                 model_sha256=np.array(run.model_sha256), metadata=np.array(json.dumps(run.metadata)))
    os.replace(out + ".tmp", out)
    print(f"wrote {int(keep.sum())} embeddings ({embeddings.shape[1]}-d) to {out} "
          f"({timing['encoded_images']} encoded, {timing['cached_images']} from the cache, "
          f"{len(failures)} failed)", file=sys.stderr)
    for index, reason in sorted(failures.items()):
        print(f"  failed: {dataset.images[index]}: {reason}", file=sys.stderr)
    return 0 if not failures else 1


def _gallery(args, run):
    """(embeddings, paths, instance_ids) from an encode .npz or a dataset to encode."""
    if args.gallery.endswith(".npz") and os.path.isfile(args.gallery):
        with np.load(args.gallery, allow_pickle=False) as data:
            missing = [key for key in ("embeddings", "paths", "instance_ids", "model_sha256") if key not in data]
            if missing:
                raise ValueError(f"{args.gallery} lacks {', '.join(missing)}; make it with perception-retrieval encode")
            if str(data["model_sha256"]) != run.model_sha256:
                raise ValueError(f"{args.gallery} was encoded with another model (sha256 {str(data['model_sha256'])[:12]}, "
                                 f"this one is {run.model_sha256[:12]}); re-encode the gallery with this model")
            return data["embeddings"], data["paths"].tolist(), data["instance_ids"].tolist()
    dataset = _load_input(args.gallery)
    embeddings, failures, _ = run.embed(dataset.images, dataset.name)
    keep = [i for i in range(len(dataset.images)) if i not in failures]
    return embeddings[keep], [dataset.images[i].path for i in keep], [dataset.instance_ids[i] for i in keep]


def run_search(args: argparse.Namespace) -> int:
    from ._native import Retriever

    run = _evaluation(args, args.model)
    embeddings, paths, labels = _gallery(args, run)
    if len(paths) == 0:
        raise ValueError(f"the gallery {args.gallery} holds no image")
    gallery = Retriever(embeddings.shape[1])
    gallery.add(np.ascontiguousarray(embeddings, dtype=np.float32), np.arange(len(paths), dtype=np.int64))
    for query in args.queries:
        if not os.path.isfile(query):
            raise FileNotFoundError(f"query image {query} not found")
    queries = run.encoder.encode(list(args.queries))
    scores, ids = gallery.search(queries, min(args.k, len(paths)), threads=args.threads)
    results = []
    for query, row_scores, row_ids in zip(args.queries, scores, ids):
        hits = [{"rank": rank + 1, "score": float(s), "path": paths[g], "instance_id": labels[g]}
                for rank, (s, g) in enumerate(zip(row_scores.tolist(), row_ids.tolist())) if g >= 0]
        results.append({"query": query, "results": hits})
        if not args.json:
            print(query)
            for hit in hits:
                print(f"  {hit['rank']:>3}  {hit['score']:.4f}  {hit['instance_id']}  {hit['path']}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perception-retrieval",
                                     description="Image-to-image instance retrieval with PE-Core.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="generate product images, export a model, evaluate end to end")
    demo.add_argument("--out", default="demo-output", metavar="DIR", help="where data, model, embedding cache "
                      "and report go (default ./demo-output)")
    demo.add_argument("--checkpoint", metavar="FILE", help="official PE-Core checkpoint (default: random weights)")
    demo.add_argument("--config", default=DEMO_CONFIG, help=f"PE-Core config to export (default {DEMO_CONFIG})")
    demo.add_argument("--instances", type=int, default=8, help="products per set (default 8)")
    demo.add_argument("--views", type=int, default=4, help="views per product in the folder set (default 4)")
    demo.add_argument("--seed", type=int, default=0, help="seed for images and random weights (default 0)")
    _add_model_options(demo, model_required=False)
    demo.set_defaults(run=run_demo)

    evaluate = commands.add_parser("eval", help="evaluate a model (or two, compared) on datasets: table, reports, HTML")
    _add_model_options(evaluate, two_models=True)
    evaluate.add_argument("--dataset", action="append", required=True, metavar="NAME=FORMAT:PATH",
                          help="a dataset (repeat for several); FORMAT: sop, products10k, vprc, manifest, folders")
    evaluate.add_argument("--out", metavar="DIR", help="report folder (default ./eval-DATE-TIME)")
    evaluate.add_argument("--samples", type=int, default=8, help="sample queries per dataset in the HTML report")
    evaluate.add_argument("--ap-normalizer", default="min_r_k", choices=("min_r_k", "r", "hits"),
                          help="AP@k divisor: min(R, k) (the leaderboard's, default), R, or hits in the top k")
    evaluate.add_argument("--chunk-size", type=int, default=256, help="images encoded between cache writes")
    evaluate.add_argument("--no-html", action="store_true", help="skip report.html")
    _add_statistics_options(evaluate)
    _add_cluster_options(evaluate)
    evaluate.set_defaults(run=run_eval_command)

    compare = commands.add_parser("compare", help="compare two eval output folders: B - A with intervals and p-values")
    compare.add_argument("run_a", metavar="RUN_A", help="eval output folder of model A")
    compare.add_argument("run_b", metavar="RUN_B", help="eval output folder of model B (the same datasets)")
    compare.add_argument("--out", metavar="DIR", help="comparison folder (default ./compare-DATE-TIME)")
    compare.add_argument("--samples", type=int, default=8,
                         help="queries per dataset shown side by side, those where the models disagree most")
    compare.add_argument("--threads", type=int, default=0, help="resampling threads (default 0 = all cores)")
    compare.add_argument("--no-html", action="store_true", help="skip comparison.html")
    _add_statistics_options(compare)
    compare.set_defaults(run=run_compare)

    encode = commands.add_parser("encode", help="embed a dataset (folder, manifest or NAME=FORMAT:PATH) to .npz")
    _add_model_options(encode)
    encode.add_argument("input", metavar="INPUT", help="folder of instance folders, manifest.csv or NAME=FORMAT:PATH")
    encode.add_argument("--out", required=True, metavar="FILE.npz",
                        help="embeddings, paths, instance_ids, crops, model_sha256")
    _add_cluster_options(encode)
    encode.set_defaults(run=run_encode)

    search = commands.add_parser("search", help="top-k gallery images for query images")
    _add_model_options(search)
    search.add_argument("--gallery", required=True, metavar="FILE.npz|INPUT",
                        help="embeddings from 'encode', or a dataset to encode (cached)")
    search.add_argument("queries", nargs="+", metavar="QUERY", help="query image files")
    search.add_argument("-k", type=int, default=5, help="results per query (default 5)")
    search.add_argument("--json", action="store_true", help="print JSON instead of a listing")
    search.set_defaults(run=run_search)
    return parser


def main(argv=None) -> int:
    """The command line. Its entry points (perception-retrieval, python -m
    perception_retrieval) are process.main, which claims the process first."""
    args = build_parser().parse_args(argv)
    for option in ("batch_size", "k", "chunk_size", "instances", "views", "workers"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            print(f"perception-retrieval {args.command}: error: --{option.replace('_', '-')} must be >= 1, "
                  f"got {value}", file=sys.stderr)
            return 2
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"\nperception-retrieval {args.command}: interrupted; finished chunks are cached and a re-run "
              "resumes from them", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError) as error:
        print(f"perception-retrieval {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
