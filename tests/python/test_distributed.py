"""perception_retrieval.distributed on Dask clusters started here, on 127.0.0.1 only.

A LocalCluster of 2 worker processes (module fixture) and, for the command
line, a scheduler and workers started with Dask's own command-line tools. Every
wait has a timeout, a watchdog bounds each test, and every process started is
killed and checked to be gone.

Bitwise comparisons are against one process with the workers' thread counts:
OpenBLAS splits its matrix products by thread count, which moves the last bit
of an embedding, so the reference runs with OMP/OPENBLAS_NUM_THREADS and
--threads equal to one worker's share.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import queue
import re

import numpy as np
import pytest

pytest.importorskip("dask.distributed")
psutil = pytest.importorskip("psutil")

from test_evaluation import write_product_sets  # noqa: E402

import perception_retrieval  # noqa: E402
from perception_retrieval import Encoder, Retriever, datasets, distributed, evaluation, export  # noqa: E402

TEST_SECONDS = 300
CPUS = len(os.sched_getaffinity(0))
PER_WORKER = max(1, CPUS // 2)   # threads of each of the 2 LocalCluster workers


@pytest.fixture(autouse=True)
def watchdog():
    """Fails a test that runs past TEST_SECONDS instead of hanging the suite."""
    def expired(signum, frame):
        raise TimeoutError(f"test ran past {TEST_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _descendants():
    return [p for p in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())]


@pytest.fixture(scope="module")
def cluster():
    before = {p.pid for p in _descendants()}
    with distributed.connect(workers=2, log=None, timeout=60) as client:
        client.wait_for_workers(2, timeout=60)
        yield client
    deadline = time.monotonic() + 30
    while {p.pid for p in _descendants()} - before and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [" ".join(p.cmdline())[:100] for p in _descendants() if p.pid not in before]
    assert not left, f"processes left behind by the LocalCluster: {left}"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "tiny.pt")
    export.export(path, config="test-tiny", random_init=True, seed=0, log=None)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The evaluation tests' sets (a folders set with a lone instance, a
    manifest with role=both, a VPRC set with crops), and a copy of the
    folders set with a broken file."""
    root = tmp_path_factory.mktemp("data")
    sets = write_product_sets(root, folder_instances=6)
    broken = root / "broken"
    shutil.copytree(sets["folders"], broken)
    (broken / "item2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return {**sets, "broken": str(broken)}


def specs(data):
    return [f"Folders=folders:{data['folders']}", f"Manifest=manifest:{data['manifest']}",
            f"Shelf=vprc:{data['vprc']}"]


def threads_env(threads):
    return {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_cli(*args, env=None, timeout=240):
    return subprocess.run([sys.executable, "-m", "perception_retrieval", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


EVAL_ARGS = ("--no-html", "--chunk-size", "2", "--batch-size", "2")


@pytest.fixture(scope="module")
def reference(tiny_model, data, tmp_path_factory):
    """One-process eval runs (no Dask) keyed by thread count, made on demand."""
    made = {}

    def get(threads, spec_list=None, extra=()):
        key = (threads, tuple(spec_list or specs(data)), tuple(extra))
        if key not in made:
            out = tmp_path_factory.mktemp("reference")
            done = run_cli("eval", "--model", tiny_model, "--out", str(out), "--no-cache", "--threads", str(threads),
                           *EVAL_ARGS, *extra, *sum((["--dataset", s] for s in key[1]), []), env=threads_env(threads))
            assert done.returncode == 0, done.stderr
            made[key] = out
        return made[key]

    return get


def same_reports(out, want):
    assert (out / "results.json").read_text() == (want / "results.json").read_text()
    for name in sorted(os.listdir(want / "per_query")):
        assert (out / "per_query" / name).read_text() == (want / "per_query" / name).read_text(), name


def reference_embeddings(model, inputs, threads, batch_size, chunk_size, tmp_path, on_error="raise"):
    """Encoder.encode in a fresh process with `threads` everywhere, chunk by chunk."""
    np.save(tmp_path / "inputs.npy", np.array(inputs, dtype=object), allow_pickle=True)
    script = ("import sys, numpy as np, pickle\n"
              "from perception_retrieval import Encoder\n"
              "inputs = list(np.load(sys.argv[1], allow_pickle=True))\n"
              f"encoder = Encoder(sys.argv[2], batch_size={batch_size}, threads={threads})\n"
              f"chunks = [inputs[i:i + {chunk_size}] for i in range(0, len(inputs), {chunk_size})]\n"
              f"results = [encoder.encode(c, on_error={on_error!r}) for c in chunks]\n"
              "pickle.dump(results, open(sys.argv[3], 'wb'))\n")
    out = tmp_path / "reference.pkl"
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "inputs.npy"), model, str(out)],
                          capture_output=True, text=True, timeout=240, env={**os.environ, **threads_env(threads)})
    assert done.returncode == 0, done.stderr
    import pickle

    with open(out, "rb") as handle:
        return pickle.load(handle)


def bits(array):
    return np.ascontiguousarray(array).view(np.uint32 if array.dtype == np.float32 else np.uint8)


# ---------------------------------------------------------------------------
# Without a cluster


def test_importing_the_package_does_not_import_dask():
    script = ("import sys\n"
              "import perception_retrieval, perception_retrieval.evaluation, perception_retrieval.cli\n"
              "perception_retrieval.cli.build_parser().parse_args(['eval', '--model', 'm.pt', '--dataset', 'x'])\n"
              "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
              "assert not loaded, loaded\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("dim", [64, 8192])
def test_few_query_limit_is_the_retrievers(dim):
    """distributed._few_query_limit is a copy of Retriever's path choice: at
    the limit and one below, scores agree (the streaming path both times); one
    above the limit they change in the last bits (the GEMM path), and agree
    again with two above."""
    limit = distributed._few_query_limit(dim)
    rng = np.random.default_rng(dim)
    gallery = Retriever(dim, metric="ip")
    gallery.add(rng.standard_normal((3000, dim)).astype(np.float32), np.arange(3000, dtype=np.int64))
    queries = rng.standard_normal((limit + 2, dim)).astype(np.float32)

    def scores(count):
        return gallery.search(queries[:count], 50, threads=1)[0][:limit - 1]

    assert np.array_equal(bits(scores(limit - 1)), bits(scores(limit)))
    assert not np.array_equal(bits(scores(limit)), bits(scores(limit + 1)))
    assert np.array_equal(bits(scores(limit + 1)), bits(scores(limit + 2)))


def test_query_blocks_stay_on_one_side_of_the_limit():
    limit = distributed._few_query_limit(1024)
    for count in (1, 2, limit, limit + 1, 2 * limit, 1000, 1025, 4096 + 3):
        blocks = distributed._query_blocks(count, 1024, 64)
        assert blocks[0][0] == 0 and blocks[-1][1] == count
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
        sizes = [end - begin for begin, end in blocks]
        if count <= limit:
            assert sizes == [count]
        else:
            assert min(sizes) > limit


def test_chunks_shrink_to_keep_workers_busy_in_whole_batches():
    assert distributed.balanced_chunk_size(10_000, 256, 16, 4) == 256
    assert distributed.balanced_chunk_size(100, 256, 16, 4) == 16     # ceil(100 / 8) = 13 -> one batch
    assert distributed.balanced_chunk_size(1000, 256, 16, 2) == 256
    assert distributed.balanced_chunk_size(600, 256, 16, 2) == 160    # ceil(600 / 4) = 150 -> 10 batches
    assert distributed.balanced_chunk_size(100, 250, 16, 4) == 250    # not whole batches: left alone


def test_merge_keeps_the_tie_rule():
    inf = -np.inf
    first = (np.array([[0.5, 0.5, inf]], np.float32), np.array([[10, 11, -1]]))
    second = (np.array([[0.7, 0.5, 0.5]], np.float32), np.array([[20, 21, 22]]))
    scores, ids = distributed.merge_top_k([first, second], 4)
    assert ids.tolist() == [[20, 10, 11, 21]]
    assert scores.tolist() == [[np.float32(0.7), 0.5, 0.5, 0.5]]
    scores, ids = distributed.merge_top_k([first, (np.full((1, 3), inf, np.float32), np.full((1, 3), -1))], 4)
    assert ids.tolist() == [[10, 11, -1, -1]] and np.isneginf(scores[0, 2:]).all()


def test_worker_device_comes_from_resources():
    assert distributed.worker_device("worker", {}) == "cpu"
    assert distributed.worker_device("worker", {"GPU": 1}) == "cuda"
    assert distributed.worker_device("worker", {"cuda:1": 1, "GPU": 1}) == "cuda:1"
    assert distributed.worker_device("worker", {"cuda:1": 0}) == "cpu"
    assert distributed.worker_device("cpu", {"GPU": 1}) == "cpu"
    assert distributed.worker_device("cuda:0", {}) == "cuda:0"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_scheduler_is_named_within_the_timeout(tiny_model, data, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=f"could not reach the Dask scheduler at {address} within 3 s"):
        with distributed.connect(scheduler=address, timeout=3, log=None):
            pass
    assert time.monotonic() - started < 30
    done = run_cli("eval", "--model", tiny_model, "--dataset", specs(data)[0], "--out", str(tmp_path / "out"),
                   "--scheduler", address.replace("tcp://", ""), "--connect-timeout", "2")
    assert done.returncode == 2
    assert f"could not reach the Dask scheduler at {address} within 2 s" in done.stderr


# ---------------------------------------------------------------------------
# Sharded search


def assert_same_search(sharded, single, queries, k, **options):
    got = sharded.search(queries, k, **options)
    want = single.search(queries, k, **options)
    assert np.array_equal(got[1], want[1]), (k, len(queries), options)
    assert np.array_equal(bits(got[0]), bits(want[0])), (k, len(queries), options)


@pytest.mark.parametrize("metric,dtype", [("cosine", "float32"), ("ip", "float32"), ("cosine", "float16")])
def test_sharded_search_is_bitwise_one_retriever(cluster, metric, dtype):
    dim = 48
    rng = np.random.default_rng(7)
    base = rng.standard_normal((60, dim)).astype(np.float32)
    # Repeated rows give equal scores in every shard (ties across shard edges).
    first = np.ascontiguousarray(base[rng.integers(0, 60, 700)])
    second = np.ascontiguousarray(base[rng.integers(0, 60, 300)])
    ids_first = rng.permutation(10_000)[:700].astype(np.int64) * 7 - 3000
    ids_second = np.arange(100_000, 100_300, dtype=np.int64)
    single = Retriever(dim, metric=metric, dtype=dtype)
    sharded = distributed.ShardedRetriever(cluster, dim, metric=metric, dtype=dtype, shards=3, query_block=64)
    for vectors, ids in ((first, ids_first), (second, ids_second)):
        single.add(vectors, ids)
        sharded.add(vectors, ids)
    assert len(sharded) == 1000 and sharded.num_pieces == 6
    limit = distributed._few_query_limit(dim)
    gallery = np.concatenate([first, second])
    all_ids = np.concatenate([ids_first, ids_second])
    for count in (1, 2, limit, limit + 1, 3 * 64 + 5, 300):
        queries = np.ascontiguousarray(gallery[rng.integers(0, 1000, count)] + 0.01 * (count % 2))
        for k in (1, 10, 200, 1200):  # 200 > a piece (~167 rows); 1200 > the gallery
            assert_same_search(sharded, single, queries, k)
        assert_same_search(sharded, single, queries, 25, exclude_ids=all_ids[rng.integers(0, 1000, count)])
        assert_same_search(sharded, single, queries, 25, allowed_ids=all_ids[::3].copy())
    for k in (1, 10, 400):
        assert_same_search(sharded, single, gallery, k, exclude_self=True)
    with pytest.raises(ValueError, match="exclude_self needs the queries to be the gallery"):
        sharded.search(gallery[:5], 3, exclude_self=True)
    with pytest.raises(ValueError, match="already in the gallery"):
        sharded.add(first[:2].copy(), ids_first[:2].copy())
    with pytest.raises(TypeError, match="vectors must hold real numbers, got dtype bool"):
        sharded.add(first > 0, ids_first)
    with pytest.raises(TypeError, match="ids must hold integers"):
        sharded.add(first, ids_first.astype(np.float64))
    bad = first[:3].copy()
    bad[1, 4] = np.nan
    with pytest.raises(ValueError, match=r"vectors\[1, 4\] is NaN"):
        sharded.add(bad, np.arange(90_000, 90_003, dtype=np.int64))
    assert len(sharded) == 1000  # failed adds added nothing
    empty = distributed.ShardedRetriever(cluster, dim)
    scores, ids = empty.search(first[:2].copy(), 3)
    assert (ids == -1).all() and np.isneginf(scores).all()
    sharded.close()


def test_sharded_files_are_mapped_and_survive_a_killed_worker(cluster, tmp_path):
    dim = 32
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((2000, dim)).astype(np.float32)
    ids = np.arange(2000, dtype=np.int64) * 2
    single = Retriever(dim)
    single.add(vectors, ids)
    built = distributed.ShardedRetriever(cluster, dim)
    built.add(vectors, ids)
    manifest = built.save(tmp_path / "gallery")
    assert os.path.basename(manifest) == "sharded.json"
    loaded = distributed.ShardedRetriever.load(cluster, tmp_path / "gallery", mmap=True)
    assert len(loaded) == 2000 and loaded.num_pieces == 2
    queries = np.ascontiguousarray(vectors[:100])
    assert_same_search(loaded, single, queries, 10)
    pids = cluster.run(os.getpid)
    victim = sorted(pids)[0]
    os.kill(pids[victim], signal.SIGKILL)
    # The loaded pieces are read again by a worker; the in-memory ones are gone.
    assert_same_search(loaded, single, queries, 10)
    assert_same_search(loaded, single, vectors, 5, exclude_self=True)
    with pytest.raises(distributed.ClusterError, match="shards built by add"):
        built.search(queries, 10)
    cluster.wait_for_workers(2, timeout=60)
    loaded.close()


# ---------------------------------------------------------------------------
# Encoding and evaluation on the LocalCluster


def test_encode_matches_one_process_by_path_bytes_and_arrays(cluster, tiny_model, data, tmp_path):
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(data["folders"]) for name in names)
    want = np.concatenate(reference_embeddings(tiny_model, paths, PER_WORKER, 3, 4, tmp_path))
    for options in ({}, {"send_images": True, "send_model": True}):
        got = distributed.encode(cluster, tiny_model, paths, batch_size=3, chunk_size=4, **options)
        assert got.dtype == np.float32 and np.array_equal(bits(got), bits(want)), options
    from PIL import Image

    pixels = [np.asarray(Image.open(p).convert("RGB")) for p in paths[:5]]
    encoded = [open(p, "rb").read() for p in paths[5:8]]
    got = distributed.encode(cluster, tiny_model, pixels + encoded, batch_size=3, chunk_size=4)
    assert np.array_equal(bits(got[:5]), bits(want[:5])) and np.array_equal(bits(got[5:]), bits(want[5:8]))
    # on_error="skip": Encoder.encode's (embeddings, rows, failures), a failure once, named.
    broken = os.path.join(data["broken"], "item2", "broken.png")
    mixed = paths[:3] + [broken] + paths[3:6] + [b"not an image"]
    embeddings, rows, failures = distributed.encode(cluster, tiny_model, mixed, batch_size=3, chunk_size=4,
                                                    on_error="skip")
    assert rows.dtype == np.int64 and rows.tolist() == [0, 1, 2, 4, 5, 6]
    assert [index for index, _ in failures] == [3, 7]
    assert broken in failures[0][1] and failures[1][1].startswith("input 7")
    # A failure shrinks its batch, so the reference is the same chunks in skip mode.
    chunks = reference_embeddings(tiny_model, mixed, PER_WORKER, 3, 4, tmp_path, on_error="skip")
    assert np.array_equal(bits(embeddings), bits(np.concatenate([chunk[0] for chunk in chunks])))
    with pytest.raises(perception_retrieval.Error, match="broken.png") as raised:
        distributed.encode(cluster, tiny_model, mixed[:4], chunk_size=2)
    # The class one process raises for it (CorruptFileError, say), not a generic one.
    with pytest.raises(type(raised.value)):
        Encoder(tiny_model).encode([broken])


def test_eval_on_the_cluster_is_identical_to_one_process(cluster, tiny_model, data, reference, tmp_path):
    loaded = [datasets.load_spec(s) for s in specs(data)]
    run = evaluation.Evaluation(tiny_model, client=cluster, cache_dir=str(tmp_path / "cache"), chunk_size=2,
                                batch_size=2, log=lambda _: None)
    run.evaluate(loaded, out_dir=str(tmp_path / "out"), html=False)
    same_reports(tmp_path / "out", reference(PER_WORKER))
    # The cache holds each distinct image once.
    folder = run.cache.folder
    keys = [key for name in os.listdir(folder) if name.startswith("chunk-")
            for key in np.load(os.path.join(folder, name))["keys"].tolist()]
    assert len(keys) == len(set(keys)) == sum(len(d.images) for d in loaded)
    again = evaluation.Evaluation(tiny_model, client=cluster, cache_dir=str(tmp_path / "cache"), chunk_size=2,
                                  batch_size=2, log=lambda _: None)
    _, _, timing = again.embed(loaded[0].images, "again")
    assert (timing["encoded_images"], timing["cached_images"]) == (0, len(loaded[0].images))


def test_a_worker_killed_mid_chunk_has_its_chunks_run_elsewhere(cluster, tiny_model, data, reference, tmp_path):
    """One worker SIGKILLs itself after the first batch of its first chunk; the
    run ends with the one-process results, the broken image listed once."""
    def arm():
        import os
        import signal

        from perception_retrieval import distributed as module

        post = module._post

        def dying(worker, topic, chunk, done):
            if done > 0:
                os.kill(os.getpid(), signal.SIGKILL)
            post(worker, topic, chunk, done)

        module._post = dying

    cluster.wait_for_workers(2, timeout=60)
    pids = cluster.run(os.getpid)
    victim = sorted(pids)[1]
    cluster.run(arm, workers=[victim])
    spec = f"Broken=folders:{data['broken']}"
    messages = []
    run = evaluation.Evaluation(tiny_model, client=cluster, cache_dir=str(tmp_path / "cache"), chunk_size=2,
                                batch_size=2, on_error="skip", log=messages.append)
    report = run.evaluate([datasets.load_spec(spec)], out_dir=str(tmp_path / "out"), html=False)
    assert not psutil.pid_exists(pids[victim]) or psutil.Process(pids[victim]).status() == psutil.STATUS_ZOMBIE
    assert victim not in cluster.run(os.getpid)
    same_reports(tmp_path / "out", reference(PER_WORKER, [spec], ("--on-error", "skip")))
    failed = report["datasets"][0]["failed_images"]
    assert [f["image"] for f in failed] == [os.path.join(data["broken"], "item2", "broken.png")]
    folder = run.cache.folder
    keys = [key for name in os.listdir(folder) if name.startswith("chunk-")
            for key in np.load(os.path.join(folder, name))["keys"].tolist()]
    assert len(keys) == len(set(keys)) == 16  # 17 files, one unreadable: each stored once
    cluster.wait_for_workers(2, timeout=60)


def test_bad_model_and_versions_are_refused_naming_the_worker(cluster, tiny_model, tmp_path):
    cluster.wait_for_workers(2, timeout=60)
    missing = str(tmp_path / "elsewhere" / "model.pt")
    with pytest.raises(FileNotFoundError) as raised:
        distributed.check_workers(cluster, missing)
    for address in cluster.scheduler_info()["workers"]:
        assert address in str(raised.value)
    assert missing in str(raised.value) and "--send-model" in str(raised.value)
    # The same check inside a task, for a worker that joins later.
    future = cluster.submit(distributed._encode_chunk, None, {"path": missing, "sha256": "0" * 64},
                            distributed._settings("cpu", "fp32", 2, 1, 1) | {"host_workers": {}},
                            distributed._client_versions(), "topic", 0, [], [], "raise", pure=False)
    with pytest.raises(FileNotFoundError, match=r"worker tcp://127\.0\.0\.1:\d+ \(host .*\) cannot read the model"):
        future.result(timeout=60)
    # A different file at the model's path is refused by its sha256.
    other = tmp_path / "other.pt"
    shutil.copy(tiny_model, other)
    with open(other, "ab") as handle:
        handle.write(b"\0")
    future = cluster.submit(distributed._encode_chunk, None, {"path": str(other), "sha256": "0" * 64},
                            distributed._settings("cpu", "fp32", 2, 1, 1) | {"host_workers": {}},
                            distributed._client_versions(), "topic", 0, [], [], "raise", pure=False)
    with pytest.raises(ValueError, match="reads another model file"):
        future.result(timeout=60)

    victim = sorted(cluster.scheduler_info()["workers"])[0]
    import torch

    ours, torch_version = perception_retrieval.__version__, torch.__version__
    cluster.run(lambda: setattr(__import__("perception_retrieval"), "__version__", "0.0.0-other"), workers=[victim])
    try:
        with pytest.raises(distributed.VersionMismatchError) as raised:
            distributed.encode(cluster, tiny_model, [b"x"])
        message = str(raised.value)
        assert victim in message and "0.0.0-other" in message and ours in message and torch_version in message
    finally:
        cluster.run(lambda: setattr(__import__("perception_retrieval"), "__version__", ours), workers=[victim])
    cluster.run(lambda: setattr(__import__("torch"), "__version__", "0.0-other"), workers=[victim])
    try:
        with pytest.raises(distributed.VersionMismatchError, match="torch 0.0-other"):
            distributed.check_workers(cluster)
    finally:
        cluster.run(lambda: setattr(__import__("torch"), "__version__", torch_version), workers=[victim])
    distributed.check_workers(cluster, tiny_model)


# ---------------------------------------------------------------------------
# The command line


def test_cli_with_local_workers_matches_one_process(tiny_model, data, reference, tmp_path):
    out = tmp_path / "out"
    done = run_cli("eval", "--model", tiny_model, "--out", str(out), "--cache", str(tmp_path / "cache"), *EVAL_ARGS,
                   "--workers", "2", *sum((["--dataset", s] for s in specs(data)), []))
    assert done.returncode == 0, done.stderr
    assert "Dask cluster tcp://127.0.0.1:" in done.stderr and "2 worker processes" in done.stderr
    same_reports(out, reference(PER_WORKER))
    done = run_cli("encode", "--model", tiny_model, data["folders"], "--out", str(tmp_path / "cluster.npz"),
                   "--no-cache", "--batch-size", "2", "--workers", "2", "--send-images", "--send-model")
    assert done.returncode == 0, done.stderr
    local = run_cli("encode", "--model", tiny_model, data["folders"], "--out", str(tmp_path / "local.npz"),
                    "--no-cache", "--batch-size", "2", "--threads", str(PER_WORKER), env=threads_env(PER_WORKER))
    assert local.returncode == 0, local.stderr
    with np.load(tmp_path / "cluster.npz") as got, np.load(tmp_path / "local.npz") as want:
        assert np.array_equal(bits(got["embeddings"]), bits(want["embeddings"]))
        assert got["paths"].tolist() == want["paths"].tolist()
    done = run_cli("eval", "--model", tiny_model, "--dataset", specs(data)[0], "--send-model")
    assert done.returncode == 2 and "need --workers or --scheduler" in done.stderr


def dask_command(tool):
    """`python -m dask scheduler|worker` (dask >= 2022.10), else the older
    dask-scheduler / dask-worker scripts, run by this Python so that the
    workers import this perception_retrieval."""
    probe = subprocess.run([sys.executable, "-m", "dask", tool, "--help"], capture_output=True, timeout=120)
    if probe.returncode == 0:
        return [sys.executable, "-m", "dask", tool]
    script = shutil.which(f"dask-{tool}", path=os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin",
                                                                 os.environ.get("PATH", "")]))
    assert script, f"neither 'python -m dask {tool}' nor dask-{tool} is available"
    return [sys.executable, script]


class DaskProcesses:
    """A scheduler and workers started with Dask's command-line tools, each in
    its own session so that it and its children can be killed together."""

    def __init__(self, folder):
        self.folder = folder
        self.processes = []
        self.address = None
        self.started = 0

    def start_scheduler(self):
        self.started += 1
        scheduler_file = self.folder / f"scheduler-{self.started}.json"
        self._start(dask_command("scheduler") + ["--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                                                 "127.0.0.1:0", "--scheduler-file", str(scheduler_file)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if scheduler_file.exists():
                try:
                    self.address = json.loads(scheduler_file.read_text())["address"]
                    return self.address
                except (ValueError, KeyError):
                    pass
            time.sleep(0.1)
        raise TimeoutError("the dask scheduler did not start within 60 s")

    def start_workers(self, count, *extra):
        self._start(dask_command("worker") + [self.address, "--nworkers", str(count), "--nthreads", "1", "--host",
                                              "127.0.0.1", "--no-dashboard", *extra])

    def _start(self, command):
        log = open(self.folder / f"process-{self.started}-{len(self.processes)}.log", "w")
        self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                               cwd=self.folder))
        log.close()

    def kill(self):
        for process in self.processes:
            with_suppressed(os.killpg, process.pid, signal.SIGKILL)
        for process in self.processes:
            process.wait(timeout=30)
        sessions = {process.pid for process in self.processes}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            left = [p for p in psutil.process_iter(["pid"]) if _session(p.info["pid"]) in sessions]
            if not left:
                break
            time.sleep(0.2)
        assert not left, f"dask processes left behind: {[p.pid for p in left]}"
        self.processes = []


def with_suppressed(function, *args):
    try:
        function(*args)
    except (ProcessLookupError, PermissionError):
        pass


def _session(pid):
    try:
        return os.getsid(pid)
    except OSError:
        return None


@pytest.fixture
def dask_processes(tmp_path):
    processes = DaskProcesses(tmp_path)
    yield processes
    processes.kill()


def wait_for_workers(address, count):
    from dask.distributed import Client

    # A liveness guard, not a timing: each worker process imports torch and the
    # package, which took over 120 s on a 2-core machine busy with parallel builds.
    with Client(address, timeout=60) as client:
        client.wait_for_workers(count, timeout=300)


def test_cli_on_a_scheduler_started_with_dask_tools(tiny_model, data, reference, dask_processes, tmp_path):
    address = dask_processes.start_scheduler()
    # Each chunk sleeps first, so that the run is still going when the whole cluster is killed.
    slow = tmp_path / "slow_chunks.py"
    slow.write_text("import time\n"
                    "import perception_retrieval.distributed as module\n"
                    "encode_chunk = getattr(module, '_original_encode_chunk', module._encode_chunk)\n"
                    "module._original_encode_chunk = encode_chunk  # Dask may run a preload twice\n"
                    "def slow(*args, **kwargs):\n"
                    "    time.sleep(0.5)\n"
                    "    return encode_chunk(*args, **kwargs)\n"
                    "module._encode_chunk = slow\n")
    dask_processes.start_workers(2, "--preload", str(slow))
    wait_for_workers(address, 2)
    spec = specs(data)[0]
    args = ["eval", "--model", tiny_model, "--dataset", spec, *EVAL_ARGS, "--threads", "1",
            "--cache", str(tmp_path / "cache"), "--scheduler", address]
    run = subprocess.Popen([sys.executable, "-m", "perception_retrieval", *args, "--out", str(tmp_path / "killed")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lines = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in run.stderr], daemon=True)
        reader.start()
        deadline = time.monotonic() + 120
        seen = []
        while time.monotonic() < deadline and sum("Folders: encoded " in line for line in seen) < 2:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        assert sum("Folders: encoded " in line for line in seen) >= 2, "".join(seen)  # two chunks are cached
        dask_processes.kill()  # scheduler and workers, SIGKILL: the whole cluster is gone
        run.wait(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(timeout=30)
    reader.join(timeout=30)
    while not lines.empty():
        seen.append(lines.get())
    rest = "".join(seen)
    assert run.returncode == 2, rest
    assert "lost the Dask cluster" in rest and "re-run resumes" in rest

    address = dask_processes.start_scheduler()
    dask_processes.start_workers(2)
    wait_for_workers(address, 2)
    args[-1] = address
    done = run_cli(*args, "--out", str(tmp_path / "resumed"))
    assert done.returncode == 0, done.stderr
    cached = int(re.search(r"Folders: (\d+) of 16 embeddings found in the cache", done.stderr).group(1))
    assert 4 <= cached < 16, done.stderr
    same_reports(tmp_path / "resumed", reference(1, [spec]))
    dask_processes.kill()

    # --device worker: a worker started with the resource cuda:0 encodes on
    # cuda:0, which this CPU build of LibTorch refuses, naming that worker.
    address = dask_processes.start_scheduler()
    dask_processes.start_workers(1, "--resources", "cuda:0=1")
    wait_for_workers(address, 1)
    done = run_cli("encode", "--model", tiny_model, data["manifest"], "--out", str(tmp_path / "e.npz"), "--no-cache",
                   "--device", "worker", "--scheduler", address)
    assert done.returncode == 2, done.stderr
    assert re.search(r"worker tcp://127\.0\.0\.1:\d+ \(host .*\) could not load the model .* on cuda:0", done.stderr), \
        done.stderr
