"""The perception-retrieval command line: the demo scores the bundled rankings."""

import json
import os
import shutil
import subprocess
import sys
from importlib import resources

import pytest

import naive_metrics
from perception_retrieval import cli


def bundled_datasets():
    return json.loads(resources.files("perception_retrieval").joinpath("data/example_rankings.json").read_text())[
        "datasets"]


def test_demo_table_matches_naive_reference(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    rows = {}
    for dataset in bundled_datasets():
        means, _ = naive_metrics.evaluate(dataset["ranking"], dataset["query_ids"], dataset["gallery_ids"],
                                          (1, 5), (10,), "min_r_k", dataset["exclude_self"])
        cells = [f"{means[key] * 100:.2f}" for key in ("P@1", "P@5", "R@1", "R@5", "mAP@10")]
        rows[dataset["name"]] = cells
        assert f"| {dataset['name']} | " + " | ".join(cells) + " |" in printed
    averages = [sum(float(rows[name][j]) for name in rows) / len(rows) for j in range(5)]
    average_line = next(line for line in printed.splitlines() if line.startswith("| Average |"))
    for cell, expected in zip(average_line.split("|")[2:7], averages):
        assert float(cell) == pytest.approx(expected, abs=0.011)  # macro mean of rounded cells
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [row["dataset"] for row in saved["datasets"]] == list(rows)
    assert (tmp_path / "report.md").read_text() in printed
    assert (tmp_path / "report.csv").read_text().startswith("dataset,P@1,P@5,R@1,R@5,mAP@10,")
    assert not list(tmp_path.glob("*.tmp"))


def test_console_script_and_module_entry_points():
    script = shutil.which("perception-retrieval", path=os.path.dirname(sys.executable))
    assert script, "the perception-retrieval console script is not installed beside this python"
    for command in ([script, "demo"], [sys.executable, "-m", "perception_retrieval", "demo"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "| Average |" in done.stdout


def test_bad_arguments_exit_nonzero_with_usage():
    done = subprocess.run([sys.executable, "-m", "perception_retrieval", "demo", "--threads", "x"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "invalid int value" in done.stderr
