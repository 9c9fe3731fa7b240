"""Retrieval datasets: which images are queries, which form the gallery, who matches whom.

A dataset is named on the command line as ``NAME=FORMAT:PATH``:

    sop          Stanford Online Products. PATH: the folder holding Ebay_test.txt
                 (``image_id class_id super_class_id path``); every test image
                 queries all the others (all-vs-all, self excluded).
    products10k  Products-10K. PATH: the folder holding test_kaggletest.csv
                 (``name,class,usage``) and test/. The dataset defines no
                 retrieval split; our protocol is all-vs-all over the whole test
                 set with self-exclusion (the ``usage`` column is not used).
    vprc         VPRC 2023. PATH: the folder holding gallery.csv
                 (``seller_img_id,img_path,product_id``) and queries.csv
                 (``img_path,product_id,bbox_x,bbox_y,bbox_w,bbox_h``); each query
                 image is cropped to its box; queries and gallery are separate.
    manifest     Any private set. PATH: a CSV with columns ``path,instance_id,role``
                 (role = query, gallery or both; paths relative to the CSV's folder)
                 and optional ``bbox_x,bbox_y,bbox_w,bbox_h`` to crop an image.
                 A role=both image queries the gallery without retrieving itself.
    folders      Any private set. PATH: one sub-folder per instance holding its
                 images; all-vs-all with self-exclusion, like SOP.

Every loader checks its files before anything is encoded and raises
DatasetError listing all problems at once (missing images, duplicate paths,
malformed rows, bad boxes). Lone queries (no other image of their instance in
the gallery) are not an error: they are counted, reported and left out of the
scores, as the protocol says.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import errors as _errors

FORMATS = ("sop", "products10k", "vprc", "manifest", "folders")

# Which files of an instance folder are images, by extension: the formats the
# decoder reads, and ones it cannot that a user may well have in a product
# folder. Whether a file can be read is decided by its contents (the decoder's
# own format sniffing), never by its extension: a JPEG named .png is fine, a
# HEIC photo named .jpg is reported before encoding starts.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".tga",
                    ".ppm", ".pgm", ".pnm", ".pbm", ".psd")
UNSUPPORTED_IMAGE_EXTENSIONS = (".heic", ".heif", ".avif", ".jxl")
_UNREADABLE = "images in formats the decoder cannot read (convert them to PNG or JPEG)"

_MAX_LISTED = 10  # problems of one kind listed in full; the rest are counted


class DatasetError(ValueError):
    """A dataset's files are not usable; ``problems`` lists every problem found."""

    def __init__(self, name: str, where: str, problems: Sequence[str]):
        self.dataset = name
        self.problems = list(problems)
        super().__init__(f"dataset {name!r} ({where}): " + "; ".join(self.problems))


@dataclass(frozen=True)
class ImageRef:
    """One image to encode: an absolute file path and an optional crop box
    (x, y, width, height in pixels of the decoded image)."""

    path: str
    crop: Optional[Tuple[int, int, int, int]] = None

    def __str__(self) -> str:
        return self.path if self.crop is None else f"{self.path}[crop {','.join(map(str, self.crop))}]"


@dataclass
class Dataset:
    """Images, their instance ids, and which of them are queries and gallery.

    images:         every distinct image once (each is encoded once)
    instance_ids:   one label per image (strings)
    query_images:   int64 indices into images, one per query, in query order
    gallery_images: int64 indices into images, one per gallery item
    """

    name: str
    format: str
    root: str
    images: List[ImageRef]
    instance_ids: List[str]
    query_images: np.ndarray
    gallery_images: np.ndarray
    protocol: str
    notes: List[str] = field(default_factory=list)

    @property
    def all_vs_all(self) -> bool:
        """Every image queries all the others (the query set is the gallery)."""
        return np.array_equal(self.query_images, self.gallery_images)

    @property
    def query_self_indices(self) -> np.ndarray:
        """For each query, the gallery position of the same image (which it must
        not retrieve), or -1 when the query image is not in the gallery."""
        position = np.full(len(self.images), -1, dtype=np.int64)
        position[self.gallery_images] = np.arange(len(self.gallery_images), dtype=np.int64)
        return position[self.query_images]

    def instance_codes(self) -> np.ndarray:
        """Instance ids as int64 codes (equal labels, equal codes), one per image."""
        _, codes = np.unique(np.asarray(self.instance_ids, dtype=object).astype(str), return_inverse=True)
        return codes.astype(np.int64).reshape(-1)

    def lone_queries(self) -> List[int]:
        """Query positions whose instance has no other image in the gallery."""
        codes = self.instance_codes()
        gallery_count = np.bincount(codes[self.gallery_images], minlength=int(codes.max()) + 1)
        relevant = gallery_count[codes[self.query_images]] - (self.query_self_indices >= 0)
        return np.flatnonzero(relevant <= 0).tolist()

    def summary(self) -> str:
        """A few lines for the log: sizes, protocol, lone queries, notes."""
        num_instances = len(set(self.instance_ids))
        lines = [f"{self.name} ({self.format}, {self.root}): {len(self.query_images)} queries, "
                 f"{len(self.gallery_images)} gallery images, {num_instances} instances; {self.protocol}"]
        lone = self.lone_queries()
        if lone:
            labels = sorted({self.instance_ids[self.query_images[q]] for q in lone})
            shown = ", ".join(labels[:_MAX_LISTED]) + (", ..." if len(labels) > _MAX_LISTED else "")
            lines.append(f"  {len(lone)} lone queries (no other image of their instance in the gallery) will be "
                         f"left out of the scores and counted: instances {shown}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


# --------------------------------------------------------------------------
# Parsing helpers shared by the loaders.

class _Problems:
    """Collects problems by kind, so a broken dataset is reported in one go."""

    def __init__(self):
        self._kinds: Dict[str, List[str]] = {}

    def add(self, kind: str, detail: str) -> None:
        self._kinds.setdefault(kind, []).append(detail)

    def __bool__(self) -> bool:
        return bool(self._kinds)

    def raise_if_any(self, name: str, where: str) -> None:
        if not self._kinds:
            return
        messages = []
        for kind, details in self._kinds.items():
            listed = ", ".join(details[:_MAX_LISTED])
            more = f" and {len(details) - _MAX_LISTED} more" if len(details) > _MAX_LISTED else ""
            messages.append(f"{len(details)} {kind}: {listed}{more}")
        raise DatasetError(name, where, messages)


def _require_file(name: str, path: str, what: str) -> None:
    if not os.path.isfile(path):
        found = "a folder" if os.path.isdir(path) else "nothing"
        raise DatasetError(name, path, [f"{what} not found (there is {found} at {path})"])


def _read_csv(name: str, path: str, required: Sequence[str], optional: Sequence[str] = (),
              delimiter: str = ",") -> List[Tuple[int, Dict[str, str]]]:
    """Rows of a CSV with a header, as (line number, {column: value}). The header
    must hold every required column; unknown extra columns are allowed."""
    _require_file(name, path, os.path.basename(path))
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            if delimiter == " ":
                reader = ([cell for cell in line.split()] for line in handle)
            else:
                reader = csv.reader(handle, delimiter=delimiter)
            try:
                header = [cell.strip() for cell in next(reader)]
            except StopIteration:
                raise DatasetError(name, path, [f"{os.path.basename(path)} is empty; expected a header "
                                                f"{delimiter.join(required)}"]) from None
            missing = [column for column in required if column not in header]
            if missing:
                raise DatasetError(name, path, [
                    f"{os.path.basename(path)} has header {delimiter.join(header) or '(empty)'!r}, which lacks "
                    f"{', '.join(missing)}; expected the columns {delimiter.join(required)}"
                    + (f" (optional: {', '.join(optional)})" if optional else "")])
            rows = []
            for line_number, cells in enumerate(reader, start=2):
                if not cells or all(not cell.strip() for cell in cells):
                    continue
                if len(cells) != len(header):
                    rows.append((line_number, {"__error__": f"line {line_number} has {len(cells)} fields, "
                                                             f"the header has {len(header)}"}))
                    continue
                rows.append((line_number, {column: cell.strip() for column, cell in zip(header, cells)}))
            return rows
    except UnicodeDecodeError as error:
        raise DatasetError(name, path, [f"{os.path.basename(path)} is not UTF-8 text ({error})"]) from None


def _image_size(path: str) -> Tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels: the
    size the decoder will find (PIL's Image.size)."""
    from . import image

    _, width, height = image.info(path)
    return width, height


def _unreadable_format(path: str) -> Optional[str]:
    """The name of the format of `path`'s contents when it is one the decoder
    does not read (e.g. "HEIC/HEIF"), else None. Unrecognised or unreadable
    contents are left to the decoder, which names the problem when encoding."""
    from . import image

    try:
        format = image.sniff(path)
    except OSError:
        return None
    return format if format is not None and not image.is_supported(format) else None


def _parse_box(cells: Dict[str, str], columns: Sequence[str]) -> Tuple[Optional[Tuple[int, int, int, int]], str]:
    """(box, problem): a crop box from four columns; all blank means no box."""
    values = [cells.get(column, "") for column in columns]
    if all(value == "" for value in values):
        return None, ""
    try:
        numbers = [float(value) for value in values]
    except ValueError:
        return None, f"box {','.join(values)} is not four numbers"
    if any(not np.isfinite(v) for v in numbers):
        return None, f"box {','.join(values)} is not finite"
    x, y, w, h = (int(round(v)) for v in numbers)
    if w <= 0 or h <= 0:
        return None, f"box {','.join(values)} has a width or height <= 0"
    if x < 0 or y < 0:
        return None, f"box {','.join(values)} starts at a negative coordinate"
    return (x, y, w, h), ""


def _check_boxes(images: List[ImageRef], problems: _Problems, where: Dict[int, str],
                 notes: List[str]) -> List[ImageRef]:
    """Checks each crop box against its image's size (header only). A box that
    overhangs the image is clipped and counted; one entirely outside is an error."""
    checked, clipped = [], 0
    for index, image in enumerate(images):
        if image.crop is None or not os.path.isfile(image.path):
            checked.append(image)
            continue
        try:
            width, height = _image_size(image.path)
        except (_errors.Error, OSError) as error:
            problems.add("unreadable images", f"{where.get(index, image.path)} ({error})")
            checked.append(image)
            continue
        x, y, w, h = image.crop
        right, bottom = min(x + w, width), min(y + h, height)
        if x >= width or y >= height or right <= x or bottom <= y:
            problems.add("boxes outside their image",
                         f"{where.get(index, image.path)}: box {x},{y},{w},{h} vs image {width}x{height}")
            checked.append(image)
            continue
        if (right - x, bottom - y) != (w, h):
            clipped += 1
        checked.append(ImageRef(image.path, (x, y, right - x, bottom - y)))
    if clipped:
        notes.append(f"{clipped} crop boxes extend past their image and were clipped to it")
    return checked


def _resolve(root: str, relative: str) -> str:
    return os.path.normpath(os.path.join(root, relative))


def _is_readable_format(path: str) -> bool:
    """Whether `path`'s contents are in a format the decoder reads."""
    from . import image

    try:
        format = image.sniff(path)
    except OSError:
        return False
    return format is not None and image.is_supported(format)


def _check_files(images: Sequence[ImageRef], problems: _Problems, where: Dict[int, str]) -> None:
    for index, image in enumerate(images):
        if not os.path.isfile(image.path):
            what = "a folder" if os.path.isdir(image.path) else "missing"
            problems.add("missing images", f"{where.get(index, image.path)} ({what})")
        else:
            format = _unreadable_format(image.path)
            if format is not None:
                problems.add(_UNREADABLE, f"{where.get(index, image.path)} ({format})")


def _all_vs_all(name: str, fmt: str, root: str, images: List[ImageRef], labels: List[str],
                protocol: str, notes: Optional[List[str]] = None) -> Dataset:
    everything = np.arange(len(images), dtype=np.int64)
    return Dataset(name, fmt, root, images, labels, everything, everything.copy(), protocol, notes or [])


_ALL_VS_ALL = "all-vs-all, each query's own image excluded by index"


# --------------------------------------------------------------------------
# Loaders.

def _load_listing(name: str, fmt: str, listing: str, rows, image_root: str, path_column: str, label_column: str,
                  check_row: Callable[[Dict[str, str]], str], protocol: str) -> Dataset:
    """An all-vs-all dataset from a listing of (image path, label) rows; check_row
    returns a problem with a row's cells, or ""."""
    problems, images, labels, where, first_line = _Problems(), [], [], {}, {}
    shown_root = os.path.relpath(image_root, os.path.dirname(listing))
    for line, cells in rows:
        problem = cells.get("__error__") or check_row(cells)
        if problem:
            problems.add("malformed lines", problem if "__error__" in cells else f"line {line}: {problem}")
            continue
        relative = cells[path_column]
        image = ImageRef(_resolve(image_root, relative))
        if image.path in first_line:
            problems.add("duplicate paths", f"line {line} repeats {relative} (line {first_line[image.path]})")
            continue
        first_line[image.path] = line
        where[len(images)] = f"line {line}: {os.path.normpath(os.path.join(shown_root, relative))}"
        images.append(image)
        labels.append(cells[label_column])
    if not images and not problems:
        problems.add("empty listings", f"{listing} lists no image")
    _check_files(images, problems, where)
    problems.raise_if_any(name, listing)
    return _all_vs_all(name, fmt, os.path.dirname(listing), images, labels, protocol)


def _listing_path(path: str, file_name: str) -> str:
    listing = os.path.abspath(path)
    return os.path.join(listing, file_name) if os.path.isdir(listing) else listing


def load_sop(path: str, name: str = "SOP") -> Dataset:
    """Stanford Online Products test split (Ebay_test.txt in ``path``)."""
    listing = _listing_path(path, "Ebay_test.txt")
    rows = _read_csv(name, listing, ("image_id", "class_id", "super_class_id", "path"), delimiter=" ")

    def check(cells):
        if not cells["class_id"].lstrip("-").isdigit():
            return f"class_id {cells['class_id']!r} is not an integer"
        return ""

    return _load_listing(name, "sop", listing, rows, os.path.dirname(listing), "path", "class_id", check, _ALL_VS_ALL)


def load_products10k(path: str, name: str = "Products-10K") -> Dataset:
    """Products-10K test set (test_kaggletest.csv and test/ in ``path``)."""
    listing = _listing_path(path, "test_kaggletest.csv")
    rows = _read_csv(name, listing, ("name", "class"), optional=("usage",))
    return _load_listing(name, "products10k", listing, rows, os.path.join(os.path.dirname(listing), "test"),
                         "name", "class", lambda cells: "" if cells["name"] and cells["class"] else
                         "empty name or class",
                         _ALL_VS_ALL + " (our protocol: the dataset defines no retrieval split)")


def load_vprc(path: str, name: str = "VPRC 2023") -> Dataset:
    """VPRC 2023 (gallery.csv and queries.csv in ``path``; queries cropped to their box)."""
    root = os.path.abspath(path)
    gallery_csv, queries_csv = os.path.join(root, "gallery.csv"), os.path.join(root, "queries.csv")
    gallery_rows = _read_csv(name, gallery_csv, ("seller_img_id", "img_path", "product_id"))
    query_rows = _read_csv(name, queries_csv, ("img_path", "product_id", "bbox_x", "bbox_y", "bbox_w", "bbox_h"))
    problems, images, labels, where, notes = _Problems(), [], [], {}, []
    gallery, queries, seen = [], [], {}
    for table, rows, is_query in (("gallery.csv", gallery_rows, False), ("queries.csv", query_rows, True)):
        for line, cells in rows:
            if "__error__" in cells:
                problems.add("malformed lines", f"{table} {cells['__error__']}")
                continue
            if not cells["img_path"] or not cells["product_id"]:
                problems.add("malformed lines", f"{table} line {line}: empty img_path or product_id")
                continue
            crop = None
            if is_query:
                crop, problem = _parse_box(cells, ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
                if problem or crop is None:
                    problems.add("bad boxes", f"queries.csv line {line}: {problem or 'no box given'}")
                    continue
            image = ImageRef(_resolve(root, cells["img_path"]), crop)
            key = (table, image)
            if key in seen:
                problems.add("duplicate rows", f"{table} line {line} repeats {cells['img_path']} (line {seen[key]})")
                continue
            seen[key] = line
            where[len(images)] = f"{table} line {line}: {cells['img_path']}"
            (queries if is_query else gallery).append(len(images))
            images.append(image)
            labels.append(cells["product_id"])
    if not gallery and not problems:
        problems.add("empty listings", "gallery.csv lists no image")
    if not queries and not problems:
        problems.add("empty listings", "queries.csv lists no query")
    _check_files(images, problems, where)
    problems.raise_if_any(name, root)
    images = _check_boxes(images, problems, where, notes)
    problems.raise_if_any(name, root)
    return Dataset(name, "vprc", root, images, labels, np.asarray(queries, dtype=np.int64),
                   np.asarray(gallery, dtype=np.int64), "queries cropped to their box search a separate gallery",
                   notes)


def load_manifest(path: str, name: Optional[str] = None) -> Dataset:
    """A CSV manifest: path,instance_id,role (+ optional bbox_x,bbox_y,bbox_w,bbox_h)."""
    listing = os.path.abspath(path)
    if os.path.isdir(listing):
        listing = os.path.join(listing, "manifest.csv")
    name = name or os.path.splitext(os.path.basename(listing))[0]
    root = os.path.dirname(listing)
    box_columns = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")
    rows = _read_csv(name, listing, ("path", "instance_id", "role"), optional=box_columns)
    problems, images, labels, where, notes = _Problems(), [], [], {}, []
    queries, gallery, first_line = [], [], {}
    for line, cells in rows:
        if "__error__" in cells:
            problems.add("malformed lines", cells["__error__"])
            continue
        role = cells["role"].lower()
        if role not in ("query", "gallery", "both"):
            problems.add("bad roles", f"line {line}: role {cells['role']!r} (use query, gallery or both)")
            continue
        if not cells["path"] or not cells["instance_id"]:
            problems.add("malformed lines", f"line {line}: empty path or instance_id")
            continue
        crop, problem = _parse_box(cells, box_columns)
        if problem:
            problems.add("bad boxes", f"line {line}: {problem}")
            continue
        image = ImageRef(_resolve(root, cells["path"]), crop)
        if image in first_line:
            problems.add("duplicate paths", f"line {line} repeats {cells['path']} (line {first_line[image]}); "
                                            "give an image once, with role=both if it is query and gallery")
            continue
        first_line[image] = line
        where[len(images)] = f"line {line}: {cells['path']}"
        if role in ("query", "both"):
            queries.append(len(images))
        if role in ("gallery", "both"):
            gallery.append(len(images))
        images.append(image)
        labels.append(cells["instance_id"])
    if not problems:
        if not queries:
            problems.add("empty roles", "no row has role query or both")
        if not gallery:
            problems.add("empty roles", "no row has role gallery or both")
    _check_files(images, problems, where)
    problems.raise_if_any(name, listing)
    images = _check_boxes(images, problems, where, notes)
    problems.raise_if_any(name, listing)
    both = len(set(queries) & set(gallery))
    protocol = "queries search the gallery" + (f"; {both} role=both images never retrieve themselves" if both else "")
    return Dataset(name, "manifest", root, images, labels, np.asarray(queries, dtype=np.int64),
                   np.asarray(gallery, dtype=np.int64), protocol, notes)


def load_folders(path: str, name: Optional[str] = None) -> Dataset:
    """One sub-folder per instance; every image queries all the others."""
    root = os.path.abspath(path)
    name = name or os.path.basename(root.rstrip(os.sep))
    if not os.path.isdir(root):
        raise DatasetError(name, root, [f"{root} is not a folder (expected one sub-folder per instance)"])
    problems, images, labels, ignored = _Problems(), [], [], []
    for instance in sorted(os.listdir(root)):
        folder = os.path.join(root, instance)
        if not os.path.isdir(folder):
            if not instance.startswith("."):
                ignored.append(instance)
            continue
        for file_name in sorted(os.listdir(folder)):
            file_path = os.path.join(folder, file_name)
            lower = file_name.lower()
            if lower.endswith(IMAGE_EXTENSIONS + UNSUPPORTED_IMAGE_EXTENSIONS) and os.path.isfile(file_path):
                format = _unreadable_format(file_path)
                # By contents; a file named as an unreadable format must show it can be read.
                if format is not None or (lower.endswith(UNSUPPORTED_IMAGE_EXTENSIONS) and
                                          not _is_readable_format(file_path)):
                    problems.add(_UNREADABLE, os.path.join(instance, file_name) + (f" ({format})" if format else ""))
                else:
                    images.append(ImageRef(file_path))
                    labels.append(instance)
            elif not file_name.startswith("."):
                ignored.append(os.path.join(instance, file_name))
    if not images and not problems:
        problems.add("empty folders", f"no image found in the sub-folders of {root} "
                                      f"(extensions read: {' '.join(IMAGE_EXTENSIONS)})")
    problems.raise_if_any(name, root)
    notes = []
    if ignored:
        shown = ", ".join(ignored[:_MAX_LISTED]) + (", ..." if len(ignored) > _MAX_LISTED else "")
        notes.append(f"ignored {len(ignored)} entries that are not images in instance folders: {shown}")
    return _all_vs_all(name, "folders", root, images, labels, _ALL_VS_ALL, notes)


_LOADERS = {"sop": load_sop, "products10k": load_products10k, "vprc": load_vprc,
            "manifest": load_manifest, "folders": load_folders}


def load(fmt: str, path: str, name: Optional[str] = None) -> Dataset:
    """Loads and checks a dataset of a given format (see the module docstring)."""
    if fmt not in _LOADERS:
        raise ValueError(f"unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}")
    loader = _LOADERS[fmt]
    return loader(path, name) if name else loader(path)


def parse_spec(spec: str) -> Tuple[str, str, str]:
    """``NAME=FORMAT:PATH`` -> (name, format, path). NAME= may be left out (the
    folder or file name is used); FORMAT: may be left out for a .csv manifest
    or a folder of instance folders."""
    name, rest = (spec.split("=", 1) if "=" in spec else ("", spec))
    fmt, path = (rest.split(":", 1) if ":" in rest and rest.split(":", 1)[0] in FORMATS else ("", rest))
    if not path:
        raise ValueError(f"dataset {spec!r}: no path; write NAME=FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}")
    if not fmt:
        if path.lower().endswith(".csv"):
            fmt = "manifest"
        elif os.path.isdir(path):
            fmt = "folders"
        else:
            raise ValueError(f"dataset {spec!r}: say its format, NAME=FORMAT:PATH with FORMAT one of "
                             f"{', '.join(FORMATS)}")
    if not name:
        name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or path
    return name, fmt, path


def load_spec(spec: str) -> Dataset:
    name, fmt, path = parse_spec(spec)
    return load(fmt, path, name)


def check_unique_names(datasets: Iterable[Dataset]) -> None:
    seen = set()
    for dataset in datasets:
        if dataset.name in seen:
            raise ValueError(f"two datasets are named {dataset.name!r}; give each a NAME= of its own")
        seen.add(dataset.name)
