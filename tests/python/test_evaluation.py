"""`perception-retrieval eval` end to end with a tiny random-weight model.

The table is checked against an independent computation in the test: images
decoded and cropped with PIL, embedded one by one, ranked by a brute-force
numpy similarity (ties by index) and scored by the naive reference metrics.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import naive_metrics
from perception_retrieval import Encoder, cli, datasets, export

COLUMNS = ("P@1", "P@5", "R@1", "R@5", "mAP@10")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "tiny.pt")
    export.export(path, config="test-tiny", random_init=True, seed=0, log=None)
    return path


def product_image(instance, view, size=(48, 40)):
    """Views of one instance share a colour layout; noise and a shift differ."""
    rng = np.random.default_rng(1000 * instance + view)
    base = np.random.default_rng(instance).integers(0, 256, size=(4, 4, 3)).astype(np.float64)
    pixels = np.kron(base, np.ones((size[1] // 4 + 1, size[0] // 4 + 1, 1)))[: size[1], : size[0]]
    pixels = np.roll(pixels, shift=view, axis=1) + rng.normal(0, 25, size=pixels.shape)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def write_product_sets(root, folder_instances=5):
    """A folders set (PNG) whose instance 0 is a lone query, a manifest with
    mixed roles (both, gallery, query), a VPRC set whose queries are crops of
    scenes. Used by the distributed tests too, so both run the same data."""
    folders = root / "folders"
    for instance in range(folder_instances):
        for view in range(3 if instance else 1):  # instance 0 has one image: a lone query
            path = folders / f"item{instance}" / f"{view}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            product_image(instance, view).save(path)
    manifest = root / "manifest"
    (manifest / "img").mkdir(parents=True)
    rows = ["path,instance_id,role"]
    for instance in range(4):
        for view, role in enumerate(("both", "gallery", "query")):
            product_image(10 + instance, view).save(manifest / "img" / f"{instance}_{view}.png")
            rows.append(f"img/{instance}_{view}.png,sku{instance},{role}")
    (manifest / "manifest.csv").write_text("\n".join(rows) + "\n")
    vprc = root / "vprc"
    (vprc / "gallery").mkdir(parents=True)
    (vprc / "queries").mkdir()
    gallery_rows, query_rows = ["seller_img_id,img_path,product_id"], ["img_path,product_id,bbox_x,bbox_y,bbox_w,bbox_h"]
    for instance in range(4):
        for view in range(2):
            product_image(20 + instance, view).save(vprc / "gallery" / f"{instance}_{view}.png")
            gallery_rows.append(f"{instance}{view},gallery/{instance}_{view}.png,{instance}")
        scene = Image.fromarray(np.random.default_rng(instance).integers(0, 256, (90, 100, 3), dtype=np.uint8))
        scene.paste(product_image(20 + instance, 5), (30 + instance, 20))
        scene.save(vprc / "queries" / f"{instance}.png")
        query_rows.append(f"queries/{instance}.png,{instance},{30 + instance},20,48,40")
    (vprc / "gallery.csv").write_text("\n".join(gallery_rows) + "\n")
    (vprc / "queries.csv").write_text("\n".join(query_rows) + "\n")
    return {"folders": str(folders), "manifest": str(manifest / "manifest.csv"), "vprc": str(vprc)}


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """A folders set (PNG), a manifest with mixed roles, a VPRC set with crops."""
    return write_product_sets(tmp_path_factory.mktemp("data"))


def expected_metrics(model, dataset):
    """The five leaderboard numbers computed without the pipeline under test."""
    encoder = Encoder(model, threads=1)
    pixels = []
    for ref in dataset.images:
        with Image.open(ref.path) as opened:
            picture = opened.convert("RGB")
            if ref.crop:
                x, y, w, h = ref.crop
                picture = picture.crop((x, y, x + w, y + h))
            pixels.append(np.asarray(picture))
    embeddings = np.concatenate([encoder.encode([p]) for p in pixels])
    queries, gallery = embeddings[dataset.query_images], embeddings[dataset.gallery_images]
    similarity = queries.astype(np.float64) @ gallery.astype(np.float64).T
    own = dataset.query_self_indices
    labels = dataset.instance_ids
    gallery_labels = [labels[i] for i in dataset.gallery_images]
    scored = []
    for q in range(len(queries)):
        ranked = naive_metrics.rank_scores(similarity[q].tolist(), own[q] if own[q] >= 0 else None)[:10]
        result = naive_metrics.evaluate_query(ranked, labels[dataset.query_images[q]], gallery_labels, (1, 5), (10,),
                                              "min_r_k", self_index=own[q] if own[q] >= 0 else None)
        if result is not None:
            scored.append(result)
    means = {name: float(np.mean([r[name.replace("mAP", "AP")] for r in scored])) for name in COLUMNS}
    return means, len(queries) - len(scored)


def run_cli(*args, env=None, script=None):
    command = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "perception_retrieval", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def test_eval_table_matches_independent_computation(tiny_model, trees, tmp_path):
    out = tmp_path / "report"
    specs = [f"Folders=folders:{trees['folders']}", f"Manifest=manifest:{trees['manifest']}",
             f"Shelf=vprc:{trees['vprc']}"]
    done = run_cli("eval", "--model", tiny_model, "--out", str(out), "--cache", str(tmp_path / "cache"),
                   "--threads", "2", *sum((["--dataset", s] for s in specs), []))
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert list(results) == ["Folders", "Manifest", "Shelf"]
    for spec in specs:
        dataset = datasets.load_spec(spec)
        want, lone = expected_metrics(tiny_model, dataset)
        got = results[dataset.name]
        assert set(got) == set(COLUMNS) | {"ci95"}  # the intervals: tests/python/test_stats.py
        for column in COLUMNS:
            assert got[column] == pytest.approx(want[column], abs=1e-9), (dataset.name, column)
            low, high = got["ci95"][column]
            assert low <= got[column] <= high
        summary = next(d for d in report["datasets"] if d["name"] == dataset.name)
        assert summary["lone_queries"] == lone
        # The printed table shows the same numbers in percent, each with its interval.
        cells = " | ".join(re.escape(f"{want[c] * 100:.2f}") + r" \[\d+\.\d\d, \d+\.\d\d\]" for c in COLUMNS)
        assert re.search(f"^\\| {dataset.name} \\| {cells} \\|$", done.stdout, re.M), done.stdout
    assert report["model"]["random_weights"] is True and "random weights" in done.stderr
    assert report["metric_variant"]["ap_normalizer"] == "min_r_k"
    assert report["versions"]["perception_retrieval"]
    assert report["datasets"][0]["curves"]["k"] == list(range(1, 11))
    assert report["average"]["P@1"] == pytest.approx(np.mean([results[d]["P@1"] for d in results]))
    for name in ("report.md", "report.csv", "report.html", "per_query/Folders.csv", "per_query/Shelf.csv"):
        assert (out / name).is_file(), name
    per_query = (out / "per_query" / "Folders.csv").read_text().splitlines()
    assert per_query[0].startswith("query,crop,instance_id,R,P@1,P@5,R@1,R@5")
    assert len(per_query) == 1 + 13  # one row per query, lone ones included (blank metrics)


def test_rerun_hits_the_cache_and_killed_run_resumes(tiny_model, trees, tmp_path):
    spec = f"Folders=folders:{trees['folders']}"
    args = ["eval", "--model", tiny_model, "--dataset", spec, "--no-html", "--chunk-size", "4", "--batch-size", "2",
            "--threads", "1"]
    clean = run_cli(*args, "--out", str(tmp_path / "clean"), "--cache", str(tmp_path / "clean-cache"))
    assert clean.returncode == 0, clean.stderr
    # Kill (SIGKILL, no cleanup) in the middle of the third chunk: two chunks (8 images) are stored.
    killer = ("import os, signal, sys\n"
              "from perception_retrieval import cli, evaluation\n"
              "update = evaluation.EncodingProgress.update\n"
              "def dying_update(self, done):\n"
              "    update(self, done)\n"
              "    if done >= 10: os.kill(os.getpid(), signal.SIGKILL)\n"
              "evaluation.EncodingProgress.update = dying_update\n"
              "sys.exit(cli.main(sys.argv[1:]))\n")
    cache = str(tmp_path / "cache")
    killed = run_cli(*args, "--out", str(tmp_path / "killed"), "--cache", cache, script=killer)
    assert killed.returncode == -9, killed.stderr
    assert not (tmp_path / "killed" / "results.json").exists()
    resumed = run_cli(*args, "--out", str(tmp_path / "resumed"), "--cache", cache)
    assert resumed.returncode == 0, resumed.stderr
    assert "8 of 13 embeddings found in the cache" in resumed.stderr
    timing = json.loads((tmp_path / "resumed" / "report.json").read_text())["datasets"][0]["timing"]
    assert (timing["cached_images"], timing["encoded_images"]) == (8, 5)
    again = run_cli(*args, "--out", str(tmp_path / "again"), "--cache", cache)
    timing = json.loads((tmp_path / "again" / "report.json").read_text())["datasets"][0]["timing"]
    assert (timing["cached_images"], timing["encoded_images"]) == (13, 0)
    expected = (tmp_path / "clean" / "results.json").read_text()
    assert (tmp_path / "resumed" / "results.json").read_text() == expected
    assert (tmp_path / "again" / "results.json").read_text() == expected


def test_unreadable_image_raises_by_default_and_is_left_out_with_skip(tiny_model, trees, tmp_path):
    import shutil

    root = tmp_path / "set"
    shutil.copytree(trees["folders"], root)
    (root / "item2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    args = ["eval", "--model", tiny_model, "--dataset", f"Set=folders:{root}", "--no-cache", "--no-html"]
    failed = run_cli(*args, "--out", str(tmp_path / "a"))
    assert failed.returncode == 2
    assert "broken.png" in failed.stderr
    skipped = run_cli(*args, "--out", str(tmp_path / "b"), "--on-error", "skip")
    assert skipped.returncode == 0, skipped.stderr
    summary = json.loads((tmp_path / "b" / "report.json").read_text())["datasets"][0]
    assert [f["image"] for f in summary["failed_images"]] == [str(root / "item2" / "broken.png")]
    assert summary["total_queries"] == 13
    # Scores equal those of the set without the broken file.
    (root / "item2" / "broken.png").unlink()
    want, _ = expected_metrics(tiny_model, datasets.load_folders(str(root), "Set"))
    got = json.loads((tmp_path / "b" / "results.json").read_text())["Set"]
    for column in COLUMNS:
        assert got[column] == pytest.approx(want[column], abs=1e-9)


def test_datasets_are_checked_before_any_encoding(tiny_model, tmp_path):
    (tmp_path / "m.csv").write_text("path,instance_id,role\nmissing.png,a,both\n")
    done = run_cli("eval", "--model", tiny_model, "--dataset", f"M=manifest:{tmp_path / 'm.csv'}",
                   "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "dataset 'M'" in done.stderr and "missing.png (missing)" in done.stderr
    assert not (tmp_path / "cache").exists()  # nothing was encoded or even hashed
    done = run_cli("eval", "--model", str(tmp_path / "nope.pt"), "--dataset", f"M=manifest:{tmp_path / 'm.csv'}")
    assert done.returncode == 2 and "dataset 'M'" in done.stderr


def test_encode_then_search(tiny_model, trees, tmp_path):
    out = tmp_path / "gallery.npz"
    done = run_cli("encode", "--model", tiny_model, trees["folders"], "--out", str(out), "--no-cache")
    assert done.returncode == 0, done.stderr
    with np.load(out) as data:
        embeddings, paths = data["embeddings"], data["paths"].tolist()
        assert embeddings.shape == (13, Encoder(tiny_model).embedding_dim)
        assert np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    query = os.path.join(trees["folders"], "item3", "1.png")
    done = run_cli("search", "--model", tiny_model, "--gallery", str(out), query, "-k", "3", "--json", "--no-cache")
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)[0]["results"]
    assert hits[0]["path"] == query and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    # Brute force agrees on the order.
    own = embeddings[paths.index(query)]
    assert [h["path"] for h in hits] == [paths[i] for i in np.argsort(-(embeddings @ own), kind="stable")[:3]]


def test_demo_runs_end_to_end_with_a_tiny_model(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--config", "test-tiny", "--instances", "3", "--views", "3",
                     "--threads", "2"]) == 0
    printed = capsys.readouterr()
    assert "RANDOM WEIGHTS" in printed.out
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert list(results) == ["Demo products (folders)", "Demo shelf (VPRC layout)"]
    assert (tmp_path / "report" / "report.html").stat().st_size > 1000
    assert "| Average |" in printed.out


def test_python_example_agrees_with_eval(tiny_model, trees, tmp_path):
    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "evaluate_folder.py")
    done = subprocess.run([sys.executable, example, tiny_model, trees["folders"]], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    want, _ = expected_metrics(tiny_model, datasets.load_folders(trees["folders"]))
    assert "| folders | " + " | ".join(f"{want[c] * 100:.2f}" for c in COLUMNS) + " |" in done.stdout
    assert "the closest match of" in done.stdout
