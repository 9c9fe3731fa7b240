"""Every public binding fed what it must refuse: booleans, complex numbers,
0-D/1-D/3-D, empty, NaN and Inf arrays, float or out-of-range ids, strided
buffer views, and plain wrong types (None, str, dict, float for int); and fed
the real-valued array-likes it must convert (other dtypes, layouts, lists). Each must raise ValueError, TypeError or a perception_retrieval.Error
whose message names the argument; a refused call must change nothing."""

import os

import numpy as np
import pytest

import perception_retrieval as pr
from perception_retrieval import export, image, metrics

DIM = 4


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    folder = tmp_path_factory.mktemp("boundary")
    model = folder / "tiny.pt"
    export.export(model, config="test-tiny", random_init=True, seed=0, log=None)
    retriever = pr.Retriever(DIM)
    retriever.add(np.eye(DIM, dtype=np.float32), np.arange(DIM, dtype=np.int64), ["a", "b", "c", "d"])
    png = folder / "red.png"
    from PIL import Image

    Image.new("RGB", (5, 3), (200, 10, 10)).save(png)
    return {"folder": folder, "encoder": pr.Encoder(model), "retriever": retriever, "png": png.read_bytes()}


def float_arrays(argument):
    """Arrays a float32 (n, DIM) argument must refuse, with the error expected.
    (Other real dtypes, layouts and lists are converted: test_converted_inputs.)"""
    ones = np.ones((2, DIM), np.float32)
    nan, inf = ones.copy(), ones.copy()
    nan[1, 2] = np.nan
    inf[0, 3] = -np.inf
    return {
        "bool": (ones.astype(bool), TypeError, f"{argument} must hold real numbers, got dtype bool"),
        "complex": (ones.astype(np.complex64), TypeError, f"{argument} must hold real numbers"),
        "0-D": (np.array(1.0, np.float32), ValueError, f"{argument} must be 2-D"),
        "1-D": (np.ones(DIM, np.float32), ValueError, f"{argument} must be 2-D"),
        "3-D": (np.ones((1, 2, DIM), np.float32), ValueError, f"{argument} must be 2-D"),
        "no columns": (np.ones((2, 0), np.float32), ValueError, f"{argument} has 0 columns"),
        "wrong dim": (np.ones((2, DIM + 1), np.float32), ValueError, f"{argument} has {DIM + 1} columns"),
        "NaN": (nan, ValueError, f"{argument}[1, 2] is NaN"),
        "Inf": (inf, ValueError, f"{argument}[0, 3] is Inf"),
        "None": (None, TypeError, f"{argument} must hold real numbers, got dtype object"),
        "str": ("1 2 3 4", TypeError, f"{argument} must hold real numbers"),
        "dict": ({"a": 1}, TypeError, f"{argument} must hold real numbers"),
        "ragged list": ([[1.0] * DIM, [1.0]], TypeError, f"{argument} must"),
    }


def id_arrays(argument):
    return {
        "float64": (np.arange(2.0), TypeError, f"{argument} must hold integers, got dtype float64"),
        "bool": (np.array([True, False]), TypeError, f"{argument} must hold integers"),
        "past int64": (np.array([1, 2**63], np.uint64), ValueError, f"{argument} holds 9223372036854775808"),
        "2-D": (np.arange(2, dtype=np.int64)[None], ValueError, f"{argument} must be 1-D"),
        "None": (None, TypeError, f"{argument} must hold integers"),
        "str": ("12", TypeError, f"{argument} must hold integers"),
        "dict": ({1: 2}, TypeError, f"{argument} must hold integers"),
    }


def pixel_arrays(argument):
    """Arrays an H x W x 3 uint8 argument must refuse."""
    return {
        "float32": (np.zeros((4, 4, 3), np.float32), TypeError, argument),
        "int64": (np.zeros((4, 4, 3), np.int64), TypeError, argument),
        "2-D": (np.zeros((4, 4), np.uint8), ValueError, argument),
        "4-D": (np.zeros((1, 4, 4, 3), np.uint8), ValueError, argument),
        "4 channels": (np.zeros((4, 4, 4), np.uint8), ValueError, argument),
        "no rows": (np.zeros((0, 4, 3), np.uint8), ValueError, argument),
        "no columns": (np.zeros((4, 0, 3), np.uint8), ValueError, argument),
        "non-contiguous": (np.zeros((4, 8, 3), np.uint8)[:, ::2], ValueError, argument),
        "None": (None, TypeError, argument),
        "str": ("pixels", TypeError, argument),
        "dict": ({}, TypeError, argument),
    }


def cases():
    """(id, call(context), exception types, text the message must contain)."""
    out = []

    def case(name, call, errors, text):
        out.append(pytest.param(call, errors, text, id=name))

    ids2 = np.array([10, 11], np.int64)
    good = np.ones((2, DIM), np.float32)
    for name, (value, error, text) in float_arrays("vectors").items():
        case(f"add vectors {name}", lambda c, v=value: pr.Retriever(DIM).add(v, ids2), error, text)
        case(f"add vectors {name} to a filled gallery", lambda c, v=value: c["retriever"].add(v, ids2), error, text)
    for name, (value, error, text) in float_arrays("queries").items():
        case(f"search queries {name}", lambda c, v=value: c["retriever"].search(v, 2), error, text)
    for name, (value, error, text) in id_arrays("ids").items():
        case(f"add ids {name}", lambda c, v=value: c["retriever"].add(good, v), error, text)
        case(f"remove ids {name}", lambda c, v=value: c["retriever"].remove(v), error, text)
    for argument in ("exclude_ids", "allowed_ids"):
        for name, (value, error, text) in id_arrays(argument).items():
            if name == "None":
                continue  # None is "not given"
            case(f"search {argument} {name}", lambda c, v=value, a=argument: c["retriever"].search(good, 2, **{a: v}),
                 error, text)
    case("add ids too few", lambda c: c["retriever"].add(good, ids2[:1]), ValueError, "ids has 1 entries")
    case("add ids repeated", lambda c: c["retriever"].add(good, np.array([7, 7], np.int64)), ValueError,
         "ids lists id 7")
    case("add id already present", lambda c: c["retriever"].add(good, np.array([1, 99], np.int64)), ValueError,
         "id 1 (ids[0]) is already in the gallery")
    case("add zero row under cosine", lambda c: c["retriever"].add(np.zeros((1, DIM), np.float32),
                                                                    np.array([50], np.int64)), ValueError, "all zeros")
    case("remove unknown id", lambda c: c["retriever"].remove(np.array([0, 77], np.int64)), ValueError, "id 77")
    case("remove repeated id", lambda c: c["retriever"].remove(np.array([1, 1], np.int64)), ValueError,
         "ids lists id 1")
    bad_metadata = {"short": ["x"], "ints": [1, 2], "str": "ab", "dict": {"a": 1, "b": 2}, "Nones": [None, None]}
    for name, value in bad_metadata.items():
        error, text = (ValueError, "metadata has 1 entries") if name == "short" else (TypeError, "metadata must be")
        case(f"add metadata {name}", lambda c, v=value: c["retriever"].add(good, ids2, v), error, text)
    for name, value in {"0": 0, "-1": -1}.items():
        case(f"search k={name}", lambda c, v=value: c["retriever"].search(good, v), ValueError, "k must be >= 1")
    for name, value in {"float": 1.5, "None": None, "str": "3", "past int64": 2**64}.items():
        case(f"search k={name}", lambda c, v=value: c["retriever"].search(good, v), TypeError, "k: int")
    # Outputs are allocated Q x k before searching: an absurd k is numpy's MemoryError naming the shape.
    case("search k=2^40", lambda c: c["retriever"].search(good, 2**40), (MemoryError, ValueError), "1099511627776")
    case("search threads=-1", lambda c: c["retriever"].search(good, 2, threads=-1), ValueError, "threads")
    case("search simd=sse", lambda c: c["retriever"].search(good, 2, simd="sse"), ValueError, "simd")
    case("search exclude_self, wrong count", lambda c: c["retriever"].search(good, 2, exclude_self=True), ValueError,
         "exclude_self")
    case("search exclude_ids too few", lambda c: c["retriever"].search(good, 2, exclude_ids=ids2[:1]), ValueError,
         "exclude_ids has 1 entries")
    for name, value in {"0": 0, "-3": -3}.items():
        case(f"Retriever dim={name}", lambda c, v=value: pr.Retriever(v), ValueError, "dim must be >= 1")
    case("Retriever dim=2^40", lambda c: pr.Retriever(2**40), ValueError, "dim must be <= 16777216")
    for name, value in {"float": 1.5, "None": None, "str": "4", "past int64": 2**70}.items():
        case(f"Retriever dim={name}", lambda c, v=value: pr.Retriever(v), TypeError, "dim: int")
    case("Retriever metric=l2", lambda c: pr.Retriever(DIM, metric="l2"), ValueError, "metric")
    case("Retriever metric=None", lambda c: pr.Retriever(DIM, metric=None), TypeError, "metric: str")
    case("Retriever dtype=float64", lambda c: pr.Retriever(DIM, dtype="float64"), ValueError, "dtype")
    case("reserve -1", lambda c: c["retriever"].reserve(-1), ValueError, "rows must be >= 0")
    case("reserve str", lambda c: c["retriever"].reserve("9"), TypeError, "rows: int")
    case("metadata of a str id", lambda c: c["retriever"].metadata("a"), TypeError, "id: int")
    case("metadata of an unknown id", lambda c: c["retriever"].metadata(99), ValueError, "id 99")
    for name, value in {"None": None, "int": 5, "dict": {}, "list": ["x.pei"]}.items():
        case(f"save path {name}", lambda c, v=value: c["retriever"].save(v), TypeError, "path must be a file path")
        case(f"load path {name}", lambda c, v=value: pr.Retriever.load(v), TypeError, "path must be a file path")
        case(f"export_npy vectors_path {name}", lambda c, v=value: c["retriever"].export_npy(v, "ids.npy"), TypeError,
             "vectors_path must be a file path")
        case(f"from_npy ids_path {name}", lambda c, v=value: pr.Retriever.from_npy("v.npy", v), TypeError,
             "ids_path must be a file path")
    case("save to a directory", lambda c: c["retriever"].save(c["folder"]), ValueError, "is a directory")
    case("load a directory", lambda c: pr.Retriever.load(c["folder"]), pr.IoError, "is not a regular file")
    for name, value in {"str": "index", "None": None, "bytearray": bytearray(b"\x89PER"), "list": [1]}.items():
        case(f"from_bytes {name}", lambda c, v=value: pr.Retriever.from_bytes(v), TypeError, "data: bytes")
    case("from_bytes empty", lambda c: pr.Retriever.from_bytes(b""), pr.CorruptFileError, "not a perception_retrieval index")

    # metrics
    ids3 = np.array([1, 2, 3])
    ranking = np.array([[0, 1], [1, 2], [2, 0]], np.int64)
    scores = np.zeros((3, 3), np.float32)
    for name, value in {"float64": ranking.astype(np.float64), "NaN": np.full((3, 2), np.nan), "None": None,
                        "str": "012", "dict": {}}.items():
        case(f"evaluate ranking {name}", lambda c, v=value: metrics.evaluate(v, ids3, ids3), TypeError, "ranking")
    for name, value in {"1-D": ranking[0], "3-D": ranking[..., None], "out of range": ranking + 5}.items():
        case(f"evaluate ranking {name}", lambda c, v=value: metrics.evaluate(v, ids3, ids3), ValueError, "ranking")
    for name, value in {"None": None, "str": "abc", "dict": {}, "2-D": ids3[None], "too few": ids3[:2]}.items():
        case(f"evaluate query_ids {name}", lambda c, v=value: metrics.evaluate(ranking, v, ids3), ValueError,
             "query_ids")
    for name, value in {"0": 0, "-1": [-1]}.items():
        case(f"evaluate ks {name}", lambda c, v=value: metrics.evaluate(ranking, ids3, ids3, ks=v), ValueError, "ks")
    for name, value in {"str": "a", "float": 1.5, "None in list": [None]}.items():
        case(f"evaluate ks {name}", lambda c, v=value: metrics.evaluate(ranking, ids3, ids3, ks=v), TypeError, "ks")
    case("evaluate map_k float", lambda c: metrics.evaluate(ranking, ids3, ids3, map_k=2.5), TypeError, "map_k")
    case("evaluate threads -1", lambda c: metrics.evaluate(ranking, ids3, ids3, threads=-1), ValueError, "threads")
    case("evaluate ap_normalizer", lambda c: metrics.evaluate(ranking, ids3, ids3, ap_normalizer="mean"), ValueError,
         "ap_normalizer")
    for name, value in {"float16": scores.astype(np.float16), "int64": scores.astype(np.int64), "None": None,
                        "str": "0", "dict": {}}.items():
        case(f"evaluate_scores scores {name}", lambda c, v=value: metrics.evaluate_scores(v, ids3, ids3), TypeError,
             "scores")
    nan_scores = scores.copy()
    nan_scores[2, 1] = np.nan
    for name, value in {"1-D": scores[0], "3-D": scores[..., None], "NaN": nan_scores,
                        "non-contiguous": np.zeros((3, 6), np.float32)[:, ::2],
                        "fortran": np.asfortranarray(np.arange(9, dtype=np.float64).reshape(3, 3))}.items():
        case(f"evaluate_scores scores {name}", lambda c, v=value: metrics.evaluate_scores(v, ids3, ids3), ValueError,
             "scores")
    case("evaluate_scores gallery_ids too few", lambda c: metrics.evaluate_scores(scores, ids3, ids3[:2]), ValueError,
         "gallery_ids")

    # image
    for name, value in {"None": None, "int": 42, "dict": {}, "list": [1, 2], "ndarray": np.zeros(8, np.uint8)}.items():
        case(f"decode source {name}", lambda c, v=value: image.decode(v), TypeError, "source")
    case("decode empty bytes", lambda c: image.decode(b""), pr.CorruptFileError, "the image data is empty")
    case("decode a directory", lambda c: image.decode(c["folder"]), pr.IoError, "is a directory")
    case("decode a reversed memoryview", lambda c: image.decode(memoryview(c["png"])[::-1]), ValueError,
         "data must be contiguous")
    case("decode a strided memoryview", lambda c: image.decode(memoryview(c["png"] * 2)[::2]), ValueError,
         "data must be contiguous")
    for name, value in {"0": 0, "-1": -1}.items():
        case(f"decode max_pixels={name}", lambda c, v=value: image.decode(c["png"], max_pixels=v), ValueError,
             "max_pixels")
    for name, value in {"float": 1.5, "str": "9", "None": None}.items():
        case(f"decode max_pixels={name}", lambda c, v=value: image.decode(c["png"], max_pixels=v), TypeError,
             "max_pixels")
    pixels = np.zeros((4, 4, 3), np.uint8)
    for name, (value, error, text) in pixel_arrays("pixels").items():
        case(f"resize pixels {name}", lambda c, v=value: image.resize_bilinear(v, 2, 2), error, text)
        case(f"preprocess pixels {name}", lambda c, v=value: image.preprocess(v, 4), error, text)
        if name != "str":  # a str is a path for Encoder.preprocess, as for encode
            case(f"Encoder.preprocess pixels {name}", lambda c, v=value: c["encoder"].preprocess(v), error, text)
    case("Encoder.preprocess a missing path", lambda c: c["encoder"].preprocess("missing.png"), pr.FileNotFoundError,
         "missing.png")
    for argument in ("width", "height"):
        for name, value in {"float": 1.7, "str": "2", "None": None, "bool": True}.items():
            case(f"resize {argument}={name}", lambda c, v=value, a=argument: image.resize_bilinear(pixels, **{
                "width": 2, "height": 2, a: v}), TypeError, argument)
        case(f"resize {argument}=0", lambda c, a=argument: image.resize_bilinear(pixels, **{"width": 2, "height": 2,
                                                                                           a: 0}), ValueError, "> 0")
    for name, value in {"float": 3.5, "str": "8", "None": None}.items():
        case(f"preprocess size={name}", lambda c, v=value: image.preprocess(pixels, v), TypeError, "size")
    case("preprocess size=0", lambda c: image.preprocess(pixels, 0), ValueError, "size")
    for argument in ("mean", "std"):
        for name, value in {"NaN": (np.nan, 0.5, 0.5), "Inf": (0.5, np.inf, 0.5)}.items():
            case(f"preprocess {argument} {name}", lambda c, v=value, a=argument: image.preprocess(pixels, 4, **{a: v}),
                 ValueError, f"{argument}[")
        case(f"preprocess {argument} of 2", lambda c, a=argument: image.preprocess(pixels, 4, **{a: (0.5, 0.5)}),
             ValueError, f"{argument} must have 3 values")
        for name, value in {"None": None, "str": "abc", "dict": {"r": 1}}.items():
            case(f"preprocess {argument} {name}", lambda c, v=value, a=argument: image.preprocess(pixels, 4, **{a: v}),
                 TypeError, argument)
    case("preprocess std 0", lambda c: image.preprocess(pixels, 4, std=(0.5, 0.0, 0.5)), ValueError, "std[1]")

    # Encoder
    for name, value in {"None": None, "int": 3, "str": "a.jpg", "dict": {"a.jpg": 1}, "set": {"a.jpg"},
                        "3-D array": pixels, "bytes": b"\x89PNG"}.items():
        case(f"encode inputs {name}", lambda c, v=value: c["encoder"].encode(v), TypeError, "inputs must be a list")
    for name, (value, error) in {"None": (None, TypeError), "float pixels": (pixels.astype(np.float32), TypeError),
                                 "empty pixels": (np.zeros((0, 0, 3), np.uint8), ValueError),
                                 "2-D pixels": (pixels[..., 0], ValueError),
                                 "non-contiguous": (np.zeros((4, 8, 3), np.uint8)[:, ::2], ValueError),
                                 "reversed memoryview": (None, ValueError)}.items():
        if name == "reversed memoryview":
            case(f"encode inputs[1] {name}", lambda c: c["encoder"].encode([pixels, memoryview(c["png"])[::-1]]), error,
                 "inputs[1]")
        else:
            case(f"encode inputs[1] {name}", lambda c, v=value: c["encoder"].encode([pixels, v]), error, "inputs[1]")
    case("encode inputs[0] empty bytes", lambda c: c["encoder"].encode([b""]), pr.CorruptFileError, "inputs[0]")
    case("encode on_error=ignore", lambda c: c["encoder"].encode([pixels], on_error="ignore"), ValueError, "on_error")
    case("encode on_error=None", lambda c: c["encoder"].encode([pixels], on_error=None), TypeError, "on_error")
    case("encode progress=str", lambda c: c["encoder"].encode([pixels], progress="bar"), TypeError, "progress")
    case("Encoder of a directory", lambda c: pr.Encoder(c["folder"]), pr.IoError, "is not a file")
    case("Encoder batch_size=0", lambda c: pr.Encoder(c["encoder"].model_path, batch_size=0), ValueError, "batch_size")
    case("Encoder max_pixels=0", lambda c: pr.Encoder(c["encoder"].model_path, max_pixels=0), ValueError, "max_pixels")
    case("Encoder threads=-1", lambda c: pr.Encoder(c["encoder"].model_path, threads=-1), ValueError, "threads")
    case("Encoder device=tpu", lambda c: pr.Encoder(c["encoder"].model_path, device="tpu"), ValueError, "device")
    return out


@pytest.mark.parametrize("call, errors, text", cases())
def test_refused_with_a_message_naming_the_argument(context, call, errors, text):
    retriever = context["retriever"]
    ids_before, vectors_before = retriever.ids(), retriever.vectors()
    with pytest.raises(errors) as raised:
        call(context)
    # pybind11 3 (the PyPI stack's) names an int parameter "typing.SupportsInt | typing.SupportsIndex".
    message = str(raised.value).replace("typing.SupportsInt | typing.SupportsIndex", "int")
    assert text in message, str(raised.value)
    # Refused means refused: the shared gallery is exactly as it was.
    np.testing.assert_array_equal(retriever.ids(), ids_before)
    np.testing.assert_array_equal(retriever.vectors(), vectors_before)
    assert [retriever.metadata(i) for i in ids_before] == ["a", "b", "c", "d"]


def test_empty_batches_are_valid_not_errors(context):
    retriever = context["retriever"]
    retriever.add(np.zeros((0, DIM), np.float32), np.zeros(0, np.int64))
    assert len(retriever) == DIM
    scores, ids = retriever.search(np.zeros((0, DIM), np.float32), 3)
    assert scores.shape == (0, 3) and ids.shape == (0, 3) and scores.dtype == np.float32 and ids.dtype == np.int64
    retriever.remove(np.zeros(0, np.int64))
    assert len(retriever) == DIM
    assert context["encoder"].encode([]).shape == (0, context["encoder"].embedding_dim)


def test_bytes_and_pathlike_paths_name_the_real_file(context, tmp_path):
    # str() of a bytes path is "b'...'": the index used to land in a file of that name.
    retriever = context["retriever"]
    target = tmp_path / "index.pei"
    retriever.save(os.fsencode(target))
    assert os.listdir(tmp_path) == ["index.pei"]
    np.testing.assert_array_equal(pr.Retriever.load(os.fsencode(target)).ids(), retriever.ids())
    np.testing.assert_array_equal(pr.Retriever.load(target, mmap=True).ids(), retriever.ids())
    retriever.export_npy(os.fsencode(tmp_path / "v.npy"), tmp_path / "i.npy")
    assert sorted(os.listdir(tmp_path)) == ["i.npy", "index.pei", "v.npy"]


def test_contiguous_views_and_generators_are_accepted(context):
    data = context["png"]
    expected = image.decode(data)
    np.testing.assert_array_equal(image.decode(memoryview(data)), expected)
    np.testing.assert_array_equal(image.decode(bytearray(data)), expected)
    encoder = context["encoder"]
    pixels = np.zeros((6, 5, 3), np.uint8)
    together = encoder.encode([data, memoryview(data), pixels])
    one_by_one = encoder.encode(item for item in [data, memoryview(data), pixels])
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)
    np.testing.assert_allclose(together[0], together[1], atol=1e-6)


def test_converted_inputs_give_the_float32_results():
    # Any real-valued array-like is converted at the boundary; the results are
    # those of the float32 / int64 C-contiguous arrays it stands for.
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((12, DIM)).astype(np.float32)
    queries = vectors[:5] + np.float32(0.01)
    reference = pr.Retriever(DIM)
    reference.add(vectors, np.arange(12, dtype=np.int64))
    expected = reference.search(queries, 4)
    forms = {
        "float64": (vectors.astype(np.float64), queries.astype(np.float64), np.arange(12)),
        "big-endian, int32 ids": (vectors.astype(">f4"), queries.astype(">f4"), np.arange(12, dtype=np.int32)),
        "Fortran, uint8 ids": (np.asfortranarray(vectors), np.asfortranarray(queries), np.arange(12, dtype=np.uint8)),
        "strided": (np.repeat(vectors, 2, axis=1)[:, ::2], np.repeat(queries, 2, axis=1)[:, ::2],
                    np.arange(24, dtype=np.int64)[::2] // 2),
        "lists": (vectors.tolist(), queries.tolist(), list(range(12))),
    }
    for name, (gallery, query, ids) in forms.items():
        retriever = pr.Retriever(DIM)
        retriever.add(gallery, ids)
        scores, found = retriever.search(query, 4)
        np.testing.assert_array_equal(found, expected[1], err_msg=name)
        np.testing.assert_array_equal(scores, expected[0], err_msg=name)
    # float16 and integer vectors are exact in float32, so they convert exactly too.
    small = np.arange(2 * DIM, dtype=np.int16).reshape(2, DIM) + 1
    as_float = pr.Retriever(DIM, metric="ip")
    as_float.add(small.astype(np.float32), np.array([1, 2]))
    as_int = pr.Retriever(DIM, metric="ip")
    as_int.add(small, np.array([1, 2]))
    np.testing.assert_array_equal(as_int.vectors(), as_float.vectors())


def test_unpickled_arrays_are_their_dtype(context):
    # An array that crossed a process boundary (pickled) carries an equal but
    # not identical dtype object; the bindings must see it as its dtype.
    import pickle

    pixels = pickle.loads(pickle.dumps(np.full((6, 5, 3), 120, np.uint8)))
    assert pixels.dtype == np.uint8
    assert image.preprocess(pixels, 8).shape == (3, 8, 8)
    np.testing.assert_array_equal(context["encoder"].encode([pixels]),
                                  context["encoder"].encode([np.full((6, 5, 3), 120, np.uint8)]))
    ranking = pickle.loads(pickle.dumps(np.array([[0]], np.int64)))
    assert metrics.evaluate(ranking, [1], [1])["P@1"] == 1.0
