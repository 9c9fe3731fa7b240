"""perception_retrieval.Encoder (C++ pe::Encoder) against the Python eager
pipeline: PIL decode + convert("RGB") + bilinear squash + ToTensor/Normalize,
then the nn.Module from perception_retrieval.pe_core."""

import io
import json
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import perception_retrieval as pr
from perception_retrieval import export, pe_core

TINY = "test-tiny"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random-weight model exported by the real export tool, and its eager twin."""
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    export.export(path, config=TINY, random_init=True, seed=0, log=None)
    eager = pe_core.build(TINY, seed=0).eval()
    return path, eager


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Product-like photos of varied sizes and formats, written to disk."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    paths = []
    for i, (height, width) in enumerate([(600, 800), (480, 360), (97, 301), (56, 56), (1000, 700), (33, 40)]):
        y, x = np.mgrid[0:height, 0:width]
        pixels = np.stack([(x * (i + 1)) % 256, (y * 3) % 256, ((x + y) // 4) % 256], axis=-1).astype(np.uint8)
        pixels = np.clip(pixels.astype(int) + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
        suffix = ["png", "jpg", "bmp", "png", "jpg", "gif"][i]
        path = folder / f"photo{i}.{suffix}"
        Image.fromarray(pixels).save(path, quality=92) if suffix == "jpg" else Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def eager_embeddings(model, paths, size=56, normalize=True):
    batch = []
    for path in paths:
        resized = np.array(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))
        tensor = torch.from_numpy(resized).permute(2, 0, 1).float().div(255)
        batch.append((tensor - 0.5) / 0.5)
    with torch.no_grad():
        out = model(torch.stack(batch))
    return torch.nn.functional.normalize(out, dim=1).numpy() if normalize else out.numpy()


def test_matches_the_eager_python_pipeline(tiny, photos):
    path, eager = tiny
    encoder = pr.Encoder(path, batch_size=4)
    ours = encoder.encode(photos)
    reference = eager_embeddings(eager, photos)
    assert ours.shape == (len(photos), 32) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    cosine = (ours * reference).sum(axis=1)
    assert any(p.suffix == ".jpg" for p in photos)
    # Every format, JPEG included, gives PIL's pixels; what remains is float summation order.
    assert cosine.min() >= 0.999999, cosine


def test_onednn_and_blas_linears_agree(tiny, photos):
    path, eager = tiny
    onednn = pr.Encoder(path, batch_size=4, gemm="onednn")  # "auto" picks whichever measures fastest
    blas = pr.Encoder(path, batch_size=4, onednn=False)
    assert onednn.uses_onednn == torch.backends.mkldnn.is_available()
    assert blas.uses_onednn is False
    ours, reference = onednn.encode(photos), blas.encode(photos)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)  # fp32 both; summation order only
    assert (blas.encode(photos) * eager_embeddings(eager, photos)).sum(axis=1).min() >= 0.999999


def test_unnormalised_output_equals_the_module(tiny, photos, tmp_path):
    _, eager = tiny
    path = tmp_path / "raw.pt"
    export.export(path, config=TINY, random_init=True, seed=0, normalize=False, log=None)
    pngs = [p for p in photos if p.suffix == ".png"]
    raw = pr.Encoder(path, normalize=False).encode(pngs)
    np.testing.assert_allclose(raw, eager_embeddings(eager, pngs, normalize=False), rtol=1e-4, atol=1e-5)


def test_paths_bytes_and_pixels_agree_and_keep_order(tiny, photos):
    path, _ = tiny
    mixed = [photos[0], photos[1].read_bytes(), np.array(Image.open(photos[2]).convert("RGB")), str(photos[3])]
    by_path = pr.Encoder(path, batch_size=16).encode(photos[:4])
    for batch_size in (1, 3):
        np.testing.assert_allclose(pr.Encoder(path, batch_size=batch_size).encode(mixed), by_path, atol=1e-6)


def test_preprocess_is_the_model_input(tiny, photos):
    path, _ = tiny
    pixels = np.array(Image.open(photos[0]).convert("RGB"))
    encoder = pr.Encoder(path)
    np.testing.assert_array_equal(encoder.preprocess(pixels), pr.image.preprocess(pixels, 56))
    # Every input form encode takes has its model input: a path, bytes, pixels.
    for photo in photos:
        expected = pr.image.preprocess(np.array(Image.open(photo).convert("RGB")), 56)
        for form in (photo, str(photo), photo.read_bytes(), bytearray(photo.read_bytes()), pr.image.decode(photo)):
            np.testing.assert_array_equal(encoder.preprocess(form), expected)
    with pytest.raises(pr.CorruptFileError, match="<bytes>: truncated"):
        encoder.preprocess(photos[1].read_bytes()[:2000])
    with pytest.raises(TypeError, match="pixels"):
        encoder.preprocess(42)
    assert encoder.metadata["image_size"] == encoder.image_size == 56
    assert encoder.embedding_dim == 32


def test_skip_mode_reports_failures_without_shifting_rows(tiny, photos, tmp_path):
    path, _ = tiny
    (tmp_path / "empty.jpg").write_bytes(b"")
    jpeg = photos[1].read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
    inputs = [photos[0], tmp_path / "missing.png", photos[2], tmp_path / "empty.jpg", tmp_path / "cut.jpg",
              tmp_path / "photo.heic", photos[3]]
    embeddings, rows, failures = pr.Encoder(path, batch_size=2).encode(inputs, on_error="skip")
    assert rows.tolist() == [0, 2, 6]
    assert [index for index, _ in failures] == [1, 3, 4, 5]
    reasons = dict(failures)
    assert "missing.png: no such image file" in reasons[1]
    assert "empty.jpg" in reasons[3] and "empty" in reasons[3]
    assert "cut.jpg" in reasons[4] and "truncated" in reasons[4]
    assert "HEIC/HEIF images are not supported" in reasons[5]
    np.testing.assert_allclose(embeddings, pr.Encoder(path).encode([photos[0], photos[2], photos[3]]), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="missing.png: no such image file"):
        pr.Encoder(path).encode(inputs)


def test_concurrent_encode_calls_give_identical_results(tiny, photos):
    path, _ = tiny
    encoder = pr.Encoder(path, batch_size=2)
    expected = encoder.encode(photos)
    results = [None] * 3

    def work(slot):
        results[slot] = encoder.encode(photos)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-6)


def test_progress_is_reported_and_an_exception_in_it_stops_the_run(tiny, photos):
    path, _ = tiny
    encoder = pr.Encoder(path, batch_size=2)
    seen = []
    encoder.encode(photos, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 6), (4, 6), (6, 6)]

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encoder.encode(photos, progress=interrupt)


def test_bad_inputs(tiny):
    path, _ = tiny
    encoder = pr.Encoder(path)
    with pytest.raises(TypeError, match=r"inputs\[0\] is a int"):
        encoder.encode([42])
    with pytest.raises(TypeError, match="wrap a single path"):
        encoder.encode("photo.jpg")
    with pytest.raises(TypeError, match=r"inputs\[0\] must have dtype uint8"):
        encoder.encode([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(ValueError, match=r"H x W x 3"):
        encoder.encode([np.zeros((4, 4, 4), np.uint8)])
    with pytest.raises(ValueError, match="on_error"):
        encoder.encode([], on_error="ignore")
    assert encoder.encode([]).shape == (0, 32)


def save_scripted(module, path, metadata):
    extra = {} if metadata is None else {"pe_metadata.json": json.dumps(metadata)}
    torch.jit.save(torch.jit.script(module), str(path), _extra_files=extra)


class WrongShape(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))  # [B, 3], not [B, 32]


def test_bad_model_files_are_rejected_with_the_fix(tiny, tmp_path):
    path, eager = tiny
    metadata = pr.Encoder(path).metadata
    (tmp_path / "notes.json").write_text('{"not": "a model"}')
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    save_scripted(eager, tmp_path / "no_metadata.pt", None)
    save_scripted(WrongShape(), tmp_path / "wrong_shape.pt", metadata)
    cases = {
        tmp_path / "missing.pt": "does not exist",
        tmp_path / "notes.json": "is not a TorchScript model",
        truncated: "is not a TorchScript model",
        tmp_path / "no_metadata.pt": "has no pe_metadata.json",
        tmp_path / "wrong_shape.pt": "expected [1, 32]",
    }
    for model, message in cases.items():
        expected = pr.FileNotFoundError if model.name == "missing.pt" else pr.CorruptFileError
        with pytest.raises(expected) as raised:
            pr.Encoder(model)
        assert message in str(raised.value) and str(model) in str(raised.value), str(raised.value)


def test_cuda_and_options_are_checked(tiny):
    path, _ = tiny
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="asked for CUDA, but this LibTorch") as refused:
            pr.Encoder(path, device="cuda")
        # The message tells a CUDA build on a machine without a GPU (the PyPI wheel here)
        # from a LibTorch built without CUDA (Debian's); the extension links this torch.
        if torch.version.cuda:
            assert "it is a CUDA build, but no GPU or driver is visible" in str(refused.value)
        else:
            assert "it is built without CUDA" in str(refused.value)
        for dtype in ("float16", "bfloat16"):
            with pytest.raises(pr.UnsupportedFormatError, match="asked for CUDA"):
                pr.Encoder(path, device="cuda:0", dtype=dtype)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        pr.Encoder(path, dtype="fp16")
    with pytest.raises(ValueError, match="not cpu, cuda or cuda:N"):
        pr.Encoder(path, device="tpu")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        pr.Encoder(path, batch_size=0)


@pytest.mark.slow
def test_full_l14_336_random_weights_matches_eager(tmp_path):
    """One image through the real architecture (random weights) in C++ and in Python."""
    path = tmp_path / "l14.pt"
    export.export(path, config="PE-Core-L14-336", random_init=True, seed=1, log=None)
    encoder = pr.Encoder(path, batch_size=1)
    assert encoder.image_size == 336 and encoder.embedding_dim == 1024
    pixels = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    ours = encoder.encode([pixels])
    eager = pe_core.build("PE-Core-L14-336", seed=1).eval()
    with torch.no_grad():
        reference = torch.nn.functional.normalize(eager(torch.from_numpy(pr.image.preprocess(pixels))[None]), dim=1)
    assert float((ours * reference.numpy()).sum()) >= 0.9999


def test_process_wide_settings_change_only_when_asked(tiny):
    # In a fresh process: an Encoder leaves LibTorch's thread count alone unless
    # given a count; the CPU count it would use is the process's, not the machine's.
    path, _ = tiny
    code = textwrap.dedent(f"""
        import os, torch
        import perception_retrieval as pr
        torch.set_num_threads(1)
        pr.Encoder({str(path)!r}).encode([b"P5 2 2 255 abcd"])
        print(torch.get_num_threads())
        pr.Encoder({str(path)!r}, threads=2)
        print(torch.get_num_threads(), pr.usable_cpu_count() == len(os.sched_getaffinity(0)))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "2", "True"]
    # Pinned to one CPU, "every usable CPU" is one.
    pinned = subprocess.run(["taskset", "-c", "0", sys.executable, "-c",
                             "import perception_retrieval as pr; print(pr.usable_cpu_count())"],
                            capture_output=True, text=True, timeout=300)
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.strip() == "1"


def test_dtype_names_are_one_vocabulary(tiny):
    path, _ = tiny
    assert pr.Encoder(path).dtype == "float32"
    for alias in ("fp32", np.float32, torch.float32):
        assert pr.Encoder(path, dtype=alias).dtype == "float32"
    with pytest.raises(pr.InvalidArgumentError, match="needs a CUDA device"):
        pr.Encoder(path, dtype=np.float16)
    with pytest.raises(pr.InvalidArgumentError, match="not float32, float16 or bfloat16"):
        pr.Encoder(path, dtype="int8")
    assert pr.Retriever(4, dtype=np.float16).dtype == "float16"
    assert pr.Retriever(4, dtype=torch.float32).dtype == "float32"


def test_skip_mode_returns_a_named_result(tiny):
    path, _ = tiny
    result = pr.Encoder(path).encode([b"", np.full((9, 7, 3), 30, np.uint8)], on_error="skip")
    assert isinstance(result, pr.EncodeResult)
    assert result.rows.tolist() == [1] and result.embeddings.shape == (1, 32)
    assert result.failures[0][0] == 0 and "empty" in result.failures[0][1]
    embeddings, rows, failures = result  # still unpacks as before
    assert embeddings is result.embeddings


# ----------------------------------------------------------------------------------------
# .pt2 packages (torch.export + AOTInductor): the C++ Encoder reads the format from the file

@pytest.fixture(scope="module")
def tiny_pt2(tmp_path_factory):
    if not export.has_aoti():
        pytest.skip(f"torch {torch.__version__} cannot write .pt2 packages (torch >= 2.6; the PyPI stack can)")
    path = tmp_path_factory.mktemp("pt2") / "tiny.pt2"
    export.export(path, config=TINY, random_init=True, seed=0, log=None)
    return path


def test_pt2_package_matches_the_eager_pipeline_and_the_torchscript_file(tiny, tiny_pt2, photos):
    path, eager = tiny
    encoder = pr.Encoder(tiny_pt2, batch_size=4)
    assert encoder.model_format == "aoti" and pr.Encoder(path).model_format == "torchscript"
    assert encoder.uses_onednn is False  # AOTInductor's own kernels
    assert encoder.metadata["model_format"] == "aoti" and encoder.image_size == 56
    ours = encoder.encode(photos)
    cosine = (ours * eager_embeddings(eager, photos)).sum(axis=1)
    assert cosine.min() >= 0.999999, cosine
    np.testing.assert_allclose(ours, pr.Encoder(path, batch_size=4).encode(photos), rtol=0, atol=1e-5)
    # Batches of every size (the batch dimension is dynamic), skipping, concurrency.
    for batch_size in (1, 3):
        np.testing.assert_allclose(pr.Encoder(tiny_pt2, batch_size=batch_size).encode(photos), ours, atol=1e-6)
    embeddings, rows, failures = encoder.encode([photos[0], b"", photos[1]], on_error="skip")
    assert rows.tolist() == [0, 2] and [index for index, _ in failures] == [1]
    results = [None] * 2
    threads = [threading.Thread(target=lambda slot=slot: results.__setitem__(slot, encoder.encode(photos)))
               for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_allclose(result, ours, atol=1e-6)


def test_pt2_packages_are_cpu_only(tiny_pt2):
    if torch.cuda.is_available():
        with pytest.raises(pr.UnsupportedFormatError, match="compiled for the CPU"):
            pr.Encoder(tiny_pt2, device="cuda")
    else:  # no GPU: the device is refused first, with its own message
        with pytest.raises(pr.UnsupportedFormatError, match="asked for CUDA"):
            pr.Encoder(tiny_pt2, device="cuda")


def fake_package(path):
    """A zip laid out like a .pt2 package, without a loadable model inside."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("fake/archive_format", "pt2")
        archive.writestr("fake/.data/version", "6\n")
        archive.writestr("fake/data/aotinductor/model/model.wrapper.cpp", "// not compiled")
    return path


def test_a_pt2_package_on_each_libtorch(tmp_path):
    path = fake_package(tmp_path / "fake.pt2")
    if export.has_aoti():  # LibTorch 2.x reads packages: this one is refused as broken
        with pytest.raises(pr.CorruptFileError, match="not a loadable AOTInductor package"):
            pr.Encoder(path)
    else:  # LibTorch 1.13 says it needs a newer one
        with pytest.raises(pr.UnsupportedFormatError, match=r"AOTInductor package \(\.pt2\).*torch >= 2\.6"):
            pr.Encoder(path)


def test_progress_bar_is_tqdm_where_installed_and_the_own_one_otherwise(monkeypatch):
    from perception_retrieval import encoder as encoder_module

    def draw(bar_factory):
        stream = io.StringIO()
        bar = bar_factory(6, stream=stream)
        for done in (2, 4, 6):
            bar(done, 6)
        bar.close()
        return bar, stream.getvalue()

    try:
        import tqdm  # noqa: F401
    except ImportError:
        tqdm = None
    bar, drawn = draw(encoder_module.progress_bar)
    assert "6/6" in drawn and "encoding" in drawn
    assert isinstance(bar, encoder_module._TqdmProgress) == (tqdm is not None)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as on the Debian stack
    bar, drawn = draw(encoder_module.progress_bar)
    assert isinstance(bar, encoder_module._ProgressBar)
    assert "6/6" in drawn and "img/s" in drawn
