"""Dataset loaders on small trees written in each real format, and broken ones."""

import os

import numpy as np
import pytest
from PIL import Image

from perception_retrieval import datasets
from perception_retrieval.datasets import DatasetError, ImageRef


def write_image(path, size=(40, 30), seed=0, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)


def write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as out:
        out.write(text)


# --- Stanford Online Products ------------------------------------------------

def make_sop(root, rows=((1, 11, 1, "bicycle_final/a_0.JPG"), (2, 11, 1, "bicycle_final/a_1.JPG"),
                         (3, 12, 1, "bicycle_final/b_0.JPG"), (4, 13, 2, "chair_final/c_0.JPG"),
                         (5, 13, 2, "chair_final/c_1.JPG"), (6, 13, 2, "chair_final/c_2.JPG"))):
    lines = ["image_id class_id super_class_id path"] + [" ".join(map(str, row)) for row in rows]
    write_text(os.path.join(root, "Ebay_test.txt"), "\n".join(lines) + "\n")
    for i, row in enumerate(rows):
        write_image(os.path.join(root, row[3]), seed=i, fmt="JPEG")
    return root


def test_sop_is_all_vs_all_with_class_ids(tmp_path):
    dataset = datasets.load_sop(make_sop(str(tmp_path)))
    assert dataset.format == "sop" and dataset.all_vs_all
    assert dataset.instance_ids == ["11", "11", "12", "13", "13", "13"]
    assert dataset.images[0] == ImageRef(os.path.join(str(tmp_path), "bicycle_final", "a_0.JPG"))
    assert dataset.query_self_indices.tolist() == [0, 1, 2, 3, 4, 5]
    # Class 12 has one image: its query is lone, reported and counted.
    assert dataset.lone_queries() == [2]
    assert "1 lone queries" in dataset.summary() and "instances 12" in dataset.summary()


def test_sop_reports_every_missing_image_and_duplicate_before_encoding(tmp_path):
    root = make_sop(str(tmp_path))
    os.remove(os.path.join(root, "chair_final", "c_1.JPG"))
    os.remove(os.path.join(root, "bicycle_final", "b_0.JPG"))
    with open(os.path.join(root, "Ebay_test.txt"), "a") as out:
        out.write("7 13 2 chair_final/c_0.JPG\n")
    with pytest.raises(DatasetError) as caught:
        datasets.load_sop(root)
    message = str(caught.value)
    assert "2 missing images" in message
    assert "line 4: bicycle_final/b_0.JPG (missing)" in message and "line 6: chair_final/c_1.JPG" in message
    assert "1 duplicate paths: line 8 repeats chair_final/c_0.JPG (line 5)" in message
    assert caught.value.dataset == "SOP"


def test_sop_bad_header_names_the_expected_columns(tmp_path):
    write_text(str(tmp_path / "Ebay_test.txt"), "id class path\n1 2 x.jpg\n")
    with pytest.raises(DatasetError, match=r"lacks image_id, class_id, super_class_id; expected the columns "
                                           r"image_id class_id super_class_id path"):
        datasets.load_sop(str(tmp_path))


def test_missing_listing_file_says_what_was_expected(tmp_path):
    with pytest.raises(DatasetError, match=r"Ebay_test.txt not found \(there is nothing at"):
        datasets.load_sop(str(tmp_path))
    with pytest.raises(DatasetError, match=r"test_kaggletest.csv not found"):
        datasets.load_products10k(str(tmp_path))


# --- Products-10K ------------------------------------------------------------

def make_products10k(root, rows=(("0.jpg", 5, "Public"), ("1.jpg", 5, "Private"), ("2.jpg", 7, "Public"),
                                 ("3.jpg", 7, "Public"), ("4.jpg", 9, "Private"))):
    write_text(os.path.join(root, "test_kaggletest.csv"),
               "name,class,usage\n" + "".join(f"{n},{c},{u}\n" for n, c, u in rows))
    for i, (name, _, _) in enumerate(rows):
        write_image(os.path.join(root, "test", name), seed=10 + i, fmt="JPEG")
    return root


def test_products10k_is_all_vs_all_over_the_test_set(tmp_path):
    dataset = datasets.load_products10k(make_products10k(str(tmp_path)))
    assert dataset.all_vs_all and len(dataset.images) == 5
    assert dataset.images[2].path == os.path.join(str(tmp_path), "test", "2.jpg")
    assert dataset.instance_ids == ["5", "5", "7", "7", "9"]
    assert dataset.lone_queries() == [4]
    assert "no retrieval split" in dataset.protocol


def test_products10k_bad_header_and_short_rows(tmp_path):
    write_text(str(tmp_path / "test_kaggletest.csv"), "file,label\n0.jpg,1\n")
    with pytest.raises(DatasetError, match=r"header 'file,label', which lacks name, class"):
        datasets.load_products10k(str(tmp_path))
    root = make_products10k(str(tmp_path / "b"))
    with open(os.path.join(root, "test_kaggletest.csv"), "a") as out:
        out.write("9.jpg\n")
    with pytest.raises(DatasetError, match=r"line 7 has 1 fields, the header has 3"):
        datasets.load_products10k(root)


# --- VPRC 2023 ---------------------------------------------------------------

def make_vprc(root, boxes=((2, 3, 20, 15), (0, 0, 40, 30), (5, 5, 10, 10))):
    write_text(os.path.join(root, "gallery.csv"), "seller_img_id,img_path,product_id\n"
               "100,gallery/a.jpg,p1\n101,gallery/b.jpg,p1\n102,gallery/c.jpg,p2\n")
    for i, name in enumerate("abc"):
        write_image(os.path.join(root, "gallery", f"{name}.jpg"), seed=20 + i, fmt="JPEG")
    lines = ["img_path,product_id,bbox_x,bbox_y,bbox_w,bbox_h"]
    for i, (box, product) in enumerate(zip(boxes, ("p1", "p2", "p3"))):
        lines.append(f"queries/q{i}.jpg,{product}," + ",".join(map(str, box)))
        write_image(os.path.join(root, "queries", f"q{i}.jpg"), size=(40, 30), seed=30 + i, fmt="JPEG")
    write_text(os.path.join(root, "queries.csv"), "\n".join(lines) + "\n")
    return root


def test_vprc_crops_queries_and_keeps_sets_apart(tmp_path):
    dataset = datasets.load_vprc(make_vprc(str(tmp_path)))
    assert not dataset.all_vs_all
    assert [dataset.images[i].crop for i in dataset.query_images] == [(2, 3, 20, 15), (0, 0, 40, 30), (5, 5, 10, 10)]
    assert all(dataset.images[i].crop is None for i in dataset.gallery_images)
    assert dataset.query_self_indices.tolist() == [-1, -1, -1]
    assert [dataset.instance_ids[i] for i in dataset.gallery_images] == ["p1", "p1", "p2"]
    assert dataset.lone_queries() == [2]  # p3 has no gallery image


def test_vprc_bad_boxes_are_reported_with_their_line(tmp_path):
    root = make_vprc(str(tmp_path), boxes=((2, 3, 0, 15), (0, "x", 40, 30), (50, 40, 5, 5)))
    with pytest.raises(DatasetError) as caught:
        datasets.load_vprc(root)
    message = str(caught.value)
    assert "queries.csv line 2: box 2,3,0,15 has a width or height <= 0" in message
    assert "queries.csv line 3: box 0,x,40,30 is not four numbers" in message
    # The third box is fine syntactically; once the others are fixed it is checked against the image.
    root = make_vprc(str(tmp_path / "b"), boxes=((2, 3, 5, 5), (0, 0, 40, 30), (50, 40, 5, 5)))
    with pytest.raises(DatasetError, match=r"boxes outside their image.*queries.csv line 4: queries/q2.jpg: "
                                           r"box 50,40,5,5 vs image 40x30"):
        datasets.load_vprc(root)


def test_vprc_overhanging_box_is_clipped_and_noted(tmp_path):
    dataset = datasets.load_vprc(make_vprc(str(tmp_path), boxes=((30, 20, 20, 20), (0, 0, 40, 30), (5, 5, 10, 10))))
    assert dataset.images[dataset.query_images[0]].crop == (30, 20, 10, 10)
    assert any("1 crop boxes extend past their image and were clipped" in note for note in dataset.notes)


def test_vprc_missing_query_image_and_bad_header(tmp_path):
    root = make_vprc(str(tmp_path))
    os.remove(os.path.join(root, "queries", "q1.jpg"))
    with pytest.raises(DatasetError, match=r"1 missing images: queries.csv line 3: queries/q1.jpg \(missing\)"):
        datasets.load_vprc(root)
    write_text(os.path.join(root, "queries.csv"), "img_path,product_id,x,y,w,h\n")
    with pytest.raises(DatasetError, match=r"queries.csv has header .* lacks bbox_x, bbox_y, bbox_w, bbox_h"):
        datasets.load_vprc(root)


# --- manifest and folders ----------------------------------------------------

def test_manifest_roles_and_self_exclusion_of_role_both(tmp_path):
    for i in range(5):
        write_image(str(tmp_path / "img" / f"{i}.png"), seed=40 + i)
    write_text(str(tmp_path / "ikea.csv"), "path,instance_id,role\n"
               "img/0.png,chair,both\nimg/1.png,chair,gallery\nimg/2.png,chair,query\n"
               "img/3.png,lamp,both\nimg/4.png,table,gallery\n")
    dataset = datasets.load_manifest(str(tmp_path / "ikea.csv"))
    assert dataset.name == "ikea"
    assert dataset.query_images.tolist() == [0, 2, 3]
    assert dataset.gallery_images.tolist() == [0, 1, 3, 4]
    assert dataset.query_self_indices.tolist() == [0, -1, 2]
    # lamp's only image is the query itself: lone. chair's role=both query still has image 1.
    assert dataset.lone_queries() == [2]
    assert "2 role=both images never retrieve themselves" in dataset.protocol


def test_manifest_errors_are_collected(tmp_path):
    write_image(str(tmp_path / "a.png"))
    write_text(str(tmp_path / "m.csv"), "path,instance_id,role,bbox_x,bbox_y,bbox_w,bbox_h\n"
               "a.png,x,both,,,,\n"
               "a.png,x,gallery,,,,\n"
               "b.png,y,query,,,,\n"
               "a.png,z,probe,,,,\n"
               "a.png,x,query,1,1,-4,2\n")
    with pytest.raises(DatasetError) as caught:
        datasets.load_manifest(str(tmp_path / "m.csv"))
    message = str(caught.value)
    assert "line 3 repeats a.png (line 2)" in message and "role=both" in message
    assert "line 4: b.png (missing)" in message
    assert "line 5: role 'probe' (use query, gallery or both)" in message
    assert "line 6: box 1,1,-4,2 has a width or height <= 0" in message


def test_manifest_header_must_have_the_three_columns(tmp_path):
    write_text(str(tmp_path / "m.csv"), "file,label\n")
    with pytest.raises(DatasetError, match="lacks path, instance_id, role"):
        datasets.load_manifest(str(tmp_path / "m.csv"))
    write_text(str(tmp_path / "empty.csv"), "")
    with pytest.raises(DatasetError, match="empty.csv is empty; expected a header path,instance_id,role"):
        datasets.load_manifest(str(tmp_path / "empty.csv"))


def test_folders_one_per_instance(tmp_path):
    for instance, count in (("drill", 3), ("saw", 2), ("tape", 1)):
        for i in range(count):
            write_image(str(tmp_path / "set" / instance / f"{i}.jpg"), seed=len(instance) + i, fmt="JPEG")
    write_text(str(tmp_path / "set" / "drill" / "notes.txt"), "not an image")
    write_text(str(tmp_path / "set" / "README"), "top-level file")
    dataset = datasets.load_folders(str(tmp_path / "set"))
    assert dataset.name == "set" and dataset.all_vs_all
    assert dataset.instance_ids == ["drill"] * 3 + ["saw"] * 2 + ["tape"]
    assert dataset.lone_queries() == [5]
    assert any("ignored 2 entries" in note and "drill/notes.txt" in note for note in dataset.notes)


HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)


def write_bytes(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as out:
        out.write(data)


def test_folders_reject_unreadable_formats_and_empty_trees(tmp_path):
    write_image(str(tmp_path / "set" / "a" / "0.png"))
    write_bytes(str(tmp_path / "set" / "a" / "1.heic"), HEIC)
    with pytest.raises(DatasetError, match=r"formats the decoder cannot read.*a/1.heic \(HEIC/HEIF\)"):
        datasets.load_folders(str(tmp_path / "set"))
    os.remove(tmp_path / "set" / "a" / "1.heic")
    write_bytes(str(tmp_path / "set" / "a" / "2.avif"), b"not an image at all")
    with pytest.raises(DatasetError, match=r"formats the decoder cannot read.*a/2.avif"):
        datasets.load_folders(str(tmp_path / "set"))
    os.makedirs(tmp_path / "empty" / "x")
    with pytest.raises(DatasetError, match="no image found"):
        datasets.load_folders(str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="is not a folder"):
        datasets.load_folders(str(tmp_path / "nope"))


def test_formats_are_told_by_contents_not_extensions(tmp_path):
    # A JPEG named .png, a WebP named .jpg, a TIFF: read. A HEIC photo named .jpg: found before encoding.
    write_image(str(tmp_path / "set" / "a" / "0.png"), fmt="JPEG")
    write_image(str(tmp_path / "set" / "a" / "1.jpg"), fmt="WEBP", seed=1)
    write_image(str(tmp_path / "set" / "b" / "2.tif"), fmt="TIFF", seed=2)
    write_image(str(tmp_path / "set" / "b" / "3.heic"), fmt="PNG", seed=3)  # readable contents, odd name: fine
    dataset = datasets.load_folders(str(tmp_path / "set"))
    assert len(dataset.images) == 4
    write_bytes(str(tmp_path / "set" / "b" / "4.jpg"), HEIC)
    with pytest.raises(DatasetError, match=r"formats the decoder cannot read.*b/4.jpg \(HEIC/HEIF\)"):
        datasets.load_folders(str(tmp_path / "set"))
    # Manifests too, and box checks read sizes with the decoder's header reader.
    write_image(str(tmp_path / "m" / "q.png"), size=(40, 30), fmt="WEBP")
    write_bytes(str(tmp_path / "m" / "g.jpg"), HEIC)
    write_text(str(tmp_path / "m" / "m.csv"), "path,instance_id,role,bbox_x,bbox_y,bbox_w,bbox_h\n"
                                                "q.png,a,query,30,20,20,20\ng.jpg,a,gallery,,,,\n")
    with pytest.raises(DatasetError) as raised:
        datasets.load_manifest(str(tmp_path / "m" / "m.csv"))
    assert "g.jpg (HEIC/HEIF)" in str(raised.value)
    os.remove(tmp_path / "m" / "g.jpg")
    write_image(str(tmp_path / "m" / "g.jpg"), fmt="PNG")
    dataset = datasets.load_manifest(str(tmp_path / "m" / "m.csv"))
    assert dataset.images[0].crop == (30, 20, 10, 10)  # clipped to the WebP's 40 x 30 pixels
    write_bytes(str(tmp_path / "m" / "q.png"), b"\x89PNG\r\n\x1a\n\x00\x00")  # a header cut short
    with pytest.raises(DatasetError, match=r"unreadable images.*q.png.*truncated PNG data"):
        datasets.load_manifest(str(tmp_path / "m" / "m.csv"))


def test_specs(tmp_path):
    os.makedirs(tmp_path / "hornbach")
    assert datasets.parse_spec("SOP=sop:/data/sop") == ("SOP", "sop", "/data/sop")
    assert datasets.parse_spec("VPRC 2023=vprc:/d/v:2023") == ("VPRC 2023", "vprc", "/d/v:2023")
    assert datasets.parse_spec("/x/ikea.csv") == ("ikea", "manifest", "/x/ikea.csv")
    assert datasets.parse_spec(str(tmp_path / "hornbach")) == ("hornbach", "folders", str(tmp_path / "hornbach"))
    with pytest.raises(ValueError, match="say its format"):
        datasets.parse_spec("x=/does/not/exist")
    with pytest.raises(ValueError, match="unknown dataset format 'coco'"):
        datasets.load("coco", str(tmp_path))
