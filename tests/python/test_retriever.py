"""perception_retrieval.Retriever against brute-force numpy: exactness (with
duplicates and ties), exclusions, padding, removal, persistence, pickling,
errors, and searches that run while another thread adds rows."""

import os
import pickle
import threading

import numpy as np
import pytest

import perception_retrieval as pr
from perception_retrieval import Retriever


def integer_data(rows, dim, seed, spread=3):
    """Small integers: every dot product is exact in float32 in any order."""
    return np.random.default_rng(seed).integers(-spread, spread + 1, (rows, dim)).astype(np.float32)


def brute_force(gallery, ids, queries, k, cosine=False, excluded=None, allowed=None):
    """float64 reference: score descending, then row ascending; -inf / -1 padding."""
    g = gallery.astype(np.float64)
    q = queries.astype(np.float64)
    if cosine:
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    scores = q @ g.T
    if excluded is not None:
        for i, row in enumerate(excluded):
            if row >= 0:
                scores[i, row] = np.nan
    if allowed is not None:
        scores[:, ~allowed] = np.nan
    out_scores = np.full((len(q), k), -np.inf, dtype=np.float32)
    out_ids = np.full((len(q), k), -1, dtype=np.int64)
    for i, row in enumerate(scores):
        valid = np.flatnonzero(~np.isnan(row))
        order = valid[np.lexsort((valid, -row[valid]))][:k]  # stable: row ascending on ties
        out_scores[i, : len(order)] = row[order]
        out_ids[i, : len(order)] = ids[order]
    return out_scores, out_ids


# Up to 48 queries (Retriever::kFewQueries) stream the gallery; more use the GEMM path.
@pytest.mark.parametrize("num_queries", [1, 5, 48, 49, 90])
@pytest.mark.parametrize("simd", ["scalar", "avx2", "best"])
def test_exact_with_ties_against_numpy(num_queries, simd):
    dim, n = 40, 1500
    gallery = integer_data(n, dim, 1)
    gallery[700:800] = gallery[100:200]  # duplicate rows: exact ties, row order decides
    ids = np.arange(n, dtype=np.int64)[::-1] * 3 + 11
    queries = integer_data(num_queries, dim, 2)
    retriever = Retriever(dim, metric="ip")
    retriever.add(gallery, ids)
    for k in (1, 10, n + 5):
        scores, found = retriever.search(queries, k, simd=simd, threads=2)
        expected_scores, expected_ids = brute_force(gallery, ids, queries, k)
        np.testing.assert_array_equal(found, expected_ids)
        np.testing.assert_array_equal(scores, expected_scores)
        assert scores.dtype == np.float32 and found.dtype == np.int64
        assert scores.shape == found.shape == (num_queries, k)


def test_cosine_on_random_data_matches_numpy():
    rng = np.random.default_rng(3)
    gallery = rng.standard_normal((2000, 64), dtype=np.float32)
    queries = rng.standard_normal((50, 64), dtype=np.float32)
    ids = np.arange(2000, dtype=np.int64)
    retriever = Retriever(64)  # cosine
    retriever.add(gallery, ids)
    for batch in (queries[:3], queries):
        scores, found = retriever.search(batch, 10)
        expected_scores, expected_ids = brute_force(gallery, ids, batch, 10, cosine=True)
        np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
        np.testing.assert_array_equal(found, expected_ids)
    stored = retriever.vectors()
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-6)


def test_exclude_self_exclude_ids_and_allowed_ids():
    dim, n = 16, 300
    gallery = integer_data(n, dim, 4)
    ids = np.arange(n, dtype=np.int64) + 1000
    retriever = Retriever(dim, metric="ip")
    retriever.add(gallery, ids)

    _, found = retriever.search(gallery, 5, exclude_self=True)
    _, expected = brute_force(gallery, ids, gallery, 5, excluded=np.arange(n))
    np.testing.assert_array_equal(found, expected)
    assert not np.any(found[:, 0] == ids)

    queries = integer_data(60, dim, 5)
    rows = (np.arange(60) * 7) % n
    exclude_ids = ids[rows].copy()
    exclude_ids[0] = -5  # not in the gallery: excludes nothing
    rows[0] = -1
    _, found = retriever.search(queries, 5, exclude_ids=exclude_ids)
    np.testing.assert_array_equal(found, brute_force(gallery, ids, queries, 5, excluded=rows)[1])

    allowed = np.zeros(n, dtype=bool)
    allowed[::9] = True
    _, found = retriever.search(queries, 40, allowed_ids=ids[allowed])
    np.testing.assert_array_equal(found, brute_force(gallery, ids, queries, 40, allowed=allowed)[1])
    assert np.all(found[:, 34:] == -1)  # only 34 rows are allowed


def test_k_larger_than_gallery_pads():
    retriever = Retriever(3, metric="ip")
    scores, found = retriever.search(np.ones((2, 3), np.float32), 4)
    assert np.all(found == -1) and np.all(np.isneginf(scores))
    retriever.add(np.eye(3, dtype=np.float32), np.array([7, 8, 9], dtype=np.int64))
    scores, found = retriever.search(np.array([[0, 2, 1]], np.float32), 5)
    np.testing.assert_array_equal(found, [[8, 9, 7, -1, -1]])
    np.testing.assert_array_equal(scores[0, :3], [2, 1, 0])
    assert np.isneginf(scores[0, 3:]).all()


def test_remove_then_search():
    dim, n = 8, 200
    gallery = integer_data(n, dim, 6)
    ids = np.arange(n, dtype=np.int64)
    retriever = Retriever(dim, metric="ip")
    retriever.add(gallery, ids)
    gone = np.ascontiguousarray(ids[::4])
    retriever.remove(gone)
    keep = np.ones(n, dtype=bool)
    keep[::4] = False
    assert len(retriever) == keep.sum()
    np.testing.assert_array_equal(retriever.ids(), ids[keep])
    queries = integer_data(60, dim, 7)
    _, found = retriever.search(queries, 6)
    np.testing.assert_array_equal(found, brute_force(gallery[keep], ids[keep], queries, 6)[1])
    assert gone[0] not in retriever and ids[1] in retriever
    with pytest.raises(ValueError, match="is not in the gallery; nothing was removed"):
        retriever.remove(np.array([1, 4], dtype=np.int64))
    assert len(retriever) == keep.sum()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip(tmp_path, dtype, mmap):
    rng = np.random.default_rng(8)
    gallery = rng.standard_normal((500, 24), dtype=np.float32)
    ids = rng.permutation(10_000)[:500].astype(np.int64)
    names = [f"images/{i}.jpg" for i in range(500)]
    retriever = Retriever(24, metric="cosine", dtype=dtype)
    retriever.add(gallery, ids, metadata=names)
    path = tmp_path / "gallery.per"
    retriever.save(path)  # os.PathLike accepted
    loaded = Retriever.load(str(path), mmap=mmap)
    assert loaded.is_mapped == mmap
    assert (loaded.dim, loaded.metric, loaded.dtype, len(loaded)) == (24, "cosine", dtype, 500)
    np.testing.assert_array_equal(loaded.ids(), ids)
    np.testing.assert_array_equal(loaded.vectors(), retriever.vectors())
    assert loaded.metadata(int(ids[3])) == "images/3.jpg"
    queries = rng.standard_normal((30, 24), dtype=np.float32)
    for a, b in zip(retriever.search(queries, 7), loaded.search(queries, 7)):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(tmp_path) == ["gallery.per"]


def test_empty_gallery_of_embedding_size_saves_loads_and_pickles(tmp_path):
    # No rows, so the file is smaller than one vector: its header's dim is still valid.
    assert Retriever.MAX_DIM == 2**24
    empty = Retriever(1024, metric="cosine")
    empty.save(tmp_path / "empty.per")
    for loaded in (Retriever.load(tmp_path / "empty.per"), Retriever.load(tmp_path / "empty.per", mmap=True),
                   pickle.loads(pickle.dumps(empty)), Retriever.from_bytes(empty.to_bytes())):
        assert (loaded.dim, loaded.metric, len(loaded)) == (1024, "cosine", 0)
        row = np.zeros((1, 1024), dtype=np.float32)
        row[0, 5] = 2.0
        loaded.add(row, np.array([9], dtype=np.int64))
        scores, ids = loaded.search(row, 1)
        assert ids.tolist() == [[9]] and scores[0, 0] == pytest.approx(1.0)


def test_pickle_and_bytes():
    retriever = Retriever(4, metric="ip", dtype="float16")
    retriever.add(np.arange(8, dtype=np.float32).reshape(2, 4), np.array([5, 6], dtype=np.int64), ["a", "b"])
    clone = pickle.loads(pickle.dumps(retriever))
    assert type(clone) is Retriever
    assert repr(clone) == "Retriever(dim=4, metric='ip', dtype='float16', size=2)"
    assert clone.metadata(6) == "b"
    np.testing.assert_array_equal(clone.vectors(), retriever.vectors())
    assert len(Retriever.from_bytes(retriever.to_bytes())) == 2


def test_corrupted_and_foreign_files_raise(tmp_path):
    retriever = Retriever(4)
    retriever.add(np.random.default_rng(9).standard_normal((10, 4), dtype=np.float32), np.arange(10, dtype=np.int64))
    path = tmp_path / "index.per"
    retriever.save(path)
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF
    (tmp_path / "flipped.per").write_bytes(bytes(data))
    with pytest.raises(pr.CorruptFileError, match="checksum mismatch"):
        Retriever.load(tmp_path / "flipped.per")
    (tmp_path / "short.per").write_bytes(path.read_bytes()[:-3])
    with pytest.raises(pr.CorruptFileError, match="truncated"):
        Retriever.load(tmp_path / "short.per", mmap=True)
    np.save(tmp_path / "array.npy", np.zeros((2, 4), np.float32))
    with pytest.raises(pr.CorruptFileError, match="npy"):
        Retriever.load(tmp_path / "array.npy")
    with pytest.raises(FileNotFoundError, match="missing.per"):
        Retriever.load(tmp_path / "missing.per")


def test_npy_round_trip_with_numpy(tmp_path):
    rng = np.random.default_rng(10)
    gallery = rng.standard_normal((100, 12), dtype=np.float32)
    ids = np.arange(100, dtype=np.int64) * 2
    np.save(tmp_path / "vectors.npy", gallery)
    np.save(tmp_path / "ids.npy", ids.astype(np.int32))
    retriever = Retriever.from_npy(tmp_path / "vectors.npy", tmp_path / "ids.npy", metric="ip")
    np.testing.assert_array_equal(retriever.vectors(), gallery)
    retriever.export_npy(tmp_path / "out_vectors.npy", tmp_path / "out_ids.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "out_vectors.npy"), gallery)
    np.testing.assert_array_equal(np.load(tmp_path / "out_ids.npy"), ids)


def test_errors_name_the_argument_and_the_fix():
    retriever = Retriever(4)
    vectors = np.ones((2, 4), np.float32)
    ids = np.array([1, 2], dtype=np.int64)
    retriever.add(vectors * np.array([[1], [2]], np.float32) + np.eye(2, 4, dtype=np.float32), ids)
    with pytest.raises(TypeError, match="queries must hold real numbers, got dtype complex128"):
        retriever.search(vectors.astype(np.complex128), 1)
    with pytest.raises(ValueError, match=r"queries\[None, :\]"):
        retriever.search(np.ones(4, np.float32), 1)
    with pytest.raises(ValueError, match="3 columns but the retriever's dim is 4"):
        retriever.search(np.ones((1, 3), np.float32), 1)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        retriever.search(vectors, 0)
    with pytest.raises(TypeError, match=r"ids must hold integers, got dtype float64; convert ids with \.astype"):
        retriever.add(vectors, [3.0, 4.0])
    bad = vectors.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"vectors\[1, 2\] is NaN"):
        retriever.add(bad, np.array([3, 4], dtype=np.int64))
    with pytest.raises(ValueError, match="already in the gallery"):
        retriever.add(vectors, np.array([5, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="all zeros"):
        retriever.add(np.zeros((1, 4), np.float32), np.array([9], dtype=np.int64))
    with pytest.raises(ValueError, match="exclude_self"):
        retriever.search(vectors[:1], 1, exclude_self=True)
    with pytest.raises(ValueError, match="metric"):
        Retriever(4, metric="l2")
    assert len(retriever) == 2 and 5 not in retriever  # nothing half-added


def test_repr_len_contains():
    retriever = Retriever(3, metric="ip")
    assert len(retriever) == 0
    retriever.add(np.eye(3, dtype=np.float32), np.array([1, 2, 3], dtype=np.int64))
    assert repr(retriever) == "Retriever(dim=3, metric='ip', dtype='float32', size=3)"
    assert 2 in retriever and 4 not in retriever
    assert pr.Retriever is Retriever and "Retriever" in pr.__all__
    assert Retriever.simd() in ("avx512", "avx2", "scalar")


def test_concurrent_search_during_add():
    """Anchors score 10 for their own query; added rows (|x| <= 0.1) at most 0.1,
    so every search, whatever it overlaps with, must rank the anchor first."""
    dim = 64
    anchors = np.eye(dim, dtype=np.float32) * 10
    anchor_ids = -np.arange(1, dim + 1, dtype=np.int64)
    queries = np.eye(dim, dtype=np.float32)
    retriever = Retriever(dim, metric="ip")
    retriever.add(anchors, anchor_ids)
    assert dim > 48  # the readers cover both paths
    errors = []
    stop = threading.Event()

    def reader(num_queries):
        while not stop.is_set():
            scores, found = retriever.search(queries[:num_queries], 5, threads=1)
            if not (np.array_equal(found[:, 0], anchor_ids[:num_queries]) and np.all(scores[:, 0] == 10)
                    and np.all(scores[:, 1:] <= np.float32(0.1))):
                errors.append((scores, found))

    readers = [threading.Thread(target=reader, args=(n,)) for n in (2, 64)]
    for thread in readers:
        thread.start()
    rng = np.random.default_rng(11)
    for batch in range(40):
        rows = rng.uniform(-0.1, 0.1, (200, dim)).astype(np.float32)
        retriever.add(rows, np.arange(batch * 200, (batch + 1) * 200, dtype=np.int64))
        if batch % 4 == 3:
            retriever.remove(np.arange(batch * 200, batch * 200 + 50, dtype=np.int64))
    stop.set()
    for thread in readers:
        thread.join()
    assert not errors
    assert len(retriever) == dim + 40 * 200 - 10 * 50


def test_ctrl_c_interrupts_a_long_search():
    """The search polls for signals from the calling thread (~every 100 ms), so
    SIGINT 0.2 s into a search that would take >= 3 s stops it early."""
    import signal
    import time

    rng = np.random.default_rng(12)
    retriever = Retriever(128, metric="ip")
    retriever.add(rng.standard_normal((50_000, 128), dtype=np.float32), np.arange(50_000, dtype=np.int64))
    probe = rng.standard_normal((500, 128), dtype=np.float32)
    start = time.perf_counter()
    retriever.search(probe, 10)
    per_query = (time.perf_counter() - start) / len(probe)
    queries = np.resize(probe, (int(3.0 / per_query) + 1, 128))
    timer = threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        retriever.search(queries, 10)
    elapsed = time.perf_counter() - start
    timer.join()
    assert elapsed < 1.5, f"the search ran {elapsed:.2f} s after SIGINT at 0.2 s"
    assert len(retriever.search(queries[:2], 3)[1]) == 2  # still usable


def test_len_while_add_waits_behind_a_search_does_not_deadlock():
    """len() (main thread, GIL held) behind a queued add() behind a running search
    that polls for Ctrl-C with the GIL: every binding releases the GIL before
    taking the retriever's lock, so this finishes. Run in a child process so a
    regression fails with a timeout instead of hanging the suite."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import threading, time
        import numpy as np
        from perception_retrieval import Retriever
        rng = np.random.default_rng(0)
        r = Retriever(128, metric="ip")
        r.add(rng.standard_normal((50_000, 128), dtype=np.float32), np.arange(50_000, dtype=np.int64))
        queries = rng.standard_normal((6_000, 128), dtype=np.float32)
        searcher = threading.Thread(target=lambda: r.search(queries, 10))
        writer = threading.Thread(target=lambda: r.add(np.ones((1, 128), np.float32), np.array([-1], np.int64)))
        searcher.start(); time.sleep(0.05)
        writer.start(); time.sleep(0.05)
        n = len(r); repr(r); -1 in r
        searcher.join(); writer.join()
        print("ok", n, len(r))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(pr.__file__)),
                                                                      os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "ok" and done.stdout.split()[2] == "50001"
