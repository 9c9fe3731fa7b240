"""Labelled, product-like synthetic images for the demo and the tests.

Each instance is a procedurally drawn "product" (a box, bottle, can, tool, bag or
tube with its own colours, pattern, label text and logo), fully determined by
``seed`` and the instance index. Views of one product vary the way photos do:
crops, small rotations, scale, brightness/contrast/saturation and the background
(plain, gradient, noise, texture), so two views of one product look alike and
two products differ. Nothing here is meant to look real; it only has to give a
retrieval model and the evaluation pipeline labelled data with a known answer.

Two layouts are written:

* :func:`write_folder_dataset` — one folder per instance (the "folder" format),
* :func:`write_vprc_dataset` — the VPRC 2023 layout: clean gallery shots plus
  cluttered shelf scenes as queries with the product's bounding box.

Determinism: every image draws from its own ``numpy.random.Generator`` seeded
with ``(seed, purpose, instance, view)``, so the bytes written depend only on
the arguments (and the Pillow/libjpeg build), never on call order.

Only numpy and Pillow are used; no torch and no compiled extension.
Thread-safety: the functions share no state; concurrent calls are safe when
they write to different roots.
"""

from __future__ import annotations

import csv
import os
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

__all__ = ["write_folder_dataset", "write_vprc_dataset", "vprc_product_id", "PRODUCT_KINDS"]

PRODUCT_KINDS = ("box", "bottle", "can", "tool", "bag", "tube")
JPEG_QUALITY = 90

# Seeds are (seed, purpose, instance, view); purposes keep the streams apart so
# that, e.g., adding gallery views never changes the queries.
_PRODUCT, _FOLDER_VIEW, _GALLERY_VIEW, _QUERY_SCENE = 0, 1, 2, 3

Colour = Tuple[int, int, int]


# --------------------------------------------------------------------------- helpers

def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _rng(seed: int, purpose: int, instance: int, view: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, purpose, instance, view])


def _hsv(hue: float, saturation: float, value: float) -> Colour:
    """HSV in [0, 1] to 8-bit RGB (colorsys, vectorless)."""
    i = int(hue * 6.0) % 6
    f = hue * 6.0 - int(hue * 6.0)
    p, q, t = value * (1 - saturation), value * (1 - saturation * f), value * (1 - saturation * (1 - f))
    r, g, b = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)][i]
    return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))


def _save(image: Image.Image, path: str) -> None:
    if path.endswith(".png"):
        image.save(path, format="PNG")
    else:
        image.save(path, format="JPEG", quality=JPEG_QUALITY)


# --------------------------------------------------------------------------- products

class _Product:
    """The drawing recipe of one instance (colours, shape, pattern, label)."""

    def __init__(self, seed: int, index: int):
        rng = _rng(seed, _PRODUCT, index)
        self.index = index
        # Kinds cycle so that small sets still contain every kind; the rest is random.
        self.kind = PRODUCT_KINDS[index % len(PRODUCT_KINDS)]
        # Hues are spread with the golden ratio so neighbouring instances differ in colour.
        hue = (rng.uniform(0, 1) + index * 0.618034) % 1.0
        self.body = _hsv(hue, rng.uniform(0.55, 0.95), rng.uniform(0.45, 0.95))
        self.accent = _hsv((hue + rng.uniform(0.25, 0.75)) % 1.0, rng.uniform(0.5, 1.0), rng.uniform(0.3, 0.95))
        self.label = _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.25), rng.uniform(0.85, 1.0))
        self.ink = _hsv(rng.uniform(0, 1), rng.uniform(0.5, 1.0), rng.uniform(0.05, 0.4))
        self.pattern = ("stripes_h", "stripes_v", "diagonal", "dots", "checker", "plain")[int(rng.integers(6))]
        self.pattern_period = float(rng.uniform(0.08, 0.2))
        self.logo = ("circle", "triangle", "star", "diamond")[int(rng.integers(4))]
        letters = rng.integers(0, 26, size=int(rng.integers(3, 7)))
        self.text = "".join(chr(ord("A") + int(c)) for c in letters)
        self.aspect = float(rng.uniform(0.45, 0.75)) if self.kind != "tool" else float(rng.uniform(0.55, 0.8))
        self._sprites: Dict[int, Image.Image] = {}

    def sprite(self, height: int) -> Image.Image:
        """The product as an RGBA image ``height`` pixels tall (transparent around it).
        Drawn once per size: views resize/rotate copies of it."""
        if height not in self._sprites:
            self._sprites[height] = self._draw(height)
        return self._sprites[height]

    # The outline of each kind, as a mask; coordinates are fractions of (w, h).
    def _shape(self, w: int, h: int) -> Image.Image:
        mask = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(mask)

        def point(x, y):
            return (int(x * (w - 1)), int(y * (h - 1)))

        def box(x0, y0, x1, y1):
            return [*point(x0, y0), *point(x1, y1)]

        radius = max(1, w // 12)
        if self.kind == "box":
            draw.rectangle(box(0.0, 0.0, 1.0, 1.0), fill=255)
        elif self.kind == "bottle":
            draw.rounded_rectangle(box(0.0, 0.32, 1.0, 1.0), radius=radius * 2, fill=255)
            draw.polygon([point(0.0, 0.36), point(0.32, 0.14),
                          point(0.68, 0.14), point(1.0, 0.36)], fill=255)
            draw.rectangle(box(0.32, 0.0, 0.68, 0.16), fill=255)
        elif self.kind == "can":
            draw.rectangle(box(0.0, 0.06, 1.0, 0.94), fill=255)
            draw.ellipse(box(0.0, 0.0, 1.0, 0.12), fill=255)
            draw.ellipse(box(0.0, 0.88, 1.0, 1.0), fill=255)
        elif self.kind == "tool":  # a hammer-like tool: broad head on a thick handle
            draw.rounded_rectangle(box(0.0, 0.0, 1.0, 0.34), radius=radius, fill=255)
            draw.rounded_rectangle(box(0.3, 0.25, 0.7, 1.0), radius=radius, fill=255)
        elif self.kind == "bag":
            draw.polygon([point(0.08, 0.22), point(0.92, 0.22),
                          point(1.0, 1.0), point(0.0, 1.0)], fill=255)
            draw.arc(box(0.25, 0.0, 0.75, 0.44), start=180, end=360, fill=255, width=max(2, w // 14))
        else:  # tube: tapered body with a cap
            draw.polygon([point(0.0, 0.0), point(1.0, 0.0),
                          point(0.78, 0.88), point(0.22, 0.88)], fill=255)
            draw.rectangle(box(0.36, 0.86, 0.64, 1.0), fill=255)
        return mask

    def _draw(self, height: int) -> Image.Image:
        h = max(24, height)
        w = max(12, int(round(h * self.aspect)))
        mask = self._shape(w, h)
        body = Image.new("RGB", (w, h), self.body)
        draw = ImageDraw.Draw(body)
        period = max(3, int(self.pattern_period * h))
        if self.pattern == "stripes_h":
            for y in range(0, h, period):
                draw.rectangle([0, y, w, y + period // 3], fill=self.accent)
        elif self.pattern == "stripes_v":
            for x in range(0, w, period):
                draw.rectangle([x, 0, x + period // 3, h], fill=self.accent)
        elif self.pattern == "diagonal":
            for x in range(-h, w, period):
                draw.line([(x, h), (x + h, 0)], fill=self.accent, width=max(1, period // 3))
        elif self.pattern == "dots":
            for y in range(period // 2, h, period):
                for x in range(period // 2, w, period):
                    r = max(1, period // 4)
                    draw.ellipse([x - r, y - r, x + r, y + r], fill=self.accent)
        elif self.pattern == "checker":
            for y in range(0, h, period):
                for x in range(0, w, period):
                    if (x // period + y // period) % 2:
                        draw.rectangle([x, y, x + period - 1, y + period - 1], fill=self.accent)

        # Parts that are not the body: a cap / a metal head in the accent colour.
        if self.kind == "bottle":
            draw.rectangle([0, 0, w, int(0.1 * h)], fill=self.accent)
        elif self.kind == "tool":
            draw.rectangle([0, 0, w, int(0.34 * h)], fill=(150, 155, 160))
        elif self.kind == "tube":
            draw.rectangle([0, int(0.86 * h), w, h], fill=self.accent)

        # The label: a light panel with the product's text and logo.
        top = {"box": 0.3, "bottle": 0.48, "can": 0.32, "tool": 0.5, "bag": 0.45, "tube": 0.25}[self.kind]
        left, right = {"tool": (0.33, 0.67), "tube": (0.18, 0.82)}.get(self.kind, (0.12, 0.88))
        x0, x1 = int(left * w), int(right * w)
        y0, y1 = int(top * h), int((top + 0.32) * h)
        draw.rectangle([x0, y0, x1, y1], fill=self.label, outline=self.ink, width=max(1, w // 60))
        text = _text_image(self.text, self.ink, self.label)
        text_h = max(4, int(0.35 * (y1 - y0)))
        text_w = max(4, min(x1 - x0 - 4, int(text.width * text_h / text.height)))
        body.paste(text.resize((text_w, text_h), Image.NEAREST), (x0 + (x1 - x0 - text_w) // 2, y0 + 2))
        cx, cy, r = (x0 + x1) // 2, y0 + int(0.72 * (y1 - y0)), max(2, int(0.18 * (y1 - y0)))
        _logo(draw, self.logo, cx, cy, r, self.accent)

        # Cylindrical products get side shading so they read as round.
        if self.kind in ("bottle", "can", "tube"):
            x = np.linspace(-1.0, 1.0, w, dtype=np.float32)
            shade = (0.72 + 0.28 * np.sqrt(np.clip(1.0 - x * x, 0.0, 1.0)))[None, :, None]
            body = Image.fromarray((np.asarray(body, dtype=np.float32) * shade).astype(np.uint8))
        sprite = body.convert("RGBA")
        sprite.putalpha(mask)
        return sprite


def _text_image(text: str, ink: Colour, paper: Colour) -> Image.Image:
    """The text in Pillow's built-in bitmap font (no font files needed), tightly cropped."""
    font = ImageFont.load_default()
    image = Image.new("RGB", (8 * len(text) + 8, 16), paper)
    ImageDraw.Draw(image).text((2, 2), text, fill=ink, font=font)
    difference = np.any(np.asarray(image) != np.array(paper, dtype=np.uint8), axis=2)
    ys, xs = np.nonzero(difference)
    if len(xs) == 0:
        return image
    return image.crop((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))


def _logo(draw: ImageDraw.ImageDraw, shape: str, cx: int, cy: int, r: int, colour: Colour) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    else:  # star
        angles = np.arange(10) * np.pi / 5 - np.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        draw.polygon([(cx + float(q * np.cos(a)), cy + float(q * np.sin(a))) for a, q in zip(angles, radii)],
                     fill=colour)


# --------------------------------------------------------------------------- backgrounds

def _muted(rng: np.random.Generator, low: float = 0.55, high: float = 0.95) -> Colour:
    # Backgrounds stay desaturated so the product, not the backdrop, carries the colour.
    return _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.2), rng.uniform(low, high))


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    kind = ("plain", "gradient", "noise", "texture")[int(rng.integers(4))]
    if kind == "plain":
        return Image.new("RGB", (width, height), _muted(rng))
    if kind == "gradient":
        a, b = np.array(_muted(rng), np.float32), np.array(_muted(rng), np.float32)
        t = np.linspace(0.0, 1.0, height if rng.uniform() < 0.5 else width, dtype=np.float32)
        if len(t) == height:
            ramp = np.broadcast_to(t[:, None, None], (height, width, 1))
        else:
            ramp = np.broadcast_to(t[None, :, None], (height, width, 1))
        return Image.fromarray((a + (b - a) * ramp).astype(np.uint8))
    if kind == "noise":
        base = np.array(_muted(rng), np.float32)
        coarse = rng.normal(0.0, 18.0, size=(max(2, height // 8), max(2, width // 8), 1)).astype(np.float32)
        fine = rng.normal(0.0, 6.0, size=(height, width, 1)).astype(np.float32)
        smooth = np.asarray(Image.fromarray(coarse[:, :, 0]).resize((width, height), Image.BILINEAR))[:, :, None]
        return Image.fromarray(np.clip(base + smooth + fine, 0, 255).astype(np.uint8))
    # texture: wood-like planks or tiles in two close muted tones
    a, b = _muted(rng), _muted(rng, 0.45, 0.85)
    image = Image.new("RGB", (width, height), a)
    draw = ImageDraw.Draw(image)
    step = int(rng.integers(10, 28))
    if rng.uniform() < 0.5:
        for y in range(0, height, step):
            draw.line([(0, y), (width, y)], fill=b, width=2)
    else:
        for y in range(0, height, step):
            for x in range(0, width, step):
                if (x // step + y // step) % 2:
                    draw.rectangle([x, y, x + step - 1, y + step - 1], fill=b)
    return image


# --------------------------------------------------------------------------- views

def _jitter(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.85, 1.15))
    return ImageEnhance.Color(image).enhance(rng.uniform(0.8, 1.2))


def _placed(product: _Product, rng: np.random.Generator, height: int, max_angle: float) -> Image.Image:
    """The product sprite at ``height`` pixels, rotated by a small random angle."""
    sprite = product.sprite(max(24, int(height)))
    angle = rng.uniform(-max_angle, max_angle)
    if abs(angle) > 0.5:
        sprite = sprite.rotate(angle, resample=Image.BICUBIC, expand=True)
    return sprite


def _product_view(product: _Product, rng: np.random.Generator, size: int, clean: bool) -> Image.Image:
    """One photo of the product. ``clean``: a centred studio shot on a light plain
    background (gallery); otherwise a casual photo (background, angle, scale, crop)."""
    if clean:
        canvas = Image.new("RGB", (size, size), _hsv(0.0, 0.0, rng.uniform(0.93, 1.0)))
        sprite = _placed(product, rng, size * rng.uniform(0.78, 0.86), 3.0)
    else:
        canvas = _background(rng, size, size)
        sprite = _placed(product, rng, size * rng.uniform(0.6, 0.9), 15.0)
    if sprite.width > size * 0.95:  # wide products (tools, rotated boxes) must still fit
        sprite = sprite.resize((int(size * 0.95), max(1, int(sprite.height * size * 0.95 / sprite.width))),
                               Image.BICUBIC)
    if clean:
        x, y = (size - sprite.width) // 2, (size - sprite.height) // 2
    else:
        x = int(rng.integers(0, max(1, size - sprite.width + 1)))
        y = int(rng.integers(0, max(1, size - sprite.height + 1)))
    canvas.paste(sprite, (x, y), sprite)
    if not clean:
        # A random crop (possibly cutting into the product) brought back to size: scale change.
        side = int(size * rng.uniform(0.78, 1.0))
        cx0 = int(rng.integers(0, size - side + 1))
        cy0 = int(rng.integers(0, size - side + 1))
        canvas = canvas.crop((cx0, cy0, cx0 + side, cy0 + side)).resize((size, size), Image.BICUBIC)
        canvas = _jitter(canvas, rng)
    return canvas


def _shelf_scene(products: List[_Product], target: int, rng: np.random.Generator,
                 size: int) -> Tuple[Image.Image, Tuple[int, int, int, int]]:
    """A shelf photo, ``2 * size`` x ``1.5 * size`` pixels: two shelves of products with
    ``products[target]`` standing in one slot, distractors in others. Returns the image and
    the target's bounding box ``(x, y, w, h)`` in integer pixels, inside the image."""
    width, height = 2 * size, (3 * size) // 2
    scene = _background(rng, width, height)
    draw = ImageDraw.Draw(scene)
    rows, slots = 2, 4
    row_height = height // rows
    slot_width = width // slots
    wood = _hsv(rng.uniform(0.05, 0.11), rng.uniform(0.4, 0.7), rng.uniform(0.35, 0.6))
    target_slot = int(rng.integers(rows * slots))
    others = [i for i in range(len(products)) if i != target]
    box = (0, 0, 1, 1)
    for slot in range(rows * slots):
        row, column = divmod(slot, slots)
        plank_top = (row + 1) * row_height - max(6, row_height // 12)
        if column == 0:
            draw.rectangle([0, plank_top, width, (row + 1) * row_height], fill=wood)
        if slot == target_slot:
            product = products[target]
        elif others and rng.uniform() < 0.8:
            product = products[others[int(rng.integers(len(others)))]]
        else:
            continue
        sprite = _placed(product, rng, row_height * rng.uniform(0.62, 0.8), 5.0)
        if sprite.width > slot_width * 0.9:
            fit = slot_width * 0.9 / sprite.width
            sprite = sprite.resize((int(slot_width * 0.9), max(1, int(sprite.height * fit))), Image.BICUBIC)
        lighting = rng.uniform(0.85, 1.15)
        rgb = ImageEnhance.Brightness(sprite.convert("RGB")).enhance(lighting)
        x = column * slot_width + int(rng.integers(0, slot_width - sprite.width + 1))
        y = max(0, plank_top - sprite.height)
        alpha = sprite.getchannel("A")
        scene.paste(rgb, (x, y), alpha)
        if slot == target_slot:
            left, top, right, bottom = alpha.getbbox() or (0, 0, sprite.width, sprite.height)
            x0, y0 = max(0, x + left), max(0, y + top)
            x1, y1 = min(width, x + right), min(height, y + bottom)
            box = (x0, y0, max(1, x1 - x0), max(1, y1 - y0))
    scene = _jitter(scene, rng)
    if rng.uniform() < 0.3:  # a slightly out-of-focus phone photo now and then
        scene = scene.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.2))))
    return scene, box


# --------------------------------------------------------------------------- writers

def _instance_name(product: _Product) -> str:
    return f"{product.index:03d}_{product.kind}"


def write_folder_dataset(root, num_instances: int = 12, views_per_instance: int = 4, image_size: int = 256,
                         seed: int = 0) -> str:
    """Write ``num_instances`` products with ``views_per_instance`` photos each as
    ``root/<instance>/<view>.jpg`` (about one view in five as ``.png``), instance
    folders named ``<index:03d>_<kind>`` (e.g. ``004_bag``). Images are
    ``image_size`` x ``image_size`` RGB. Existing files of the same names are
    overwritten; nothing else in ``root`` is touched. Returns ``root`` as a string.
    """
    num_instances = _check_int("num_instances", num_instances, 1)
    views_per_instance = _check_int("views_per_instance", views_per_instance, 1)
    image_size = _check_int("image_size", image_size, 32)
    seed = _check_int("seed", seed, 0)
    root = os.fspath(root)
    for index in range(num_instances):
        product = _Product(seed, index)
        folder = os.path.join(root, _instance_name(product))
        os.makedirs(folder, exist_ok=True)
        for view in range(views_per_instance):
            image = _product_view(product, _rng(seed, _FOLDER_VIEW, index, view), image_size, clean=False)
            extension = "png" if (index + view) % 5 == 4 else "jpg"
            _save(image, os.path.join(folder, f"{view:02d}.{extension}"))
    return root


def vprc_product_id(index: int) -> int:
    """The ``product_id`` written for instance ``index``: sparse, not the row number,
    so a loader that confuses the two fails the tests."""
    return 1000 + 7 * index


def write_vprc_dataset(root, num_instances: int = 10, gallery_views: int = 2, queries_per_instance: int = 2,
                       image_size: int = 256, seed: int = 0) -> str:
    """Write a dataset in the VPRC 2023 layout:

    * ``root/gallery.csv``: ``seller_img_id,img_path,product_id``; ``gallery_views``
      clean ``image_size``-pixel product shots per instance under ``root/gallery/``;
    * ``root/queries.csv``: ``img_path,product_id,bbox_x,bbox_y,bbox_w,bbox_h``;
      ``queries_per_instance`` shelf scenes per instance (``2 * image_size`` wide,
      ``1.5 * image_size`` high) under ``root/queries/``, the product at the bbox
      (integer pixels, inside the image) among distractors of other instances.

    ``img_path`` is relative to ``root``; ``seller_img_id`` counts gallery rows from 0;
    ``product_id`` is :func:`vprc_product_id` of the instance index. Returns ``root``.
    """
    num_instances = _check_int("num_instances", num_instances, 1)
    gallery_views = _check_int("gallery_views", gallery_views, 1)
    queries_per_instance = _check_int("queries_per_instance", queries_per_instance, 0)
    image_size = _check_int("image_size", image_size, 32)
    seed = _check_int("seed", seed, 0)
    root = os.fspath(root)
    os.makedirs(os.path.join(root, "gallery"), exist_ok=True)
    os.makedirs(os.path.join(root, "queries"), exist_ok=True)
    products = [_Product(seed, index) for index in range(num_instances)]

    gallery_rows = []
    for product in products:
        for view in range(gallery_views):
            image = _product_view(product, _rng(seed, _GALLERY_VIEW, product.index, view), image_size, clean=True)
            relative = f"gallery/{_instance_name(product)}_{view:02d}.jpg"
            _save(image, os.path.join(root, relative))
            gallery_rows.append([len(gallery_rows), relative, vprc_product_id(product.index)])

    query_rows = []
    for product in products:
        for view in range(queries_per_instance):
            scene, (x, y, w, h) = _shelf_scene(products, product.index,
                                               _rng(seed, _QUERY_SCENE, product.index, view), image_size)
            relative = f"queries/{_instance_name(product)}_{view:02d}.jpg"
            _save(scene, os.path.join(root, relative))
            query_rows.append([relative, vprc_product_id(product.index), x, y, w, h])

    _write_csv(os.path.join(root, "gallery.csv"), ["seller_img_id", "img_path", "product_id"], gallery_rows)
    _write_csv(os.path.join(root, "queries.csv"),
               ["img_path", "product_id", "bbox_x", "bbox_y", "bbox_w", "bbox_h"], query_rows)
    return root


def _write_csv(path: str, header: List[str], rows: List[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
