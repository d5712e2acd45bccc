"""Validate an image-folder dataset, normalise every image to RGB and write its manifest.

The source (any URI :func:`cnnzoo.data.sources.resolve_source` accepts) must hold
``train/<class>/`` and may hold ``val/<class>/`` or ``test/<class>/``, used as the test
set (``test/`` wins if both exist; ``val/`` is then ignored, since the split step makes
its own validation set). Every file is decoded once with Pillow. RGB JPEG and PNG files
are copied byte for byte; any other decodable image (grayscale, alpha, CMYK, palette,
16-bit, other formats) is converted to 8-bit RGB and saved as PNG. Transparent pixels
are composited onto white; an animated image (GIF, APNG, WebP) keeps its first frame and
its manifest entry says so in ``note``. Decoding is strict: a decoder's warning (a JPEG
cut short, a PNG chunk with a bad CRC or no ``IEND``) counts as an error, see
:func:`_strict_check`. The pixels of that strict decode of an RGB JPEG (at the smallest
DCT scale with both sides at least :data:`DECODED_MIN_SIDE`) are kept, packed in a few
``decoded/pixels-NNNNN.bin`` files (one per chunk of :data:`CHUNK_ITEMS` images), so the
split step resizes them instead of decoding the JPEG a second time. A large dataset is
decoded by a pool of processes, one per CPU. Undecodable files, pixel bombs and things that
are not regular files (pipes, broken links) are skipped and listed in the manifest; file
and class names that are not valid UTF-8 get ``%XX`` for their undecodable bytes.
Problems with the layout (including fewer than two classes), or too many bad files, stop
the step with a :class:`~cnnzoo.core.errors.CnnzooError`.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from cnnzoo import __version__
from cnnzoo.core.errors import CnnzooError, one_line
from cnnzoo.core.paths import is_junk_path
from cnnzoo.core.workers import pool_size, process_pool, usable_cpus
from cnnzoo.data.decoded import DECODED_MIN_SIDE
from cnnzoo.data.sources import resolve_source, visible_children
from cnnzoo.storage.gcs import is_gcs
from cnnzoo.storage.layout import DECODED_DIR, IMAGES_DIR, INGEST_KIND, MANIFEST, decoded_file
from cnnzoo.storage.local import (
    atomic_directory,
    atomic_write_json,
    check_replaceable,
    output_lock,
    refuse_overlap,
    scratch_directory,
)
from cnnzoo.storage.outputs import GcsOutput

#: Larger image files are skipped unread (a sparse or bogus file must not fill memory).
MAX_IMAGE_BYTES = 512 * 1024**2
TEST_FOLDERS = ("test", "val")  # first one present is the test set
#: Kept decodes are packed into files of at most this size.
DECODED_FILE_BYTES = 256 * 1024**2
#: Images per chunk: the unit of work of ingest's decoding processes, and of the kept
#: decodes' files (chunk C's are ``decoded/pixels-CCCCC.bin``).
CHUNK_ITEMS = 256

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


@dataclass(frozen=True)
class _Item:
    """One source image and where it goes: copied as is, or converted to PNG."""

    split: str  # "train" or "test"
    label: str
    read_rel: str  # the file's real path relative to the dataset root
    source_rel: str  # the same, portable (see _portable), e.g. "train/cat/a.jpg"
    copy_rel: str  # relative to DEST, e.g. "images/train/cat/a.jpg"
    convert_rel: str  # relative to DEST, e.g. "images/train/cat/a.png"


def ingest(
    source: str,
    dest: str | os.PathLike,
    max_bad_fraction: float = 0.01,
    *,
    overwrite: bool = False,
    processes: int | None = None,
) -> dict:
    """Validate the dataset at ``source`` and write it, with ``manifest.json``, to ``dest``.

    Args:
        source: a local folder, ``.zip``/``.tar.gz``/``.tgz`` archive, ``gs://bucket/prefix``
            or ``demo``.
        dest: output folder (replaced atomically): ``images/<split>/<class>/<file>`` and
            ``manifest.json`` (format in ``docs/formats.md``); or ``gs://bucket/prefix``
            (built locally, then uploaded behind a commit marker, see
            :class:`cnnzoo.storage.outputs.GcsOutput`).
        max_bad_fraction: the largest fraction of a split's files that may be undecodable.
        overwrite: replace ``dest`` even if it is not an earlier ingest output (by
            default an existing, non-empty ``dest`` must be one).
        processes: decoding processes; None: one per CPU from
            :data:`cnnzoo.core.workers.PROCESS_THRESHOLD` images on, threads of this process below;
            0:
            threads. The output is the same whichever is used.

    Returns:
        The manifest dictionary that was written.

    Raises:
        CnnzooError: no ``train/`` folder, no classes, files directly in ``train/``, a class
            without a usable image, train and test class sets that differ, nothing
            decodable, more than ``max_bad_fraction`` of a split undecodable, ``dest``
            holding something else than an earlier ingest output, or another process
            writing ``dest``.
    """
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise CnnzooError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
    if is_gcs(dest):
        # Built whole in a local scratch folder, then uploaded under a commit marker
        # (see cnnzoo.storage.gcs.upload_tree), so a reader never takes a half-written
        # upload for complete.
        with GcsOutput(str(dest), INGEST_KIND, overwrite=overwrite) as out:
            with tempfile.TemporaryDirectory(prefix="cnnzoo-ingest-out-") as scratch:
                manifest = ingest(
                    source, Path(scratch) / "ingested", max_bad_fraction, processes=processes
                )
                out.upload(Path(scratch) / "ingested")
        return manifest
    # Downloads and extracted archives go beside DEST, not to /tmp, which is often small
    # in containers; the scratch folder is removed whatever happens (and, if the step is
    # killed, by the next ingest into DEST).
    if "://" not in source and Path(source).expanduser().exists():
        refuse_overlap(dest, source, "source")
    with output_lock(dest), scratch_directory(dest) as work:
        check_replaceable(dest, INGEST_KIND, overwrite)
        root = resolve_source(source, work)
        refuse_overlap(dest, root, "source")
        classes, test_source, items = _scan(root, source)
        with atomic_directory(dest, overwrite, kind=INGEST_KIND) as tmp:
            results = _process_all(root, tmp, items, processes)
            manifest = _build_manifest(
                source, classes, test_source, items, results, max_bad_fraction
            )
            atomic_write_json(tmp / MANIFEST, manifest)
    return manifest


# --- layout ----------------------------------------------------------------------------


def _class_dirs(folder: Path, name: str, source: str) -> list[str]:
    """Class folder names inside ``folder``; refuse stray files directly in it."""
    children = visible_children(folder)
    files = [p.name for p in children if not p.is_dir()]
    if files:
        raise CnnzooError(
            f"{source}: {len(files)} file(s) directly in {name}/ (e.g. '{name}/{files[0]}'); "
            f"images must be in {name}/<class>/"
        )
    classes = [p.name for p in children if p.is_dir()]
    if not classes:
        raise CnnzooError(f"{source}: no class folders in {name}/ (expected {name}/<class>/)")
    return classes


def _scan(root: Path, source: str) -> tuple[list[str], str | None, list[_Item]]:
    """Check the folder layout and list every candidate image file."""
    train = root / "train"
    if not train.is_dir():
        found = ", ".join(p.name + ("/" if p.is_dir() else "") for p in visible_children(root))
        raise CnnzooError(
            f"{source}: no train/ folder (expected train/<class>/ images; "
            f"found: {found or 'nothing'})"
        )
    classes = _class_dirs(train, "train", source)
    if len(classes) < 2:
        raise CnnzooError(
            f"{source}: only one class folder in train/ ('{_portable(classes[0])}'); "
            "a classifier needs at least 2 classes"
        )
    test_source = next((n for n in TEST_FOLDERS if (root / n).is_dir()), None)
    if test_source == "test" and (root / "val").is_dir():
        print("ingest: both test/ and val/ present; using test/ as the test set", file=sys.stderr)
    splits = [("train", "train")]
    if test_source is not None:
        test_classes = _class_dirs(root / test_source, test_source, source)
        if set(test_classes) != set(classes):
            only_train = sorted(set(classes) - set(test_classes))
            only_test = sorted(set(test_classes) - set(classes))
            raise CnnzooError(
                f"{source}: class folders differ between train/ and {test_source}/ "
                f"(only in train/: {only_train}; only in {test_source}/: {only_test})"
            )
        splits.append(("test", test_source))
    labels = _unique_portable(classes)
    items: list[_Item] = []
    renamed = 0
    for split, folder in splits:
        for real_label in classes:
            label = labels[real_label]
            class_dir = root / folder / real_label
            # Anything that is not a folder is a candidate, FIFOs and broken links too:
            # they are skipped with a reason when read, never opened blindly.
            real_rels = sorted(
                p.relative_to(class_dir).as_posix()
                for p in class_dir.rglob("*")
                if not p.is_dir() and not is_junk_path(p.relative_to(class_dir).as_posix())
            )
            if not real_rels:
                raise CnnzooError(f"{source}: class folder {folder}/{label}/ has no images")
            portable = _unique_portable(real_rels)
            renamed += sum(1 for r in real_rels if portable[r] != r)
            converted = _png_names(list(portable.values()))
            for real_rel in real_rels:
                rel = portable[real_rel]
                items.append(
                    _Item(
                        split=split,
                        label=label,
                        read_rel=f"{folder}/{real_label}/{real_rel}",
                        source_rel=f"{folder}/{label}/{rel}",
                        copy_rel=f"{IMAGES_DIR}/{split}/{label}/{rel}",
                        convert_rel=f"{IMAGES_DIR}/{split}/{label}/{converted[rel]}",
                    )
                )
    if renamed or any(labels[c] != c for c in classes):
        print(
            f"ingest: {renamed} file name(s) and {sum(labels[c] != c for c in classes)} class "
            "name(s) are not valid UTF-8; their undecodable bytes are written as %XX",
            file=sys.stderr,
        )
    return sorted(labels.values()), test_source, items


def _portable(name: str) -> str:
    """``name`` as valid UTF-8: bytes that were not (surrogate-escaped) become ``%XX``.

    On POSIX a file name is bytes; Python maps bytes that are not UTF-8 to lone
    surrogates, which JSON readers and TensorFlow reject.
    """
    if not any("\udc80" <= ch <= "\udcff" for ch in name):
        return name
    return "".join(f"%{ord(ch) - 0xDC00:02X}" if "\udc80" <= ch <= "\udcff" else ch for ch in name)


def _unique_portable(names: list[str]) -> dict[str, str]:
    """Map each name to its :func:`_portable` form, kept distinct from every other name."""
    taken = set(names)
    out: dict[str, str] = {}
    for name in names:
        cand = _portable(name)
        if cand != name:
            k = 1
            while cand in taken:
                cand = f"{_portable(name)}~{k}"
                k += 1
            taken.add(cand)
        out[name] = cand
    return out


def _png_names(rels: list[str]) -> dict[str, str]:
    """Name each file would get if converted to PNG, without clashing with any other file."""
    taken = {r.lower() for r in rels}
    out: dict[str, str] = {}
    for rel in rels:
        p = PurePosixPath(rel)
        cand = p.with_suffix(".png").as_posix() if p.suffix else rel + ".png"
        if cand.lower() != rel.lower():
            if cand.lower() in taken:
                cand = rel + ".png"
            k = 1
            while cand.lower() in taken:
                cand = f"{rel}.{k}.png"
                k += 1
            taken.add(cand.lower())
        out[rel] = cand
    return out


# --- decoding --------------------------------------------------------------------------


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded image of any mode to 8-bit RGB.

    16-bit and 32-bit integer images are scaled to 8 bits; images with transparency
    are composited onto white.

    Args:
        img: a loaded Pillow image.

    Returns:
        An ``RGB`` image.
    """
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        arr = np.asarray(img).astype(np.float64)
        if mode != "I" or arr.max(initial=0) > 255:
            arr = arr / 257.0
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" or mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return rgba.convert("RGB")
    return img.convert("RGB")


def _is_sixteen_bit_rgb(img: Image.Image) -> bool:
    """True for a 16-bit-per-channel PNG that Pillow reads as (reduced) 8-bit RGB."""
    return any("16" in str(t.args) for t in img.tile)


def _strict_check(fmt: str | None, data: bytes) -> tuple[str | None, np.ndarray | None]:
    """Why ``data`` (a JPEG or PNG) is damaged although a tolerant decoder would accept
    it (or None), and a JPEG's decoded pixels.

    Pillow decodes a JPEG cut short with an end-of-image marker appended as a
    grey-filled image (libjpeg only warns), and does not check a PNG's chunk CRCs or its
    ``IEND``. JPEGs are therefore decoded by libjpeg-turbo through ``simplejpeg`` with
    ``strict=True`` (every warning is an error) at the smallest DCT scale whose sides are
    at least :data:`DECODED_MIN_SIDE`: every coefficient is still entropy-decoded, only
    the inverse DCT is reduced; those RGB pixels are returned. PNGs go
    through Pillow's ``verify()``, which reads every chunk, checks its CRC and wants
    ``IEND``.
    """
    if fmt == "JPEG":
        try:
            pixels = simplejpeg.decode_jpeg(
                data,
                colorspace="RGB",
                min_height=DECODED_MIN_SIDE,
                min_width=DECODED_MIN_SIDE,
                strict=True,
            )
        except ValueError as e:
            return f"corrupt or truncated JPEG (libjpeg: {one_line(e, 300)})", None
        return None, pixels
    if fmt == "PNG":
        try:
            with Image.open(io.BytesIO(data)) as check:
                check.verify()
        except Exception as e:  # SyntaxError for a bad CRC, OSError for a cut file...
            return f"corrupt or truncated PNG ({one_line(e, 300)})", None
    return None, None


def _exif_orientation(img: Image.Image) -> int:
    """The image's EXIF orientation (1: as stored; 2..8: to be mirrored or rotated); 1
    where there is none or it cannot be read."""
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # a corrupt EXIF block: the pixels are what they are
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


#: Write errors that belong to one file's name, not to the disk: the image is skipped.
_NAME_ERRNOS = (errno.ENAMETOOLONG, errno.EISDIR, errno.EEXIST, errno.ENOTDIR)


def _decode_and_write(src: Path, tmp: Path, item: _Item) -> dict[str, Any]:
    """Decode ``src`` and write it under ``tmp``; return its manifest entry or an error.

    A JPEG copied as is also gets ``"pixels"``: its kept decode as ``(bytes, width,
    height, sha256)`` (removed from the entry by :func:`_process_all`, which packs it).
    """
    try:
        st = src.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block read_bytes forever
            return {"error": "not a regular file (a pipe, socket or device)"}
        if st.st_size > MAX_IMAGE_BYTES:
            return {"error": f"file too large ({st.st_size} bytes > {MAX_IMAGE_BYTES})"}
        data = src.read_bytes()
    except OSError as e:
        return {"error": f"cannot read file ({e.strerror or one_line(e, 300)})"}
    if not data:
        return {"error": "empty file (0 bytes)"}
    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format
        sixteen = _is_sixteen_bit_rgb(img)
        frames = getattr(img, "n_frames", 1) if getattr(img, "is_animated", False) else 1
        width, height = img.size
        problem, pixels = _strict_check(fmt, data)
        if problem:
            return {"error": problem}
        if fmt != "JPEG" or img.mode != "RGB":
            img.load()  # an animated image loads its first frame
        # An RGB JPEG is copied as is: the strict decode above validated it.
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return {"error": f"too many pixels, refused as a decompression bomb ({one_line(e, 300)})"}
    except UnidentifiedImageError:
        return {"error": "not an image Pillow can read"}
    except Exception as e:  # corrupt data makes Pillow's decoders raise many types
        return {"error": f"cannot decode ({type(e).__name__}: {one_line(e, 300)})"}
    if width < 1 or height < 1:
        return {"error": f"image has no pixels ({width}x{height})"}
    orientation = _exif_orientation(img)
    if fmt in ("JPEG", "PNG") and img.mode == "RGB" and not sixteen and orientation == 1:
        rel, out = item.copy_rel, data
    else:
        try:
            if orientation != 1:  # shown rotated or mirrored by every viewer: made so
                img = ImageOps.exif_transpose(img)
                width, height = img.size
            rgb = to_rgb(img)
        except Exception as e:  # exotic modes Pillow cannot convert
            return {"error": f"cannot convert {fmt} mode {img.mode} to RGB ({one_line(e, 300)})"}
        buf = io.BytesIO()
        rgb.save(buf, format="PNG")
        rel, out = item.convert_rel, buf.getvalue()
    target = tmp / rel
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if out is data:
            _link_or_copy(src, st, target, data)
        else:
            target.write_bytes(out)
    except OSError as e:
        if e.errno not in _NAME_ERRNOS:
            raise  # the disk (full, read-only): the whole ingest fails
        # This file's name (too long, or it collides with a folder): skipped like a
        # corrupt image, named by its source path in the manifest's "skipped".
        name = rel.split("/", 3)[-1]
        return {"error": f"cannot be written as {name} ({e.strerror})"}
    kept = pixels if rel == item.copy_rel and fmt == "JPEG" else None
    entry = {
        "path": rel,
        "source_path": item.source_rel,
        "split": item.split,
        "label": item.label,
        "sha256": hashlib.sha256(out).hexdigest(),
        "width": width,
        "height": height,
    }
    if frames > 1:
        entry["note"] = f"animated {fmt} with {frames} frames: first frame used"
    if orientation != 1:
        entry["note"] = f"EXIF orientation {orientation} applied (saved upright as PNG)"
    if kept is not None:  # made bytes and hashed here, in the worker thread
        raw = kept.tobytes()
        entry["pixels"] = (raw, kept.shape[1], kept.shape[0], hashlib.sha256(raw).hexdigest())
    return entry


def _link_or_copy(src: Path, st: os.stat_result, target: Path, data: bytes) -> None:
    """Put ``data``, read from ``src`` (``st``: its stat before the read), at ``target``.

    A hard link when ``src`` is on the same file system and unchanged since it was read
    (creating a file and writing its bytes costs far more than the decode on some file
    systems); a copy of ``data`` otherwise. A linked file is the source file: cnnzoo never
    writes to an ingested image, and split refuses one whose sha256 changed.
    """
    try:
        os.link(src, target)
    except OSError:  # another file system, or links not allowed: copy instead
        target.write_bytes(data)
        return
    now = os.stat(target)
    if (now.st_ino, now.st_size, now.st_mtime_ns) != (st.st_ino, st.st_size, st.st_mtime_ns):
        target.unlink()  # the source changed after it was read: keep what was validated
        target.write_bytes(data)


class _DecodedWriter:
    """Appends one chunk's kept decodes to ``decoded/pixels-CCCCC.bin`` under ``tmp``.

    Chunk ``C`` (items ``C * CHUNK_ITEMS`` onwards) has its own file, so chunks can be
    written by different processes and the same data still gives the same files on any
    machine; a chunk over :data:`DECODED_FILE_BYTES` continues in
    ``pixels-CCCCC-1.bin``, ``-2`` and so on. No file is made for a chunk with no kept
    decode.
    """

    def __init__(self, tmp: Path, chunk: int) -> None:
        self._dir = tmp / DECODED_DIR
        self._chunk = chunk
        self._file: Any = None
        self._name = ""
        self._offset = 0
        self._parts = 0

    def add(self, raw: bytes, width: int, height: int, sha256: str) -> dict[str, Any]:
        """Write ``raw`` (uint8 HxWx3 pixels, their sha256); return their manifest record."""
        if self._file is None or self._offset + len(raw) > DECODED_FILE_BYTES:
            self.close()
            self._dir.mkdir(exist_ok=True)
            self._name = decoded_file(self._chunk, self._parts)
            self._file = open(self._dir.parent / self._name, "wb")  # noqa: SIM115
            self._offset = 0
            self._parts += 1
        record = {
            "file": self._name,
            "offset": self._offset,
            "width": int(width),
            "height": int(height),
            "min_side": DECODED_MIN_SIDE,
            "sha256": sha256,
        }
        self._file.write(raw)
        self._offset += len(raw)
        return record

    def close(self) -> None:
        """Close the file being written."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> _DecodedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _strict_decoding() -> None:
    """Pillow's switches for ingest's decodes, in this process (see :func:`_process_all`)."""
    # Truncated data must surface as an error, whoever set Pillow's switch in this process.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    # Oversized images are skipped, not decoded: Pillow's warning becomes an error.
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def _process_chunk(job: tuple[str, str, int, list[_Item]]) -> list[dict[str, Any]]:
    """Decode one chunk of items in order, packing its kept decodes (in a worker process)."""
    root, tmp, chunk, items = job
    results = []
    with _DecodedWriter(Path(tmp), chunk) as packer:
        for it in items:
            entry = _decode_and_write(Path(root) / it.read_rel, Path(tmp), it)
            pixels = entry.pop("pixels", None)
            if pixels is not None:
                entry["decoded"] = packer.add(*pixels)
            results.append(entry)
    return results


def _process_all(
    root: Path, tmp: Path, items: list[_Item], processes: int | None = None
) -> list[dict[str, Any]]:
    """Decode every item; return their manifest entries (or errors) in item order.

    Items are cut into chunks of :data:`CHUNK_ITEMS`. A large dataset's chunks are
    decoded by a pool of processes, one per CPU, each chunk in one process
    (``processes`` overrides how many; 0: threads); a small one's items by threads of
    this process (the decoders release the GIL, the rest of the per-image work does not).
    Either way chunk ``C``'s kept decodes go to its own files in item order, so the same
    data gives the same bytes, however it was decoded.
    """
    results: list[dict[str, Any]] = []
    totals = {s: sum(1 for it in items if it.split == s) for s in ("train", "test")}
    done = {"train": 0, "test": 0}
    next_report = {"train": 0.1, "test": 0.1}

    def progress(item: _Item) -> None:
        split = item.split
        done[split] += 1
        frac = done[split] / totals[split]
        # Small splits get one line at the end; larger ones one every 10%.
        if done[split] == totals[split] or (totals[split] >= 20 and frac >= next_report[split]):
            print(
                f"ingest: {split} {done[split]}/{totals[split]} ({frac:.0%})",
                file=sys.stderr,
                flush=True,
            )
            while next_report[split] <= frac:
                next_report[split] += 0.1

    chunks = [items[i : i + CHUNK_ITEMS] for i in range(0, len(items), CHUNK_ITEMS)]
    n_proc = pool_size(len(items), len(chunks), processes)
    # catch_warnings is not thread-safe: the filter is set here, in the calling thread
    # (and, for a pool, again in each process it starts).
    with warnings.catch_warnings():
        _strict_decoding()
        if n_proc:
            jobs = [(str(root), str(tmp), c, chunk) for c, chunk in enumerate(chunks)]
            with process_pool(n_proc, f"ingest {root}", _strict_decoding) as pool:
                for chunk, entries in zip(chunks, pool.map(_process_chunk, jobs), strict=True):
                    for it, entry in zip(chunk, entries, strict=True):
                        results.append(entry)
                        progress(it)
            return results
        workers = min(32, 2 * usable_cpus())
        with ThreadPoolExecutor(max_workers=workers) as pool:
            entries = pool.map(lambda it: _decode_and_write(root / it.read_rel, tmp, it), items)
            packer: _DecodedWriter | None = None
            try:
                for i, entry in enumerate(entries):
                    if i % CHUNK_ITEMS == 0:
                        if packer is not None:
                            packer.close()
                        packer = _DecodedWriter(tmp, i // CHUNK_ITEMS)
                    pixels = entry.pop("pixels", None)
                    if pixels is not None:
                        entry["decoded"] = packer.add(*pixels)
                    results.append(entry)
                    progress(items[i])
            finally:
                if packer is not None:
                    packer.close()
    return results


# --- manifest --------------------------------------------------------------------------


def _build_manifest(
    source: str,
    classes: list[str],
    test_source: str | None,
    items: list[_Item],
    results: list[dict[str, Any]],
    max_bad_fraction: float,
) -> dict[str, Any]:
    """Check the decoded results for fatal problems and assemble the manifest."""
    files: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for it, res in zip(items, results, strict=True):
        if "error" in res:
            skipped.append({"path": it.source_rel, "reason": res["error"]})
        else:
            files.append(res)
    if not files:
        first = skipped[0]
        raise CnnzooError(
            f"{source}: no decodable image among {len(items)} files "
            f"(e.g. {first['path']}: {first['reason']})"
        )
    splits = ["train"] + (["test"] if test_source else [])
    folder = {"train": "train", "test": test_source}
    counts: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    for split in splits:
        per_class = {c: 0 for c in classes}
        for f in files:
            if f["split"] == split:
                per_class[f["label"]] += 1
        counts[split] = per_class
        empty = [c for c, n in per_class.items() if n == 0]
        if empty:
            raise CnnzooError(
                f"{source}: class folder {folder[split]}/{empty[0]}/ has no usable image "
                "(every file in it is unreadable)"
            )
        total = sum(1 for it in items if it.split == split)
        bad = [s for s in skipped if s["path"].startswith(f"{folder[split]}/")]
        if len(bad) > max_bad_fraction * total:
            raise CnnzooError(
                f"{source}: {len(bad)} of {total} files in {folder[split]}/ are unreadable "
                f"({len(bad) / total:.1%} > max_bad_fraction {max_bad_fraction:g}); "
                f"e.g. {bad[0]['path']}: {bad[0]['reason']}"
            )
    if skipped:
        print(f"ingest: skipped {len(skipped)} unreadable file(s)", file=sys.stderr)
    notes = [f for f in files if f.get("note", "").startswith("animated")]
    if notes:
        print(
            f"ingest: {len(notes)} animated image(s), first frame used "
            f"(e.g. {notes[0]['source_path']})",
            file=sys.stderr,
        )
    warnings = quality_warnings(classes, counts, files)
    for line in warnings:
        print(f"warning: ingest: {line}", file=sys.stderr)
    manifest = {
        "source": source,
        "classes": classes,
        "test_source": test_source,
        "counts": counts,
        "files": files,
        "skipped": skipped,
    }
    if warnings:  # absent when there are none: a clean dataset's manifest is as before
        manifest["warnings"] = warnings
    manifest["cnnzoo_version"] = __version__
    return manifest


#: A class with fewer training images than this fraction of the largest class's (or
#: fewer than 2) is "near-empty": its accuracy figures rest on a handful of images.
NEAR_EMPTY_FRACTION = 0.1


def quality_warnings(
    classes: list[str], counts: dict[str, dict[str, int]], files: list[dict[str, Any]]
) -> list[str]:
    """What is wrong with the data but not fatal (the manifest's ``warnings``): test images
    byte-identical to training images, near-empty classes, EXIF-rotated images."""
    out: list[str] = []
    train = {f["sha256"]: f["source_path"] for f in files if f["split"] == "train"}
    both = [
        (f["source_path"], train[f["sha256"]])
        for f in files
        if f["split"] == "test" and f["sha256"] in train
    ]
    if both:
        out.append(
            f"{len(both)} test image(s) are byte-identical to training images (e.g. "
            f"{both[0][0]} = {both[0][1]}): the test accuracy overstates"
        )
    largest = max(counts["train"].values(), default=0)
    for c in classes:
        n = counts["train"].get(c, 0)
        if n < max(2, NEAR_EMPTY_FRACTION * largest):
            out.append(
                f"class {c} is near-empty: {n} training image(s) (the largest class has {largest})"
            )
    rotated = [f for f in files if f.get("note", "").startswith("EXIF orientation")]
    if rotated:
        out.append(
            f"{len(rotated)} image(s) carry an EXIF orientation, applied (saved upright as "
            f"PNG; e.g. {rotated[0]['source_path']})"
        )
    return out
