"""The regression inputs of issue 12 (tests/data/image_regressions/, one per
defect, written by tests/data/make_image_regressions.py) replayed against PIL
and against what each defect's fix promises."""

import io
import os
import re
import warnings

import numpy as np
import pytest
import PIL
from PIL import Image

import perception_retrieval as pr
from perception_retrieval import image

HERE = os.path.dirname(os.path.abspath(__file__))
FOLDER = os.path.join(HERE, "..", "data", "image_regressions")


def listed():
    """The files the README lists, with their defect line."""
    with open(os.path.join(FOLDER, "README.md")) as readme:
        return dict(re.findall(r"^- `([^`]+)` \(\d+ bytes\): (.*)$", readme.read(), re.M))


FILES = listed()

# Files that Debian 12's Pillow 9.4 reads differently from Pillow 13.0, which the decoders follow: the
# image_cases case each was made from, whose known difference test_image_formats checks (docs/formats.md).
PILLOW_94_DIFFERS = {"bmp_rle4.bmp": "bmp/rle4", "bmp_indices_past_palette.bmp": "bmp/8bit-5-colors-indices-past"}


def read(name):
    with open(os.path.join(FOLDER, name), "rb") as file:
        return file.read()


def pil(data):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.array(Image.open(io.BytesIO(data)).convert("RGB"))
    except Exception as error:  # PIL raises many types
        return error


def test_every_file_is_listed_and_every_listed_file_exists():
    present = {name for name in os.listdir(FOLDER) if name != "README.md"}
    assert present == set(FILES)
    assert len(FILES) >= 27


@pytest.mark.parametrize("name", sorted(FILES))
def test_regression_decodes_as_pil_does(name):
    data = read(name)
    expected = pil(data)
    path = os.path.join(FOLDER, name)
    if name in PILLOW_94_DIFFERS and PIL.__version__.startswith("9.4."):
        import test_image_formats

        assert test_image_formats.compare(PILLOW_94_DIFFERS[name], data) == "known difference"
        assert image.decode(path).shape == expected.shape
        return
    if isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(image.decode(path), expected, err_msg=FILES[name])
        np.testing.assert_array_equal(image.decode(data), expected)
        assert image.info(path)[1:] == (expected.shape[1], expected.shape[0])
    else:
        with pytest.raises((pr.CorruptFileError, pr.UnsupportedFormatError)) as raised:
            image.decode(path)
        assert str(raised.value).startswith(path + ": ")


@pytest.mark.parametrize("name", [n for n in sorted(FILES) if "truncated" in n])
def test_truncation_is_an_error_naming_the_file(name):
    path = os.path.join(FOLDER, name)
    fmt = {"gif": "GIF", "bmp": "BMP", "tga": "TGA", "ppm": "PNM", "psd": "PSD"}[name.rsplit(".", 1)[1]]
    with pytest.raises(pr.CorruptFileError, match=re.escape(f"{path}: truncated {fmt} data")):
        image.decode(path)


def test_palette_indices_past_the_palette_read_black():
    data = read("bmp_indices_past_palette.bmp")
    runs = [image.decode(data) for _ in range(3)]
    assert all(np.array_equal(runs[0], run) for run in runs)  # deterministic (was uninitialised memory)
    indices = np.frombuffer(data[-7 * 12:], np.uint8).reshape(7, 12)[::-1, :9]  # rows are padded to 12 bytes
    past = indices >= 5
    assert past.any()
    assert (runs[0][past] == 0).all()  # as Pillow 13 reads them (Pillow 9.4: its grey ramp, (i, i, i))


def test_rgb16_bmps_expand_channels_as_pil_does():
    for name, shifts in [("bmp_rgb555.bmp", (10, 5, 0, 31, 31, 31)), ("bmp_rgb565.bmp", (11, 5, 0, 31, 63, 31))]:
        data = read(name)
        raw = np.frombuffer(data[-5 * 12:], "<u2").reshape(5, 6)[::-1].astype(np.int64)
        expected = np.stack([((raw >> s) & m) * 255 // m for s, m in zip(shifts[:3], shifts[3:])], axis=-1)
        np.testing.assert_array_equal(image.decode(data), expected.astype(np.uint8), err_msg=name)


def test_grey16_with_trns_is_clipped():
    np.testing.assert_array_equal(image.decode(read("png_grey16_trns.png"))[0, :, 0],
                                  [0, 5, 255, 255, 255, 255, 255, 255])


def test_formats_pil_cannot_read_are_refused():
    for name, fmt in [("radiance.hdr", "Radiance HDR"), ("softimage.pic", "Softimage PIC")]:
        with pytest.raises(pr.UnsupportedFormatError, match=f"{fmt} images are not supported"):
            image.decode(read(name))
        assert image.sniff(read(name)) == fmt


def test_a_100_megapixel_header_is_not_a_bomb(capfd):
    # PIL only warns between MAX_IMAGE_PIXELS and twice that: the file is refused for being cut short.
    with pytest.raises(pr.CorruptFileError, match="truncated PNG data"):
        image.decode(read("png_100_megapixels_header.png"))
    assert "over max_pixels 89478485" in capfd.readouterr().err
    with pytest.raises(pr.CorruptFileError, match="truncated PNG data"):  # as PIL's open, which cannot open it
        image.info(read("png_100_megapixels_header.png"))
