"""Property-based fuzzing of the dataset parsers (manifest, SOP, Products-10K,
VPRC) with Hypothesis: whatever bytes a listing holds, a loader returns a
Dataset or raises DatasetError naming the problem; it never raises anything
else, never hangs and never touches a file outside the tree it was given."""

import os
import shutil
import tempfile

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from perception_retrieval import datasets  # noqa: E402

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Cells drawn from values that matter to the parsers (real file names, numbers,
# roles, separators, quotes, unicode, NUL) plus arbitrary text.
cells = st.one_of(
    st.sampled_from(["a.png", "img/b.png", "../outside.png", "", "query", "gallery", "both", "QUERY", "0", "-1",
                     "3.5", "1e309", "nan", "x", '"', ",", "\x00", "é", "10000000000", " 2 "]),
    st.text(max_size=12),
)
rows = st.lists(st.lists(cells, min_size=0, max_size=8), max_size=12)


def csv_text(header, body):
    return "\n".join([",".join(header)] + [",".join(row) for row in body]) + "\n"


@pytest.fixture(scope="module")
def tree():
    root = tempfile.mkdtemp(prefix="pe-fuzz-datasets-")
    os.makedirs(os.path.join(root, "img"))
    os.makedirs(os.path.join(root, "test"))
    for name in ("a.png", "img/b.png", "test/a.png"):
        Image.new("RGB", (8, 6), (10, 20, 30)).save(os.path.join(root, name))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def load_or_dataset_error(loader, path):
    try:
        dataset = loader(path)
    except datasets.DatasetError as error:
        assert str(error).startswith("dataset "), str(error)
        return None
    assert len(dataset.query_images) > 0 or len(dataset.gallery_images) > 0
    for image in dataset.images:
        assert os.path.isfile(image.path)
    return dataset


headers = st.sampled_from([
    ["path", "instance_id", "role"],
    ["path", "instance_id", "role", "bbox_x", "bbox_y", "bbox_w", "bbox_h"],
    ["instance_id", "path", "role"],
    ["path", "role"],
    [],
])


@SETTINGS
@given(header=headers, body=rows)
def test_manifest_parser(tree, header, body):
    path = os.path.join(tree, "manifest.csv")
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as out:
        out.write(csv_text(header, body))
    load_or_dataset_error(datasets.load_manifest, path)


@SETTINGS
@given(body=rows, header=st.sampled_from([["name", "class", "usage"], ["name", "class"], ["file", "label"]]))
def test_products10k_parser(tree, header, body):
    with open(os.path.join(tree, "test_kaggletest.csv"), "w", encoding="utf-8", errors="surrogatepass") as out:
        out.write(csv_text(header, body))
    load_or_dataset_error(datasets.load_products10k, tree)


@SETTINGS
@given(body=rows)
def test_sop_parser(tree, body):
    with open(os.path.join(tree, "Ebay_test.txt"), "w", encoding="utf-8", errors="surrogatepass") as out:
        out.write("image_id class_id super_class_id path\n" + "\n".join(" ".join(row) for row in body) + "\n")
    load_or_dataset_error(datasets.load_sop, tree)


@SETTINGS
@given(gallery=rows, queries=rows)
def test_vprc_parser(tree, gallery, queries):
    with open(os.path.join(tree, "gallery.csv"), "w", encoding="utf-8", errors="surrogatepass") as out:
        out.write(csv_text(["seller_img_id", "img_path", "product_id"], gallery))
    with open(os.path.join(tree, "queries.csv"), "w", encoding="utf-8", errors="surrogatepass") as out:
        out.write(csv_text(["img_path", "product_id", "bbox_x", "bbox_y", "bbox_w", "bbox_h"], queries))
    load_or_dataset_error(datasets.load_vprc, tree)


@SETTINGS
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_as_a_manifest(tree, data):
    path = os.path.join(tree, "bytes.csv")
    with open(path, "wb") as out:
        out.write(data)
    load_or_dataset_error(datasets.load_manifest, path)
