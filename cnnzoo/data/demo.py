"""A small, learnable, seeded 5-class image dataset for demos and tests.

The classes are shapes (circle, cross, square, star, triangle) drawn with
``PIL.ImageDraw`` near the centre, at a random offset, scale, rotation and colour over
a noisy, lightly cluttered background (mostly dark, with a light shape; sometimes the
reverse). The shapes are large and high-contrast so that a small CNN learns them from
a few hundred images in a few epochs on a CPU; the remaining variation (polarity,
outlines, blur, occlusion, noise) is there so that models of different capacity score
differently instead of all reaching 100%. The layout is the real dataset's:
``DEST/train/<class>/*.jpg`` and ``DEST/val/<class>/*.jpg`` (``val`` is the test set).

Every image has its own random stream derived from ``(seed, split, class, index)``,
so the output is byte-for-byte reproducible and does not depend on generation order.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cnnzoo.core.errors import CnnzooError
from cnnzoo.storage.local import atomic_directory

CLASSES = ("circle", "cross", "square", "star", "triangle")
_SPLITS = ("train", "val")
_JPEG_QUALITY = 90


def _regular_polygon(n: int, radius: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a regular ``n``-gon around the origin."""
    return [
        (
            radius * math.cos(angle + 2 * math.pi * k / n),
            radius * math.sin(angle + 2 * math.pi * k / n),
        )
        for k in range(n)
    ]


def _shape_points(
    name: str, radius: float, angle: float, rng: np.random.Generator
) -> list[tuple[float, float]]:
    """Polygon outline of shape ``name`` centred on the origin (circle excluded)."""
    if name == "square":
        return _regular_polygon(4, radius, angle)
    if name == "triangle":
        # Jitter the vertices a little so triangles are not all equilateral.
        pts = _regular_polygon(3, radius, angle)
        return [
            (x + rng.normal(0, radius * 0.08), y + rng.normal(0, radius * 0.08)) for x, y in pts
        ]
    if name == "star":
        inner = radius * rng.uniform(0.38, 0.55)
        pts = []
        for k in range(10):
            r = radius if k % 2 == 0 else inner
            a = angle + math.pi * k / 5
            pts.append((r * math.cos(a), r * math.sin(a)))
        return pts
    if name == "cross":
        w = radius * rng.uniform(0.28, 0.42)
        r = radius
        base = [
            (-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w),
            (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w),
        ]  # fmt: skip
        c, s = math.cos(angle), math.sin(angle)
        return [(x * c - y * s, x * s + y * c) for x, y in base]
    raise ValueError(name)


def _random_colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, ...]:
    return tuple(int(v) for v in rng.integers(low, high, size=3))


def _background(size: int, dark: bool, rng: np.random.Generator) -> Image.Image:
    """A smooth dark or light colour gradient plus noise plus clutter (lines, rings)."""
    low, high = (0, 110) if dark else (145, 255)
    c0 = rng.uniform(low, high, size=3)
    c1 = rng.uniform(low, high, size=3)
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)
    a = rng.uniform(0, 2 * math.pi)
    grad = np.cos(a) * t[None, :] + np.sin(a) * t[:, None]
    grad = (grad - grad.min()) / max(float(grad.max() - grad.min()), 1e-6)
    arr = c0 + (c1 - c0) * grad[..., None]
    arr = arr + rng.normal(0, rng.uniform(4, 18), size=(size, size, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, 2))
        x0, y0 = rng.uniform(-0.1, 1.1, size=2) * size
        ext = rng.uniform(0.05, 0.25) * size
        x1, y1 = x0 + rng.uniform(-1, 1) * ext, y0 + rng.uniform(-1, 1) * ext
        box = [min(x0, x1), min(y0, y1), max(x0, x1) + 1, max(y0, y1) + 1]
        colour = _random_colour(rng)
        if kind == 0:
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=int(rng.integers(1, 3)))
        else:
            draw.ellipse(box, outline=colour, width=1)
    return img


def render_image(label: str, size: int, rng: np.random.Generator) -> Image.Image:
    """Draw one RGB image of class ``label`` (one of :data:`CLASSES`).

    Args:
        label: the shape to draw.
        size: image side in pixels.
        rng: the image's own random generator (consumed).

    Returns:
        A ``size`` x ``size`` RGB image.
    """
    # Shape and background come from opposite halves of the brightness range, so the
    # shape is always visible; its colour otherwise varies freely. Mostly a light shape
    # on a dark background, large and near the centre: with both polarities equally
    # likely, smaller shapes anywhere and more clutter, `mid` stayed at chance for 10+
    # epochs on the demo's ~255 training images (learning in ~5 with these settings).
    dark_background = bool(rng.random() < 0.8)
    img = _background(size, dark_background, rng)
    # Draw the shape on a 2x canvas mask and downsample it: cheap antialiasing.
    big = size * 2
    mask = Image.new("L", (big, big), 0)
    mdraw = ImageDraw.Draw(mask)
    radius = rng.uniform(0.27, 0.4) * big
    margin = radius * 0.8
    jitter = 0.12 * big
    cx = float(np.clip(big / 2 + rng.uniform(-jitter, jitter), margin, big - margin))
    cy = float(np.clip(big / 2 + rng.uniform(-jitter, jitter), margin, big - margin))
    angle = rng.uniform(0, 2 * math.pi)
    outline_only = rng.random() < 0.1
    stroke = max(2, int(big * rng.uniform(0.03, 0.06)))
    if label == "circle":
        rx = radius
        ry = radius * rng.uniform(0.8, 1.0)  # slightly elliptical
        box = [cx - rx, cy - ry, cx + rx, cy + ry]
        if outline_only:
            mdraw.ellipse(box, outline=255, width=stroke)
        else:
            mdraw.ellipse(box, fill=255)
    else:
        pts = [(cx + x, cy + y) for x, y in _shape_points(label, radius, angle, rng)]
        if outline_only:
            mdraw.line(pts + [pts[0]], fill=255, width=stroke, joint="curve")
        else:
            mdraw.polygon(pts, fill=255)
    mask = mask.resize((size, size), Image.BILINEAR)
    colour = _random_colour(rng, 150, 256) if dark_background else _random_colour(rng, 0, 106)
    opacity = rng.uniform(0.85, 1.0)  # sometimes the shape is a little washed out
    mask = mask.point(lambda v, o=opacity: int(v * o))
    img.paste(Image.new("RGB", (size, size), colour), (0, 0), mask)
    # A few clutter strokes on top of the shape (partial occlusion).
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 2))):
        x0, y0, x1, y1 = rng.uniform(0, size, size=4)
        draw.line([(x0, y0), (x1, y1)], fill=_random_colour(rng), width=1)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.2))))
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + rng.normal(0, rng.uniform(2, 12), size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=_JPEG_QUALITY)
    return buf.getvalue()


#: The largest demo image side (the largest ``img_size`` a profile takes); an image is
#: rendered in memory as float arrays, so 100,000 px would need tens of GiB.
MAX_DEMO_SIZE = 4096
#: The most demo images per class and split (1,000,000 in all: hours, not a demo).
MAX_DEMO_IMAGES = 100_000


def make_demo_dataset(
    dest: str | os.PathLike,
    per_class_train: int = 80,
    per_class_test: int = 20,
    seed: int = 0,
    size: int = 96,
    *,
    overwrite: bool = False,
) -> Path:
    """Generate the demo dataset at ``dest`` (an earlier one there is replaced atomically).

    Args:
        dest: folder to create; gets ``train/<class>/*.jpg`` and ``val/<class>/*.jpg``.
        per_class_train: images per class in ``train/``.
        per_class_test: images per class in ``val/`` (the test set).
        seed: random seed; the same seed gives the same bytes.
        size: image side in pixels.
        overwrite: replace ``dest`` even if it is not an earlier demo dataset.

    Returns:
        The path of the created folder.

    Raises:
        CnnzooError: if a count or the size is out of range, or ``dest`` holds something
            else than an earlier demo dataset.
    """
    if per_class_train < 1:
        raise CnnzooError(f"demo data: per_class_train must be >= 1, got {per_class_train}")
    if per_class_test < 0:
        raise CnnzooError(f"demo data: per_class_test must be >= 0, got {per_class_test}")
    if size < 16:
        raise CnnzooError(f"demo data: size must be >= 16 pixels, got {size}")
    if size > MAX_DEMO_SIZE:
        raise CnnzooError(f"demo data: size must be <= {MAX_DEMO_SIZE} pixels, got {size}")
    if per_class_train > MAX_DEMO_IMAGES or per_class_test > MAX_DEMO_IMAGES:
        raise CnnzooError(
            f"demo data: at most {MAX_DEMO_IMAGES} images per class and split, got "
            f"{max(per_class_train, per_class_test)}"
        )
    if seed < 0:
        raise CnnzooError(f"demo data: seed must be >= 0, got {seed}")
    dest = Path(dest)
    counts = {"train": per_class_train, "val": per_class_test}
    with atomic_directory(dest, overwrite, kind="demo-data") as tmp:
        for split_idx, split in enumerate(_SPLITS):
            if counts[split] == 0:
                continue
            for class_idx, label in enumerate(CLASSES):
                folder = tmp / split / label
                folder.mkdir(parents=True)
                for i in range(counts[split]):
                    rng = np.random.default_rng([seed, split_idx, class_idx, i])
                    data = _jpeg_bytes(render_image(label, size, rng))
                    (folder / f"{label}_{i:04d}.jpg").write_bytes(data)
    return dest
