"""Small image-folder builders for the data tests: tiny RGB images and odd-format files."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def rgb_image(size: int = 16, seed: int = 0) -> Image.Image:
    """A random RGB image."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


def jpeg_bytes(img: Image.Image) -> bytes:
    """``img`` encoded as JPEG."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    """``img`` encoded as PNG."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png16_rgb_bytes(width: int, height: int, value: int = 0xFFFF) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), every sample ``value``."""
    row = b"\x00" + struct.pack(">H", value) * (3 * width)
    raw = row * height

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("ant", "bee"),
    n_train: int = 4,
    n_test: int = 2,
    test_name: str | None = "val",
    size: int = 16,
) -> Path:
    """Write ``root/train/<class>/*.jpg`` (and ``root/<test_name>/<class>/*.jpg``)."""
    seed = 0
    splits = [("train", n_train)] + ([(test_name, n_test)] if test_name else [])
    for split, n in splits:
        for label in classes:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                seed += 1
                (folder / f"{label}{i:03d}.jpg").write_bytes(jpeg_bytes(rgb_image(size, seed)))
    return root


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` but cnnzoo's ownership
    marker (``.cnnzoo.json`` at the top, which a copied source does not have)."""
    return {
        p.relative_to(root).as_posix(): sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() != ".cnnzoo.json"
    }


def cli_error(capsys, argv: list[str]) -> str:
    """Run the CLI, expect exit 1 and exactly one ``error:`` line, last, no traceback.

    Returns:
        That line.
    """
    from cnnzoo.cli.main import main

    capsys.readouterr()
    assert main(argv) == 1
    lines = capsys.readouterr().err.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    assert lines[-1] == errors[0]
    assert "Traceback" not in "\n".join(lines)
    return errors[0]


#: Overrides that fit the notebook's profile to the ``tiny_split`` fixture (72 px).
TINY_FULL = ["img_size=72", "weights=null"]


def notebook_profile(overrides=()):
    """The ``full`` profile (the notebook's schedules, which tests rely on) at the tiny
    split's size with random weights, plus ``overrides``. The demo profile is tuned for
    ``make run`` and may change; tests must not depend on its numbers."""
    from cnnzoo.config.profile import load_profile

    return load_profile("full", [*TINY_FULL, *overrides])


# An evaluation.json exactly as cnnzoo wrote it before records had a schema_version.
UNVERSIONED = {
    "model": "mid",
    "strategy": "scratch",
    "base": None,
    "status": "ok",
    "classes": ["circle", "square"],
    "test_count": 4,
    "test_loss": 0.5,
    "test_accuracy": 0.75,
    "train_loss": 0.25,
    "train_accuracy": 1.0,
    "val_loss": 0.4,
    "val_accuracy": 0.5,
    "gap": 0.25,
    "per_class": {
        "circle": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2},
        "square": {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2},
    },
    "confusion_matrix": [[1, 1], [0, 2]],
    "total_params": 1614885,
    "trainable_params": 1614885,
    "epochs_run": 3,
    "best_val_accuracy": 0.5,
    "train_time_s": 12.5,
    "images_per_s": 80.0,
    "weights": "random",
    "history": [{"epoch": 1, "stage": 1, "loss": 1.0}],
}
