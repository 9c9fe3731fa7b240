"""perception_retrieval.synthetic: the labelled product-like image sets behind the
demo and the loader tests. Checked here: the on-disk layouts (folder per instance,
VPRC 2023 CSVs), that every image decodes, that bounding boxes lie inside their
scenes and frame the product, determinism, and that the labels carry signal:
views of one product resemble each other more than other products."""

import csv
import filecmp
import os

import numpy as np
import pytest
from PIL import Image

from perception_retrieval import synthetic


def hue_histogram(image):
    """16-bin hue histogram of the saturated pixels (the backgrounds are drawn
    desaturated, so this looks at the products), normalised to sum 1."""
    hsv = np.asarray(image.convert("RGB").convert("HSV")).reshape(-1, 3).astype(np.int64)
    hues = hsv[hsv[:, 1] > 90, 0]
    counts = np.bincount(hues * 16 // 256, minlength=16).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def intersection(a, b):
    """Histogram intersection of every row of a with every row of b."""
    return np.minimum(a[:, None, :], b[None, :, :]).sum(axis=-1)


def all_files(root):
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


# --------------------------------------------------------------------------- folder layout

def test_folder_layout_counts_and_decoding(tmp_path):
    root = synthetic.write_folder_dataset(tmp_path / "set", num_instances=7, views_per_instance=3, image_size=80,
                                          seed=5)
    assert root == str(tmp_path / "set")
    instances = sorted(os.listdir(root))
    assert len(instances) == 7 and len(set(instances)) == 7
    kinds = set()
    extensions = []
    for index, instance in enumerate(instances):
        number, kind = instance.split("_")
        assert int(number) == index and kind in synthetic.PRODUCT_KINDS
        kinds.add(kind)
        views = sorted(os.listdir(os.path.join(root, instance)))
        assert [os.path.splitext(v)[0] for v in views] == ["00", "01", "02"]
        for view in views:
            extension = os.path.splitext(view)[1]
            extensions.append(extension)
            with Image.open(os.path.join(root, instance, view)) as image:
                assert image.format == {".jpg": "JPEG", ".png": "PNG"}[extension]
                assert image.mode == "RGB" and image.size == (80, 80)
                pixels = np.asarray(image)
            assert pixels.std() > 10, f"{instance}/{view} is nearly flat"
    assert kinds == set(synthetic.PRODUCT_KINDS)  # 7 instances cover all 6 kinds
    assert 1 <= extensions.count(".png") < len(extensions) / 2 and extensions.count(".jpg") > 0


def test_folder_views_of_one_product_are_alike(tmp_path):
    root = synthetic.write_folder_dataset(tmp_path, num_instances=10, views_per_instance=4, image_size=96, seed=2)
    paths = [os.path.join(root, p) for p in all_files(root)]
    labels = np.array([os.path.basename(os.path.dirname(p)) for p in paths])
    histograms = np.stack([hue_histogram(Image.open(p)) for p in paths])
    similarity = intersection(histograms, histograms)
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    different = labels[:, None] != labels[None, :]
    within, between = similarity[same].mean(), similarity[different].mean()
    assert within > between + 0.3, (within, between)
    np.fill_diagonal(similarity, -1.0)
    nearest_is_same = labels[similarity.argmax(axis=1)] == labels
    assert nearest_is_same.mean() >= 0.75  # chance: 3 of 39 other views


def test_folder_is_deterministic_and_instances_are_independent(tmp_path):
    first = synthetic.write_folder_dataset(tmp_path / "a", num_instances=4, views_per_instance=3, image_size=64,
                                           seed=11)
    again = synthetic.write_folder_dataset(tmp_path / "b", num_instances=4, views_per_instance=3, image_size=64,
                                           seed=11)
    other = synthetic.write_folder_dataset(tmp_path / "c", num_instances=4, views_per_instance=3, image_size=64,
                                           seed=12)
    more = synthetic.write_folder_dataset(tmp_path / "d", num_instances=6, views_per_instance=3, image_size=64,
                                          seed=11)
    files = all_files(first)
    assert files == all_files(again) == all_files(other)
    match, mismatch, _ = filecmp.cmpfiles(first, again, files, shallow=False)
    assert match == files and not mismatch
    _, changed, _ = filecmp.cmpfiles(first, other, files, shallow=False)
    assert changed == files, "another seed must change every image"
    # Each image has its own random stream: adding instances leaves the first ones as they were.
    match, mismatch, _ = filecmp.cmpfiles(first, more, files, shallow=False)
    assert match == files and not mismatch


# --------------------------------------------------------------------------- VPRC layout

def test_vprc_layout_csvs_and_images(tmp_path):
    size = 96
    root = synthetic.write_vprc_dataset(tmp_path / "vprc", num_instances=5, gallery_views=3, queries_per_instance=2,
                                        image_size=size, seed=4)
    assert root == str(tmp_path / "vprc")
    gallery = read_csv(os.path.join(root, "gallery.csv"))
    queries = read_csv(os.path.join(root, "queries.csv"))
    assert gallery[0] == ["seller_img_id", "img_path", "product_id"]
    assert queries[0] == ["img_path", "product_id", "bbox_x", "bbox_y", "bbox_w", "bbox_h"]
    assert len(gallery) == 1 + 5 * 3 and len(queries) == 1 + 5 * 2
    with open(os.path.join(root, "gallery.csv"), "rb") as handle:
        assert handle.read().startswith(b"seller_img_id,img_path,product_id\n")  # no BOM, no CR

    product_ids = [synthetic.vprc_product_id(i) for i in range(5)]
    assert len(set(product_ids)) == 5 and product_ids != list(range(5))
    seller_ids = [int(row[0]) for row in gallery[1:]]
    assert seller_ids == list(range(15))
    for rows, column, per in ((gallery[1:], 2, 3), (queries[1:], 1, 2)):
        counts = {pid: 0 for pid in product_ids}
        for row in rows:
            counts[int(row[column])] += 1  # int() fails loudly on a non-integer id
        assert all(count == per for count in counts.values()), counts

    for row in gallery[1:]:
        path = row[1]
        assert not os.path.isabs(path) and path.startswith("gallery/")
        with Image.open(os.path.join(root, path)) as image:
            assert image.format == "JPEG" and image.size == (size, size) and image.mode == "RGB"
    for row in queries[1:]:
        path = row[0]
        assert not os.path.isabs(path) and path.startswith("queries/")
        assert all(cell.lstrip("-").isdigit() for cell in row[2:]), row  # integer pixels
        x, y, w, h = (int(cell) for cell in row[2:])
        with Image.open(os.path.join(root, path)) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert image.size == (2 * size, 3 * size // 2)  # a larger scene than the gallery shots
            width, height = image.size
        assert w >= 8 and h >= 8, row
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, (row, image.size)
        assert w * h < 0.25 * width * height, "the product should be one of several in the scene"
    assert sorted(os.listdir(root)) == ["gallery", "gallery.csv", "queries", "queries.csv"]


def test_vprc_bbox_frames_the_product(tmp_path):
    """A query cropped to its box matches its product's gallery shots by colour;
    the whole shelf scene (with distractors) does not: the box is where the product is."""
    root = synthetic.write_vprc_dataset(tmp_path, num_instances=10, gallery_views=2, queries_per_instance=2,
                                        image_size=128, seed=0)
    gallery = read_csv(os.path.join(root, "gallery.csv"))[1:]
    queries = read_csv(os.path.join(root, "queries.csv"))[1:]
    gallery_labels = np.array([int(row[2]) for row in gallery])
    gallery_histograms = np.stack([hue_histogram(Image.open(os.path.join(root, row[1]))) for row in gallery])
    query_labels = np.array([int(row[1]) for row in queries])
    crops, scenes = [], []
    for row in queries:
        x, y, w, h = (int(cell) for cell in row[2:])
        with Image.open(os.path.join(root, row[0])) as scene:
            scenes.append(hue_histogram(scene))
            crops.append(hue_histogram(scene.crop((x, y, x + w, y + h))))
    accuracy = {}
    for name, histograms in (("crop", np.stack(crops)), ("scene", np.stack(scenes))):
        similarity = intersection(histograms, gallery_histograms)
        accuracy[name] = np.mean(gallery_labels[similarity.argmax(axis=1)] == query_labels)
        if name == "crop":
            same = query_labels[:, None] == gallery_labels[None, :]
            assert similarity[same].mean() > similarity[~same].mean() + 0.3
    assert accuracy["crop"] >= 0.7, accuracy  # chance: 0.1
    assert accuracy["crop"] >= accuracy["scene"] + 0.4, accuracy


def test_vprc_is_deterministic(tmp_path):
    arguments = dict(num_instances=3, gallery_views=1, queries_per_instance=2, image_size=64)
    first = synthetic.write_vprc_dataset(tmp_path / "a", seed=7, **arguments)
    again = synthetic.write_vprc_dataset(tmp_path / "b", seed=7, **arguments)
    other = synthetic.write_vprc_dataset(tmp_path / "c", seed=8, **arguments)
    files = all_files(first)
    assert files == all_files(again) == all_files(other)
    match, mismatch, _ = filecmp.cmpfiles(first, again, files, shallow=False)
    assert match == files and not mismatch
    _, changed, _ = filecmp.cmpfiles(first, other, files, shallow=False)
    images = [f for f in files if f.endswith(".jpg")]
    assert set(images) <= set(changed), "another seed must change every image"


def test_single_instance_and_no_queries(tmp_path):
    root = synthetic.write_vprc_dataset(tmp_path / "one", num_instances=1, gallery_views=1, queries_per_instance=1,
                                        image_size=64)
    queries = read_csv(os.path.join(root, "queries.csv"))
    assert len(queries) == 2  # a scene with no distractor products still has its target
    x, y, w, h = (int(cell) for cell in queries[1][2:])
    assert w > 0 and h > 0
    root = synthetic.write_vprc_dataset(tmp_path / "none", num_instances=2, queries_per_instance=0, image_size=64)
    assert read_csv(os.path.join(root, "queries.csv")) == [["img_path", "product_id", "bbox_x", "bbox_y", "bbox_w",
                                                            "bbox_h"]]


@pytest.mark.parametrize("function, argument, value, error", [
    (synthetic.write_folder_dataset, "num_instances", 0, ValueError),
    (synthetic.write_folder_dataset, "views_per_instance", 0, ValueError),
    (synthetic.write_folder_dataset, "image_size", 8, ValueError),
    (synthetic.write_folder_dataset, "seed", -1, ValueError),
    (synthetic.write_folder_dataset, "num_instances", 2.5, TypeError),
    (synthetic.write_vprc_dataset, "gallery_views", 0, ValueError),
    (synthetic.write_vprc_dataset, "queries_per_instance", -1, ValueError),
    (synthetic.write_vprc_dataset, "image_size", "256", TypeError),
])
def test_bad_arguments_name_the_argument_and_value(tmp_path, function, argument, value, error):
    with pytest.raises(error, match=argument) as raised:
        function(tmp_path, **{argument: value})
    assert repr(value) in str(raised.value) or str(value) in str(raised.value)
    assert not os.listdir(tmp_path), "nothing is written before the arguments are checked"
