"""The perception-retrieval command line.

    perception-retrieval demo [--out DIR]

`demo` scores the bundled example rankings (data/example_rankings.json, two
simulated product sets) and prints the leaderboard table; with --out it also
writes report.md, report.csv and report.json there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import resources

from . import __version__, metrics


def _load_example_rankings() -> list:
    text = resources.files(__package__).joinpath("data/example_rankings.json").read_text()
    return json.loads(text)["datasets"]


def _write_report(report: metrics.Report, out_dir: str) -> list:
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, text in (("report.md", report.to_markdown()), ("report.csv", report.to_csv()),
                       ("report.json", report.to_json())):
        path = os.path.join(out_dir, name)
        # Write beside, then rename: an interrupted run never leaves half a report.
        with open(path + ".tmp", "w") as out:
            out.write(text)
        os.replace(path + ".tmp", path)
        written.append(path)
    return written


def run_demo(args: argparse.Namespace) -> int:
    print(f"perception_retrieval {__version__}: scoring the bundled example rankings "
          "(simulated product sets; encoding real images arrives with the encoder)\n")
    report = metrics.Report()
    started = time.perf_counter()
    for dataset in _load_example_rankings():
        result = metrics.evaluate(dataset["ranking"], dataset["query_ids"], dataset["gallery_ids"],
                                  exclude_self=dataset["exclude_self"], threads=args.threads)
        report.add(dataset["name"], result)
    elapsed = time.perf_counter() - started
    print(report.to_markdown())
    print(f"scored {len(report)} datasets in {elapsed * 1000:.1f} ms")
    if args.out:
        for path in _write_report(report, args.out):
            print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perception-retrieval",
                                     description="Image-to-image instance retrieval with PE-Core.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="score the bundled example and print the leaderboard table")
    demo.add_argument("--out", metavar="DIR", help="also write report.md, report.csv and report.json to DIR")
    demo.add_argument("--threads", type=int, default=0, help="scoring threads (default 0 = all cores)")
    demo.set_defaults(run=run_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError) as error:
        print(f"perception-retrieval {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
