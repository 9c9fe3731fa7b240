"""Intervals in `eval`, `compare RUN_A RUN_B` and `eval --model A --model B`,
end to end with two tiny random-weight models.

Every interval, difference and p-value in the outputs is recomputed here from
the per_query/<dataset>.csv files alone, with the pure-Python re-implementation
of the specified generator (reference_stats.py), never with the library's code.
Runs that differ are refused; old runs (without the top-5 JSON columns or
report.json) still compare. The comparison page is parsed and loaded in
headless Chromium like the report page (test_html_report.py)."""

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import reference_stats as ref
from perception_retrieval import compare, export, html_report, synthetic
from test_html_report import (WINDOW, Page, css_rgb, find_chromium, finish_chromium, finish_probe, is_green, is_red,
                              start_chromium, start_probe)

COLUMNS = ("P@1", "P@5", "R@1", "R@5", "mAP@10")
CSV_COLUMNS = ("P@1", "P@5", "R@1", "R@5", "AP@10")
RESAMPLES, PERMUTATIONS, SEED, SAMPLES = 200, 300, 5, 4


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "perception_retrieval", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Two tiny models, a folders set and a VPRC set (crops), and one
    `eval --model A --model B` run over both."""
    root = tmp_path_factory.mktemp("compare")
    models = []
    for seed in (0, 1):
        path = str(root / f"tiny{seed}.pt")
        export.export(path, config="test-tiny", random_init=True, seed=seed, log=None)
        models.append(path)
    folders = synthetic.write_folder_dataset(str(root / "products"), num_instances=6, views_per_instance=4, seed=0)
    shelf = synthetic.write_vprc_dataset(str(root / "shelf"), num_instances=6, gallery_views=2,
                                         queries_per_instance=2, seed=1)
    specs = [f"Products=folders:{folders}", f"Shelf & <co>=vprc:{shelf}"]
    out = root / "out"
    done = run_cli("eval", "--model", models[0], "--model", models[1], *sum((["--dataset", s] for s in specs), []),
                   "--out", str(out), "--no-cache", "--threads", "2", "--bootstrap", str(RESAMPLES),
                   "--permutations", str(PERMUTATIONS), "--seed", str(SEED), "--samples", str(SAMPLES))
    assert done.returncode == 0, done.stderr
    return {"root": root, "models": models, "specs": specs, "out": out, "done": done,
            "runs": [out / "A-tiny0", out / "B-tiny1"], "folders": folders}


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def scored_rows(rows):
    """The scored queries' five values as Python floats, straight from the CSV text."""
    return [[float(row[c]) for c in CSV_COLUMNS] for row in rows if int(row["R"]) > 0]


def per_query_file(run, name):
    return run / "per_query" / ("".join(c if c.isalnum() or c in "-_." else "_" for c in name) + ".csv")


def dataset_names(run):
    return [d["name"] for d in json.loads((run / "report.json").read_text())["datasets"]]


# --------------------------------------------------------------------------- eval

def test_eval_intervals_recomputed_from_the_per_query_csv(workspace):
    for run in workspace["runs"]:
        results = json.loads((run / "results.json").read_text())
        report = json.loads((run / "report.json").read_text())
        assert report["bootstrap"]["resamples"] == RESAMPLES and report["bootstrap"]["seed"] == SEED
        replicates_by_dataset = []
        for stream, name in enumerate(dataset_names(run)):
            rows = scored_rows(read_csv(per_query_file(run, name)))
            means = [math.fsum(r[j] for r in rows) / len(rows) for j in range(5)]
            for j, column in enumerate(COLUMNS):
                assert results[name][column] == pytest.approx(means[j], abs=1e-12)
            replicates = ref.bootstrap_means(rows, RESAMPLES, SEED, stream)  # dataset i: stream i
            replicates_by_dataset.append(replicates)
            for j, column in enumerate(COLUMNS):
                low, high = ref.percentile_interval([r[j] for r in replicates])
                assert results[name]["ci95"][column] == pytest.approx([low, high], abs=1e-12), (name, column)
                summary = next(d for d in report["datasets"] if d["name"] == name)
                assert summary["ci95"][column] == results[name]["ci95"][column]
        # The Average: the mean over datasets of each replicate, datasets resampled independently.
        for j, column in enumerate(COLUMNS):
            averages = [sum(reps[r][j] for reps in replicates_by_dataset) / len(replicates_by_dataset)
                        for r in range(RESAMPLES)]
            assert report["average_ci95"][column] == pytest.approx(list(ref.percentile_interval(averages)), abs=1e-12)


def test_intervals_shown_in_every_output(workspace):
    run = workspace["runs"][0]
    results = json.loads((run / "results.json").read_text())
    report = json.loads((run / "report.json").read_text())
    name = dataset_names(run)[0]
    low, high = results[name]["ci95"]["P@1"]
    cell = f"{100 * results[name]['P@1']:.2f} [{100 * low:.2f}, {100 * high:.2f}]"
    markdown = (run / "report.md").read_text()
    assert f"| {name} | {cell} |" in markdown
    assert f"{RESAMPLES} resamples, seed {SEED}" in markdown
    with open(run / "report.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    row = next(r for r in table if r["dataset"] == name)
    assert (row["P@1 ci95 low"], row["P@1 ci95 high"]) == (f"{100 * low:.2f}", f"{100 * high:.2f}")
    assert row["bootstrap_resamples"] == str(RESAMPLES) and row["bootstrap_seed"] == str(SEED)
    average = next(r for r in table if r["dataset"] == "Average")
    assert average["mAP@10 ci95 low"] == f"{100 * report['average_ci95']['mAP@10'][0]:.2f}"
    page = Page((run / "report.html").read_text())
    rows = {r[0]: r for r in page.tables["leaderboard"][1:]}
    assert rows[name][1] == cell
    low, high = report["average_ci95"]["R@5"]
    assert rows["Average"][4] == f"{100 * report['average']['R@5']:.2f} [{100 * low:.2f}, {100 * high:.2f}]"
    assert f"{RESAMPLES} resamples, seed {SEED}" in "".join(t for _, t in page.find("p"))
    assert "In brackets" in workspace["done"].stdout  # the printed tables carry them too


def test_failures_recomputed_from_the_per_query_csv(workspace):
    run = workspace["runs"][0]
    report = json.loads((run / "report.json").read_text())
    markdown = (run / "report.md").read_text()
    page = Page((run / "report.html").read_text())
    for summary in report["datasets"]:
        rows = read_csv(per_query_file(run, summary["name"]))
        scored = [(float(r["AP@10"]), q) for q, r in enumerate(rows) if int(r["R"]) > 0]
        worst = [q for _, q in sorted(scored)][:8]
        assert [s["query"]["path"] for s in summary["lowest_ap_queries"]] == [rows[q]["query"] for q in worst]
        for sample, q in zip(summary["lowest_ap_queries"], worst):
            assert sample["ap"] == float(rows[q]["AP@10"])
            assert [r["instance_id"] for r in sample["results"]] == json.loads(rows[q]["top5_instance_ids"])
            assert [r["relevant"] for r in sample["results"]] == [
                i == rows[q]["instance_id"] for i in json.loads(rows[q]["top5_instance_ids"])]
        pairs = {}
        for row in rows:
            first = json.loads(row["top5_instance_ids"])[:1]
            if int(row["R"]) > 0 and first and first[0] != row["instance_id"]:
                pairs[(row["instance_id"], first[0])] = pairs.get((row["instance_id"], first[0]), 0) + 1
        assert summary["rank1_errors"] == sum(pairs.values())
        want = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))[:10]
        assert [(c["query_instance"], c["retrieved_instance"], c["count"]) for c in summary["confusions"]] == [
            (a, b, n) for (a, b), n in want]
        top = want[0]
        assert f"| {top[0][0]} | {top[0][1]} | {top[1]} |" in markdown
    assert "## Where the model fails" in markdown
    confusions = page.tables["confusions"]
    assert confusions[0] == ["Query instance", "Wrong instance at rank 1", "Queries"]
    assert len(page.find("div", class_="failures")) == len(report["datasets"])


def test_per_query_csv_records_the_top5(workspace):
    run = workspace["runs"][0]
    shelf = [n for n in dataset_names(run) if n.startswith("Shelf")][0]
    rows = read_csv(per_query_file(run, shelf))
    for row in rows:
        paths = json.loads(row["top5_paths"])
        assert paths == row["top5"].split(";") and len(paths) == 5
        scores = json.loads(row["top5_scores"])
        assert scores == sorted(scores, reverse=True)
        assert len(json.loads(row["top5_instance_ids"])) == 5 and json.loads(row["top5_crops"]) == [None] * 5
        assert row["crop"]  # VPRC queries are crops


def test_bootstrap_zero_turns_intervals_off(workspace, tmp_path):
    done = run_cli("eval", "--model", workspace["models"][0], "--dataset", workspace["specs"][0], "--out",
                   str(tmp_path / "off"), "--no-cache", "--bootstrap", "0", "--no-html")
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "off" / "results.json").read_text())
    assert all("ci95" not in entry for entry in results.values())
    assert "[" not in (tmp_path / "off" / "report.md").read_text().split("\n\n")[0]
    assert json.loads((tmp_path / "off" / "report.json").read_text())["bootstrap"]["resamples"] == 0
    bad = run_cli("eval", "--model", workspace["models"][0], "--dataset", workspace["specs"][0], "--bootstrap", "-1")
    assert bad.returncode == 2 and "--bootstrap must be >= 0" in bad.stderr
    three = run_cli("eval", *sum((["--model", m] for m in workspace["models"] * 2), [])[:6], "--dataset",
                    workspace["specs"][0])
    assert three.returncode == 2 and "--model given 3 times" in three.stderr


# --------------------------------------------------------------------------- compare

def recompute_comparison(run_a, run_b, resamples, permutations, seed):
    """comparison.json from the two runs' CSVs, with the reference generator."""
    out = {}
    for i, name in enumerate(dataset_names(run_a)):
        rows_a = read_csv(per_query_file(run_a, name))
        rows_b = {(r["query"], r["crop"]): r for r in read_csv(per_query_file(run_b, name))}
        a = scored_rows(rows_a)
        b = scored_rows([rows_b[(r["query"], r["crop"])] for r in rows_a])
        differences = [[y - x for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]
        boot = ref.bootstrap_means(differences, resamples, seed, 2 * i)
        flips = ref.sign_flip_means(differences, permutations, seed, 2 * i + 1)
        out[name] = {}
        for j, column in enumerate(COLUMNS):
            mean_a = math.fsum(r[j] for r in a) / len(a)
            mean_b = math.fsum(r[j] for r in b) / len(b)
            out[name][column] = {
                "a": mean_a, "b": mean_b, "diff": mean_b - mean_a,
                "ci95": list(ref.percentile_interval([r[j] for r in boot])),
                "p": ref.p_value([r[j] for r in flips], mean_b - mean_a, [d[j] for d in differences])}
    return out


def assert_same(got, want):
    for name, metrics in want.items():
        for column, cell in metrics.items():
            for key in ("a", "b", "diff"):
                assert got[name][column][key] == pytest.approx(cell[key], abs=1e-12), (name, column, key)
            assert got[name][column]["ci95"] == pytest.approx(cell["ci95"], abs=1e-12), (name, column)
            assert got[name][column]["p"] == pytest.approx(cell["p"], abs=1e-12), (name, column)


def test_comparison_recomputed_from_the_per_query_csv(workspace):
    out = workspace["out"]
    got = json.loads((out / "comparison.json").read_text())
    want = recompute_comparison(*workspace["runs"], RESAMPLES, PERMUTATIONS, SEED)
    assert list(got) == list(want) + ["Average"]
    assert_same(got, want)
    report = json.loads((out / "comparison_report.json").read_text())
    assert report["comparison"] == got
    assert report["bootstrap"]["resamples"] == RESAMPLES and report["permutation_test"]["permutations"] == PERMUTATIONS
    for column in COLUMNS:
        names = list(want)
        assert got["Average"][column]["diff"] == pytest.approx(
            np.mean([want[n][column]["b"] for n in names]) - np.mean([want[n][column]["a"] for n in names]), abs=1e-12)
        low, high = got["Average"][column]["ci95"]
        assert low <= got["Average"][column]["diff"] <= high or low == high
    for name in ("comparison.md", "comparison.html"):
        assert (out / name).is_file()
    assert "# Model comparison: B - A" in workspace["done"].stdout
    markdown = (out / "comparison.md").read_text()
    cell = got[list(want)[0]]["P@5"]
    assert f"| {100 * cell['a']:.2f} | {100 * cell['b']:.2f} | {100 * cell['diff']:+.2f} |" in markdown


def test_compare_command_gives_the_same_numbers_and_a_vs_a_is_zero(workspace, tmp_path):
    run_a, run_b = workspace["runs"]
    done = run_cli("compare", str(run_a), str(run_b), "--out", str(tmp_path / "ab"), "--bootstrap", str(RESAMPLES),
                   "--permutations", str(PERMUTATIONS), "--seed", str(SEED), "--no-html")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ab" / "comparison.json").read_text() == (workspace["out"] / "comparison.json").read_text()
    assert not (tmp_path / "ab" / "comparison.html").exists()
    same = run_cli("compare", str(run_a), str(run_a), "--out", str(tmp_path / "aa"), "--permutations", "999")
    assert same.returncode == 0, same.stderr
    for metrics in json.loads((tmp_path / "aa" / "comparison.json").read_text()).values():
        for cell in metrics.values():
            assert cell["diff"] == 0.0 and cell["p"] == 1.0 and cell["ci95"] == [0.0, 0.0] and cell["a"] == cell["b"]


def copy_run(run, target):
    shutil.copytree(run, target)
    return target


def edit_csv(path, edit):
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    rows = edit(rows)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def test_runs_that_differ_are_refused_naming_the_difference(workspace, tmp_path):
    run_a = workspace["runs"][0]
    name = dataset_names(run_a)[0]

    def refused(run_b, *patterns):
        done = run_cli("compare", str(run_a), str(run_b), "--out", str(tmp_path / "never"))
        assert done.returncode == 2, done.stdout
        for pattern in patterns:
            assert re.search(pattern, done.stderr), done.stderr
        assert not (tmp_path / "never").exists()

    fewer = copy_run(run_a, tmp_path / "fewer")
    first_query = read_csv(per_query_file(run_a, name))[0]["query"]
    edit_csv(per_query_file(fewer, name), lambda rows: rows[:1] + rows[2:])
    refused(fewer, f"dataset '{name}': the query sets differ: 1 of RUN_A's 24 queries are not in RUN_B",
            re.escape(first_query))

    relabelled = copy_run(run_a, tmp_path / "relabelled")
    edit_csv(per_query_file(relabelled, name), lambda rows: rows[:1] + [rows[1][:2] + ["other"] + rows[1][3:]] + rows[2:])
    refused(relabelled, "is instance '.*' in RUN_A but 'other' in RUN_B")

    gallery = copy_run(run_a, tmp_path / "gallery")
    edit_csv(per_query_file(gallery, name), lambda rows: rows[:3] + [rows[3][:3] + ["9"] + rows[3][4:]] + rows[4:])
    refused(gallery, "different number of relevant gallery images", "galleries differ")

    edited = copy_run(run_a, tmp_path / "edited")

    def raise_p1(rows):
        index = rows[0].index("P@1")
        rows[1][index] = "1.0" if rows[1][index] != "1.0" else "0.0"
        return rows
    edit_csv(per_query_file(edited, name), raise_p1)
    refused(edited, "gives P@1 = .* but results.json says")

    renamed = copy_run(run_a, tmp_path / "renamed")
    for file in ("results.json", "report.json"):
        (renamed / file).write_text((renamed / file).read_text().replace(f'"{name}"', '"Elsewhere"'))
    refused(renamed, f"the runs cover different datasets: '{name}' only in RUN_A", "'Elsewhere' only in RUN_B")

    refused(tmp_path / "missing", "no such folder")


def test_a_run_over_another_query_set_is_refused(workspace, tmp_path):
    smaller = tmp_path / "products"
    shutil.copytree(workspace["folders"], smaller)
    shutil.rmtree(smaller / sorted(os.listdir(smaller))[0])
    done = run_cli("eval", "--model", workspace["models"][1], "--dataset", f"Products=folders:{smaller}", "--out",
                   str(tmp_path / "b"), "--no-cache", "--no-html")
    assert done.returncode == 0, done.stderr
    one = tmp_path / "a"
    shutil.copytree(workspace["runs"][0], one)
    for file in ("results.json", "report.json"):  # keep only the Products dataset in A
        data = json.loads((one / file).read_text())
        if file == "results.json":
            data = {"Products": data["Products"]}
        else:
            data["datasets"] = [d for d in data["datasets"] if d["name"] == "Products"]
        (one / file).write_text(json.dumps(data))
    refused = run_cli("compare", str(one), str(tmp_path / "b"), "--out", str(tmp_path / "c"))
    assert refused.returncode == 2
    assert "dataset 'Products': the query sets differ: 4 of RUN_A's 24 queries are not in RUN_B" in refused.stderr


def write_old_run(folder, values, seed):
    """A run as an older version wrote it: results.json and per-query CSVs
    without report.json, intervals or the top-5 JSON columns."""
    (folder / "per_query").mkdir(parents=True)
    header = ["query", "crop", "instance_id", "R", "P@1", "P@5", "R@1", "R@5", "HitRate@1", "HitRate@5", "AP@10", "top5"]
    rows = [header]
    for q, v in enumerate(values):
        rows.append([f"/data/q{q}.jpg", "", f"id{q % 7}", "3", repr(float(v[0])), repr(float(v[1])), repr(float(v[2])), repr(float(v[3])), "1.0",
                     "1.0", repr(float(v[4])), ";".join(f"/data/g{(q + k + seed) % 50}.jpg" for k in range(5))])
    rows.append(["/data/lone.jpg", "", "lonely", "0", "", "", "", "", "", "", "", ""])
    with open(folder / "per_query" / "Old_set.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    means = np.asarray(values).mean(axis=0)
    (folder / "results.json").write_text(json.dumps({"Old set": dict(zip(COLUMNS, means.tolist()))}))


def test_old_runs_compare_and_a_clearly_better_model_gets_a_small_p(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.random((200, 5)) * 0.6
    b = np.clip(a + 0.2 + rng.normal(0, 0.05, a.shape), 0, 1)
    write_old_run(tmp_path / "a", a, 0)
    write_old_run(tmp_path / "b", b, 1)
    report = compare.compare_runs(str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "out"), resamples=300,
                                  permutations=999, seed=2, samples=3)
    got = json.loads((tmp_path / "out" / "comparison.json").read_text())
    for column in COLUMNS:
        cell = got["Old set"][column]
        assert cell["p"] == 1 / 1000  # nothing reaches the observed mean
        assert cell["ci95"][0] > 0.1 and cell["diff"] == pytest.approx(float(np.mean(b[:, COLUMNS.index(column)]) -
                                                                             np.mean(a[:, COLUMNS.index(column)])))
    assert report["datasets"][0]["num_queries"] == 200 and report["datasets"][0]["lone_queries"] == 1
    sample = report["datasets"][0]["disagreements"][0]
    assert [r["relevant"] for r in sample["a"]] == [None] * 5  # old runs did not record instance ids
    page = Page((tmp_path / "out" / "comparison.html").read_text())
    # Grey borders (relevance unknown); the /data files do not exist, so placeholders: 3 queries, 2 x 5 results.
    assert len(page.find("div", class_="unknown")) == 3 * 10
    assert {a["data-relevant"] for a, _ in page.find("figure", class_="result")} == {""}


# --------------------------------------------------------------------------- the comparison page

def expected_disagreements(run_a, run_b, name, count):
    rows_a = read_csv(per_query_file(run_a, name))
    rows_b = {(r["query"], r["crop"]): r for r in read_csv(per_query_file(run_b, name))}
    ranked = []
    for q, row in enumerate(rows_a):
        if int(row["R"]) <= 0:
            continue
        other = rows_b[(row["query"], row["crop"])]
        shared = len(set(json.loads(row["top5_paths"])) & set(json.loads(other["top5_paths"])))
        ranked.append((-abs(float(other["AP@10"]) - float(row["AP@10"])), shared, q))
    return [rows_a[q]["query"] for _, _, q in sorted(ranked)[:count]], rows_a, rows_b


def test_comparison_page_content(workspace):
    out = workspace["out"]
    text = (out / "comparison.html").read_text()
    page = Page(text)
    got = json.loads((out / "comparison.json").read_text())
    table = page.tables["comparison"]
    assert table[0] == ["Dataset", "Metric", "A", "B", "B − A", "95% interval of B − A", "p"]
    names = dataset_names(workspace["runs"][0])
    body = table[1:]
    assert len(body) == 5 * (len(names) + 1)
    for block, name in enumerate(names + ["Average"]):
        assert body[5 * block][0] == name  # names escaped in the source, intact once parsed
        for j, column in enumerate(COLUMNS):
            cell = got[name][column]
            row = body[5 * block + j]
            assert row[1:5] == [column, f"{100 * cell['a']:.2f}", f"{100 * cell['b']:.2f}", f"{100 * cell['diff']:+.2f}"]
            assert row[5] == f"[{100 * cell['ci95'][0]:+.2f}, {100 * cell['ci95'][1]:+.2f}]"
    assert "&lt;co&gt;" in text and "<co>" not in text
    assert "random weights" in text

    samples = [e for e in page.elements if e[0] == "div" and "disagreement" in e[1].get("class", "").split()]
    assert len(samples) == SAMPLES * len(names)
    run_a, run_b = workspace["runs"]
    sections = page.find("section", class_="dataset")
    assert len(sections) == len(names)
    position = 0
    for name in names:
        want, rows_a, rows_b = expected_disagreements(run_a, run_b, name, SAMPLES)
        shown = []
        for _ in want:
            index = page.elements.index(samples[position])
            query_img = next(e for e in page.elements[index:] if e[0] in ("img", "div") and "query" in
                             e[1].get("class", "").split() and "thumb" in e[1].get("class", "").split())
            shown.append(query_img[1].get("title", "").split(": ")[0])
            position += 1
        assert shown == want, name
        # Both models' rows: five results each, borders from the recorded instance ids.
        first = want[0]
        row_a = next(r for r in rows_a if r["query"] == first)
        row_b = rows_b[(row_a["query"], row_a["crop"])]
        start = page.elements.index(samples[position - len(want)])
        models = [e for e in page.elements[start:] if e[0] == "div" and e[1].get("data-model")][:2]
        assert [m[1]["data-model"] for m in models] == ["a", "b"]
        for model, row in zip(models, (row_a, row_b)):
            begin = page.elements.index(model)
            figures = [e for e in page.elements[begin:] if e[0] == "figure" and "result" in e[1].get("class", "")][:5]
            ids = json.loads(row["top5_instance_ids"])
            assert [f[1]["data-relevant"] for f in figures] == ["true" if i == row["instance_id"] else "false"
                                                                for i in ids]
    for _, attrs, _ in page.elements:
        for key in ("src", "href"):
            if key in attrs:
                assert attrs[key].startswith("data:image/jpeg;base64,") or attrs[key].startswith("#"), attrs[key][:40]
    csp = [a["content"] for a, _ in page.find("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]


def test_comparison_page_renders_bad_input_without_raising(tmp_path):
    text = html_report.render_comparison_html({"datasets": [{"name": "x", "disagreements": [
        {"query": {"path": str(tmp_path / "nope.jpg")}, "a": [{"path": None}], "b": "junk"}, 3]}, "bad"]})
    page = Page(text)
    assert page.tables["comparison"][1][:2] == ["x", "P@1"] and page.tables["comparison"][1][2] == "—"
    assert len(page.find("div", class_="placeholder")) == 2
    with pytest.raises(TypeError, match="report must be a dict"):
        html_report.render_comparison_html([])


def test_comparison_page_in_headless_chromium(workspace, tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium not found on PATH; install Debian's chromium (scripts/bootstrap.sh does)")
    text = (workspace["out"] / "comparison.html").read_text(encoding="utf-8")
    expected_images = len(Page(text).find("img"))
    shot = tmp_path / "shot.png"
    runs = {"page": start_probe(binary, tmp_path, "comparison", text),
            "shot": start_chromium(binary, tmp_path / "profile-shot", "--hide-scrollbars", "--window-size=1280,1600",
                                   f"--screenshot={shot}", (workspace["out"] / "comparison.html").as_uri())}
    try:
        found, console = finish_probe(runs.pop("page"))
        finish_chromium(runs.pop("shot"))
    finally:
        for process, stdout, stderr in runs.values():
            process.kill()
            process.wait()
            stdout.close()
            stderr.close()
    assert found["errors"] == [] and console == [], (found["errors"], console)
    assert len(found["images"]) == expected_images > 0
    for image in found["images"]:
        assert image["complete"] and image["width"] > 0 and image["shown"] > 0, image
    relevant = [r["relevant"] for r in found["results"]]
    assert relevant.count("true") >= 3 and relevant.count("false") >= 3
    for result in found["results"]:
        colour = css_rgb(result["border"])
        assert (is_green(colour) if result["relevant"] == "true" else is_red(colour)), result
    assert found["scrollWidth"] <= WINDOW[0], "the page should fit a laptop screen without scrolling sideways"
    from PIL import Image
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB")).astype(np.int64)
    assert pixels.reshape(-1, 3).std() > 20, "blank screenshot"


def test_compare_has_help():
    done = run_cli("compare", "--help")
    assert done.returncode == 0
    for option in ("--bootstrap", "--permutations", "--seed", "--out", "RUN_A", "RUN_B"):
        assert option in done.stdout
