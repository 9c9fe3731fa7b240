"""Fault injection through the Python package: model files that are not what
pe::Encoder needs (truncated, another model, a plain pickle, a directory, an
empty file, a FIFO, broken metadata) are refused with an error naming the file,
and hostile images in a batch are reported per input without taking the batch
down. (Image bombs, index files and concurrency are covered in C++:
tests/cpp/test_hardening_*.cpp.)"""

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import perception_retrieval as pr
from perception_retrieval import export


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    export.export(path, config="test-tiny", random_init=True, seed=0, log=None)
    return path


def metadata_of(path):
    extra = {"pe_metadata.json": ""}
    torch.jit.load(str(path), _extra_files=extra)
    return json.loads(extra["pe_metadata.json"])


def save_scripted(module, path, metadata):
    extra = {} if metadata is None else {"pe_metadata.json": metadata if isinstance(metadata, str) else
                                         json.dumps(metadata)}
    torch.jit.save(torch.jit.script(module), str(path), _extra_files=extra)
    return path


class Features(torch.nn.Module):
    """Another model: [B, 3, H, W] -> [B, 3, H/2, W/2] feature maps, not embeddings."""

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x, 2)


class SixteenWide(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3)).repeat(1, 6)[:, :16]


class Pair(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3)), x.amax(dim=(2, 3))


class Raises(torch.nn.Module):
    def forward(self, x):
        if x.size(0) > 0:
            raise RuntimeError("this model always fails")
        return x


def assert_refused(model, message):
    with pytest.raises(pr.Error) as raised:
        pr.Encoder(model)
    text = str(raised.value)
    assert str(model) in text, f"the error does not name the file: {text}"
    assert message in text, text


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.3, 0.6, 0.95, 0.999])
def test_truncated_torchscript_zip_is_refused(tiny, tmp_path, fraction):
    data = tiny.read_bytes()
    cut = tmp_path / f"cut_{fraction}.pt"
    cut.write_bytes(data[: int(len(data) * fraction)])
    assert_refused(cut, "is not a TorchScript model")


def test_flipped_bytes_in_the_model_zip_are_refused_or_harmless(tiny, tmp_path):
    # Zip entries carry CRCs torch does not always check (tensors are read raw),
    # so a flipped byte inside a weight may load; it must never crash, and an
    # Encoder that loads must still produce finite unit-length embeddings or
    # an error naming the file.
    data = bytearray(tiny.read_bytes())
    rng = np.random.default_rng(0)
    for i, at in enumerate(rng.choice(len(data), 12, replace=False)):
        damaged = bytearray(data)
        damaged[at] ^= 0xFF
        path = tmp_path / f"flipped_{i}.pt"
        path.write_bytes(bytes(damaged))
        try:
            encoder = pr.Encoder(path)
        except pr.Error as error:
            assert str(path) in str(error), str(error)
            continue
        try:
            out = encoder.encode([np.full((8, 8, 3), 100, np.uint8)])
        except RuntimeError:
            continue
        assert out.shape == (1, encoder.embedding_dim)


def test_torchscript_of_another_model_is_refused(tiny, tmp_path):
    metadata = metadata_of(tiny)
    cases = {
        save_scripted(Features(), tmp_path / "features.pt", metadata): "expected [1, 32]",
        save_scripted(SixteenWide(), tmp_path / "sixteen.pt", metadata): "expected [1, 32]",
        save_scripted(Pair(), tmp_path / "pair.pt", metadata): "probe input",
        save_scripted(Raises(), tmp_path / "raises.pt", metadata): "this model always fails",
    }
    for model, message in cases.items():
        assert_refused(model, message)


def test_broken_metadata_is_refused(tiny, tmp_path):
    metadata = metadata_of(tiny)
    eager = Features()
    cases = {
        "no_metadata.pt": (None, "has no pe_metadata.json"),
        "not_json.pt": ("{this is not json", "is unreadable"),
        "missing_key.pt": ({k: v for k, v in metadata.items() if k != "image_size"}, "is unreadable"),
        "zero_size.pt": (dict(metadata, image_size=0), "not a valid model shape"),
        "odd_size.pt": (dict(metadata, image_size=57), "not a valid model shape"),
        "two_means.pt": (dict(metadata, mean=[0.5, 0.5]), "mean/std must have 3 values"),
        "nan_std.pt": ('{"model_name": "x", "image_size": 56, "patch_size": 14, "embedding_dim": 32, '
                       '"mean": [0.5, 0.5, 0.5], "std": [0.5, NaN, 0.5], "resize": "bilinear_squash", '
                       '"normalized": true}', "is unreadable"),
        "center_crop.pt": (dict(metadata, resize="center_crop"), "is not supported"),
    }
    for name, (content, message) in cases.items():
        assert_refused(save_scripted(eager, tmp_path / name, content), message)


def test_files_that_are_not_torchscript_are_refused(tmp_path, tiny):
    pickled = tmp_path / "weights.pkl"
    pickled.write_bytes(pickle.dumps({"visual.proj": [[0.1] * 4] * 4}))
    state_dict = tmp_path / "state_dict.pt"
    torch.save({"weight": torch.zeros(3, 3)}, state_dict)
    legacy = tmp_path / "legacy.pt"
    torch.save({"weight": torch.zeros(3, 3)}, legacy, _use_new_zipfile_serialization=False)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    text = tmp_path / "notes.pt"
    text.write_text("just some notes")
    zipped = tmp_path / "other.zip"
    import zipfile

    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("hello.txt", "not a model")
    for model in (pickled, state_dict, legacy, empty, text, zipped):
        assert_refused(model, "is not a TorchScript model")
    folder = tmp_path / "model_dir.pt"
    folder.mkdir()
    assert_refused(folder, "is not a file (a directory, device or FIFO)")
    assert_refused(tmp_path / "missing.pt", "does not exist")


def test_a_fifo_as_model_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    # In a child process: were the open to wait for a writer, the timeout says so.
    code = ("import perception_retrieval as pr, sys\n"
            "try:\n    pr.Encoder(sys.argv[1])\nexcept pr.Error as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert str(fifo) in done.stdout and "is not a file" in done.stdout, done.stdout + done.stderr


def png(width, height, idat):
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_hostile_images_in_a_batch_are_skipped_and_named(tiny, tmp_path):
    good = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(good, "PNG")
    inflating = zlib.compressobj(9)
    # 64 MB of zeros for 4 bytes: PIL reads the first row and stops, and so does the decoder (no bomb).
    overlong = png(1, 1, inflating.compress(bytes(64 << 20)) + inflating.flush())
    fifo = tmp_path / "stream.jpg"
    os.mkfifo(fifo)
    inputs = [good.getvalue(), png(100_000, 100_000, b""), overlong, b"", tmp_path, fifo, "/dev/zero",
              png(4, 4, b"\x00" * 8)[:-20], good.getvalue()]
    encoder = pr.Encoder(tiny, batch_size=3)
    embeddings, rows, failures = encoder.encode(inputs, on_error="skip")
    assert list(rows) == [0, 2, 8]
    np.testing.assert_allclose(embeddings[0], embeddings[2], atol=1e-6)
    np.testing.assert_allclose(embeddings[1], encoder.encode([np.zeros((1, 1, 3), np.uint8)])[0], atol=1e-6)
    reasons = dict(failures)
    assert sorted(reasons) == [1, 3, 4, 5, 6, 7]
    assert "over the limit" in reasons[1] and "inputs[1]" in reasons[1] and "decompression-bomb" in reasons[1]
    assert "empty" in reasons[3]
    assert "is a directory" in reasons[4] and str(tmp_path) in reasons[4]
    assert "not a regular file" in reasons[5] and str(fifo) in reasons[5]
    assert "not a regular file" in reasons[6] and "/dev/zero" in reasons[6]
    assert "inputs[7]" in reasons[7]
    with pytest.raises(pr.CorruptFileError, match=r"inputs\[1\] \(bytes\): the PNG header declares 100000 x 100000"):
        encoder.encode(inputs)


def test_png_with_an_empty_idat_chunk_decodes_like_pil():
    """A zero-length IDAT is legal PNG; stb 2.27 (read before libpng) copied it to a null buffer (UBSan)."""
    import io
    import struct
    import zlib

    import numpy as np
    from PIL import Image

    from perception_retrieval import image

    pixels = np.random.default_rng(5).integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    data = buffer.getvalue()
    first_idat = data.index(b"IDAT") - 4
    empty = struct.pack(">I", 0) + b"IDAT" + struct.pack(">I", zlib.crc32(b"IDAT"))
    patched = data[:first_idat] + empty + data[first_idat:]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(patched)).convert("RGB")), pixels)
    assert np.array_equal(image.decode(patched), pixels)
