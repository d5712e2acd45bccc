"""Seeded, stratified train/val/test split, decoded once into sharded TFRecords.

Per class, the ingested train files are sorted by path and shuffled with
``numpy.random.default_rng(seed)`` (one generator, classes in sorted order). If the
dataset has no test folder, the first ``round(test_fraction * n)`` shuffled files of
each class are held out as the test set; of the rest, ``round(val_fraction * rest)``
go to validation and the remainder to training. Training records are then written
in one seeded shuffled order (so a streaming shuffle buffer sees mixed classes);
validation and test records are in class order, then path order.

Every image is resized once to ``img_size`` x ``img_size``: from
:data:`cnnzoo.core.workers.PROCESS_THRESHOLD` images on with two or more CPUs by a pool of
processes, one shard per job (each shard's bytes depend only on its images), below that
in a thread pool (the decoders and Pillow's resize release the GIL). A JPEG is not
decoded again: ingest kept the pixels of its strict decode (libjpeg-turbo at the
smallest DCT scale, M/8, with both sides at least ``cnnzoo.data.decoded.DECODED_MIN_SIDE``),
and split resizes those. Only for an ``img_size`` above that, or an ingest without kept
decodes, is the JPEG decoded here, the same way at the smallest scale still at least
``img_size`` (or ``DECODED_MIN_SIDE``, so both ways give the same bytes). Other formats
are decoded by Pillow. The resize is Pillow's bilinear filter (``Image.BILINEAR``; when
shrinking, Pillow widens the filter to cover the source pixels, i.e. it antialiases,
unlike the notebook's ``tf.image.resize`` bilinear). Records hold raw uint8 HWC pixels,
so training never decodes a JPEG again. Output format: ``docs/formats.md``."""

from __future__ import annotations

import hashlib
import io
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image

from cnnzoo.core.errors import CnnzooError
from cnnzoo.core.workers import pool_size, process_pool, usable_cpus
from cnnzoo.data.artifacts import read_manifest
from cnnzoo.data.decoded import DECODED_MIN_SIDE
from cnnzoo.storage.gcs import download_tree, is_gcs
from cnnzoo.storage.layout import MANIFEST, SPLIT_INFO, SPLIT_KIND
from cnnzoo.storage.local import (
    atomic_directory,
    atomic_write_json,
    check_replaceable,
    output_kind,
    output_lock,
    scratch_directory,
)
from cnnzoo.storage.outputs import GcsOutput, require_complete
from cnnzoo.storage.tfrecord import RecordWriter, example_bytes

SPLITS = ("train", "val", "test")
RESIZE_METHOD = "libjpeg-turbo DCT scaling + PIL bilinear"
_JPEG_MAGIC = b"\xff\xd8\xff"
MAX_SHARD_IMAGES = 1000
MAX_SHARD_BYTES = 100 * 1024**2
#: Below this many images the decoding runs in the calling thread.
_POOL_THRESHOLD = 64


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def assign_splits(
    files_by_class: dict[str, list[str]],
    test_files_by_class: dict[str, list[str]] | None,
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> dict[str, list[tuple[str, str]]]:
    """Assign ingested files to train/val/test, stratified by class and seeded.

    Args:
        files_by_class: ingested train-split paths per class.
        test_files_by_class: ingested test-split paths per class, or None to hold out
            ``test_fraction`` of each class instead.
        seed: seed of ``numpy.random.default_rng``.
        val_fraction: fraction of each class's non-test files used for validation.
        test_fraction: fraction of each class held out when there is no test split.

    Returns:
        ``{"train"|"val"|"test": [(path, label), ...]}`` in record order.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    for label in sorted(files_by_class):
        paths = sorted(files_by_class[label])
        order = [paths[i] for i in rng.permutation(len(paths))]
        if test_files_by_class is None:
            n_test = min(_round_half_up(test_fraction * len(order)), len(order) - 1)
            test, order = order[:n_test], order[n_test:]
        else:
            test = sorted(test_files_by_class.get(label, []))
        n_val = min(_round_half_up(val_fraction * len(order)), len(order) - 1)
        out["val"] += [(p, label) for p in order[:n_val]]
        out["train"] += [(p, label) for p in order[n_val:]]
        out["test"] += [(p, label) for p in test]
    train = out["train"]
    out["train"] = [train[i] for i in rng.permutation(len(train))]
    return out


def load_image(path: str | os.PathLike | io.BytesIO, img_size: int) -> bytes:
    """Decode an image and resize it to ``img_size`` squared; return raw RGB uint8 bytes.

    Args:
        path: an image file (or its bytes in a ``BytesIO``).
        img_size: output side in pixels.

    Returns:
        ``img_size * img_size * 3`` bytes, row-major HWC.
    """
    data = path.getvalue() if isinstance(path, io.BytesIO) else Path(path).read_bytes()
    return resized_pixels(data, img_size)


def _resize(rgb: Image.Image, img_size: int) -> bytes:
    if rgb.size != (img_size, img_size):
        rgb = rgb.resize((img_size, img_size), Image.BILINEAR)
    return rgb.tobytes()


def resized_pixels(data: bytes, img_size: int) -> bytes:
    """The pixels of the image file ``data``, resized to ``img_size`` squared (RGB uint8).

    A JPEG is decoded by libjpeg-turbo (``simplejpeg``, strict as in ingest) at the
    smallest DCT scale (M/8) whose both sides are still at least ``img_size`` and
    ``DECODED_MIN_SIDE`` (the scale of ingest's kept decode); any other format through
    Pillow. The bilinear resize is Pillow's.
    """
    if data[:3] == _JPEG_MAGIC:
        side = max(img_size, DECODED_MIN_SIDE)
        pixels = simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_height=side, min_width=side, strict=True
        )
        return _resize(Image.fromarray(pixels, "RGB"), img_size)
    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
    return _resize(rgb, img_size)


class _ChangedFile(Exception):
    """An ingested file whose bytes no longer match the manifest's sha256."""


def _load_job(job: tuple[str, int, str | None, dict[str, Any] | None]) -> bytes:
    path, img_size, sha256, kept = job
    if kept is None or sha256 is not None:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise RuntimeError(f"{path}: cannot read ({e.strerror})") from None
        # Read once, hashed and decoded from memory: checking costs a hash, not a second
        # read. With a kept decode the file is still checked, so the ingested data as a
        # whole stays what ingest recorded.
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise _ChangedFile(path)
    if kept is not None:
        return _load_kept(kept, img_size, sha256 is not None)
    try:
        return resized_pixels(data, img_size)
    except Exception as e:  # reported with the path in the parent
        raise RuntimeError(f"{path}: {type(e).__name__}: {e}") from None


def _load_kept(kept: dict[str, Any], img_size: int, verify: bool) -> bytes:
    """Resize ingest's kept decode (``kept``: its manifest record, ``file`` made absolute)."""
    width, height = kept["width"], kept["height"]
    try:
        with open(kept["file"], "rb") as f:
            # Never read (nor allocate) past the file's end, whatever the manifest says.
            available = max(0, os.fstat(f.fileno()).st_size - kept["offset"])
            f.seek(kept["offset"])
            raw = f.read(min(width * height * 3, available))
    except OSError as e:
        raise RuntimeError(f"{kept['file']}: cannot read ({e.strerror})") from None
    if verify and hashlib.sha256(raw).hexdigest() != kept["sha256"]:
        raise _ChangedFile(f"{kept['file']} (at byte {kept['offset']})")
    if len(raw) != width * height * 3:  # only unverified: a hash check catches it first
        raise RuntimeError(
            f"{kept['file']}: {len(raw)} bytes at byte {kept['offset']}, expected "
            f"{width}x{height}x3 (cut short since ingest)"
        )
    pixels = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
    return _resize(Image.fromarray(pixels, "RGB"), img_size)


def _decoded(
    paths: list[str],
    img_size: int,
    workers: int,
    hashes: list[str | None] | None = None,
    kept: list[dict[str, Any] | None] | None = None,
) -> Iterator[bytes]:
    """Yield decoded images in ``paths`` order, decoding in ``workers`` threads.

    With ``hashes``, each file's sha256 is checked first (:class:`_ChangedFile`). Where
    ``kept`` has a record (ingest's kept decode, its ``file`` absolute), that is resized
    instead of the file being decoded (and with ``hashes``, its own sha256 checked).
    """
    none = [None] * len(paths)
    jobs = [
        (p, img_size, h, k) for p, h, k in zip(paths, hashes or none, kept or none, strict=True)
    ]
    if workers <= 1:
        yield from map(_load_job, jobs)
        return
    # Threads, not processes: Pillow's decoders and resize release the GIL, and a thread
    # pool neither re-imports the caller nor copies its threads.
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        yield from pool.map(_load_job, jobs)
    finally:
        # On an error, drop the queued images instead of decoding them all first.
        pool.shutdown(wait=True, cancel_futures=True)


def _kept_for(
    record: dict[str, Any] | None, ingested: Path, img_size: int
) -> dict[str, Any] | None:
    """Ingest's kept decode to resize, its file made absolute; None to decode the file."""
    if record is None or img_size > record["min_side"]:
        return None  # the kept scale is too small for this img_size: decode the JPEG
    return dict(record, file=str(ingested / record["file"]))


def _write_shards(
    tmp: Path,
    shards: list[str],
    per_shard: int,
    labels: list[int],
    images: Iterator[bytes],
    name: str,
) -> None:
    """Write one split part's shards in this process from its decoded ``images``."""
    writer = None
    try:
        for i, (label, raw) in enumerate(zip(labels, images, strict=True)):
            if i % per_shard == 0:
                if writer is not None:
                    writer.close()
                writer = RecordWriter(tmp / shards[i // per_shard])
            writer.write(example_bytes(raw, label))
            if (i + 1) % 2000 == 0:
                print(f"split: {name} {i + 1}/{len(labels)}", file=sys.stderr, flush=True)
    finally:
        if writer is not None:
            writer.close()


def _write_shard(job: tuple[str, int, list[tuple[str, int, str | None, Any]]]) -> int:
    """Write one shard (in a worker process): decode, resize and frame its images."""
    path, img_size, entries = job
    with RecordWriter(path) as writer:
        for file, label, sha256, kept in entries:
            writer.write(example_bytes(_load_job((file, img_size, sha256, kept)), label))
    return len(entries)


def _write_in_pool(
    processes: int, jobs: list[tuple[str, int, list[tuple[str, int, str | None, Any]]]], what: str
) -> None:
    """Write the shards ``jobs`` describe in a pool of ``processes``, one shard per job."""
    total = sum(len(job[2]) for job in jobs)
    done, next_report = 0, 0.1
    with process_pool(processes, what) as pool:
        # Each shard is complete when its job returns; a job's error is raised here.
        for count in pool.map(_write_shard, jobs):
            done += count
            if done == total or done / total >= next_report:
                print(f"split: {done}/{total} images ({done / total:.0%})", file=sys.stderr)
                while next_report <= done / total:
                    next_report += 0.1


def shard_size(img_size: int) -> int:
    """Images per TFRecord shard: at most 1000 and at most ~100 MB."""
    return max(1, min(MAX_SHARD_IMAGES, MAX_SHARD_BYTES // (img_size * img_size * 3)))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(ingested: Path) -> dict[str, Any]:
    kind = output_kind(ingested)
    if kind is not None and kind != "ingest":
        raise CnnzooError(f"{ingested}: a cnnzoo {kind} output, not an ingest output")
    path = ingested / MANIFEST
    manifest = read_manifest(path)  # every key of the declared schema checked
    for f in manifest["files"]:
        if not (ingested / f["path"]).is_file():
            raise CnnzooError(f"{path}: listed file {f['path']} is missing from {ingested}")
        kept = f.get("decoded")
        if kept is not None and not (ingested / kept["file"]).is_file():
            raise CnnzooError(f"{path}: listed file {kept['file']} is missing from {ingested}")
    return manifest


def split_dataset(
    ingested: str | os.PathLike,
    dest: str | os.PathLike,
    img_size: int,
    seed: int = 42,
    val_fraction: float = 0.15,
    test_fraction: float = 0.1,
    *,
    workers: int | None = None,
    processes: int | None = None,
    overwrite: bool = False,
    verify: bool = True,
) -> dict:
    """Split an ingested dataset and write train/val/test TFRecord shards plus ``split.json``.

    Every file read is checked against the sha256 the ingest manifest lists for it, so
    a changed, truncated or half-replaced ingested dataset is refused, not split.

    Args:
        ingested: output folder of :func:`cnnzoo.data.ingest.ingest`, or a ``gs://`` prefix
            holding one (it must carry a complete commit marker; it is downloaded
            beside ``dest`` first).
        dest: output folder (replaced atomically), or ``gs://bucket/prefix`` (built
            locally, then uploaded behind a commit marker). An existing, non-empty
            ``dest`` must be an earlier split output unless ``overwrite``.
        img_size: side, in pixels, every image is resized to.
        seed: seed for the shuffles; the same seed gives byte-identical output.
        val_fraction: fraction of each class's (non-test) train files used for validation.
        test_fraction: fraction of each class held out as the test set when the
            dataset has no test folder.
        workers: decoding threads when no process pool is used; None: one per CPU (none
            for small sets).
        processes: processes writing the shards, each shard in one; None: one per CPU
            from :data:`cnnzoo.core.workers.PROCESS_THRESHOLD` images on with two or more
            CPUs, none below; 0: none (threads). The output is the same either way.
        overwrite: replace ``dest`` even if it is not an earlier split output.
        verify: check every file's sha256 against the manifest (``make bench`` turns it
            off to measure what it costs).

    Returns:
        The ``split.json`` dictionary.

    Raises:
        CnnzooError: bad arguments, a missing or invalid manifest, a file whose sha256
            differs from the manifest's, an image that cannot be decoded, a split that
            would be empty, ``dest`` holding something else, or another process
            writing it.
    """
    kwargs = {
        "img_size": img_size,
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "workers": workers,
        "processes": processes,
        "verify": verify,
    }
    if is_gcs(dest):
        return _split_to_gcs(ingested, dest, overwrite, kwargs)
    if is_gcs(ingested):
        return _split_from_gcs(ingested, dest, overwrite, kwargs)
    ingested, dest = Path(ingested), Path(dest)
    _check_arguments(ingested, dest, img_size, val_fraction, test_fraction)
    manifest = _read_manifest(ingested)
    assigned = _assign_manifest(ingested, manifest, seed, val_fraction, test_fraction)
    per_shard, n_proc, workers = _work_plan(assigned, img_size, workers, processes)

    info = _split_info(ingested, manifest, img_size, seed, val_fraction, test_fraction)
    with atomic_directory(dest, overwrite, kind=SPLIT_KIND) as tmp:
        _write_parts(tmp, ingested, manifest, assigned, info, per_shard, n_proc, workers, verify)
        warnings = split_warnings(info)
        for line in warnings:
            print(f"warning: split: {line}", file=sys.stderr)
        if warnings:  # absent when there are none: a clean split's split.json is as before
            info["warnings"] = warnings
        atomic_write_json(tmp / SPLIT_INFO, info)
    return info


def _split_to_gcs(ingested, dest, overwrite: bool, kwargs: dict[str, Any]) -> dict:
    """Split into a local scratch folder, then upload it to ``gs://`` ``dest``."""
    with GcsOutput(str(dest), SPLIT_KIND, overwrite=overwrite) as out:
        with tempfile.TemporaryDirectory(prefix="cnnzoo-split-out-") as scratch:
            info = split_dataset(ingested, Path(scratch) / "split", **kwargs)
            out.upload(Path(scratch) / "split")
    return info


def _split_from_gcs(ingested, dest, overwrite: bool, kwargs: dict[str, Any]) -> dict:
    """Download the ``gs://`` ingest output beside ``dest``, then split the copy."""
    with output_lock(dest), scratch_directory(dest) as work:
        check_replaceable(dest, SPLIT_KIND, overwrite)
        require_complete(str(ingested), "ingest")
        local = download_tree(str(ingested), Path(work) / "ingested")
        try:
            return split_dataset(local, dest, overwrite=overwrite, **kwargs)
        except CnnzooError as e:  # name the URI, not the scratch copy
            raise CnnzooError(str(e).replace(str(local), str(ingested).rstrip("/"))) from None


def _check_arguments(
    ingested: Path, dest: Path, img_size: int, val_fraction: float, test_fraction: float
) -> None:
    """Refuse a bad image size or fraction, or a ``dest`` that would replace the data."""
    if not isinstance(img_size, int) or img_size < 1:
        raise CnnzooError(f"img_size must be a positive integer, got {img_size!r}")
    if not 0.0 < val_fraction < 1.0:
        raise CnnzooError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not 0.0 < test_fraction < 1.0:
        raise CnnzooError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if dest.resolve() == ingested.resolve() or dest.resolve() in ingested.resolve().parents:
        raise CnnzooError(f"{dest}: the output folder would replace the ingested data {ingested}")


def _assign_manifest(
    ingested: Path,
    manifest: dict[str, Any],
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> dict[str, list[tuple[str, str]]]:
    """Assign the manifest's files to the splits (:func:`assign_splits`); none may be empty."""
    classes: list[str] = list(manifest["classes"])
    train_by_class: dict[str, list[str]] = {c: [] for c in classes}
    test_by_class: dict[str, list[str]] = {c: [] for c in classes}
    for f in manifest["files"]:
        (train_by_class if f["split"] == "train" else test_by_class)[f["label"]].append(f["path"])
    has_test = manifest["test_source"] is not None
    assigned = assign_splits(
        train_by_class, test_by_class if has_test else None, seed, val_fraction, test_fraction
    )
    for name in SPLITS:
        if not assigned[name]:
            raise CnnzooError(
                f"{ingested}: the {name} split would be empty "
                f"({sum(len(v) for v in train_by_class.values())} train images); add images"
            )
    return assigned


def _work_plan(
    assigned: dict[str, list[tuple[str, str]]],
    img_size: int,
    workers: int | None,
    processes: int | None,
) -> tuple[int, int, int]:
    """How the shards are written: images per shard, processes (0: none), threads."""
    total = sum(len(v) for v in assigned.values())
    per_shard = shard_size(img_size)
    n_shards_total = sum(max(1, math.ceil(len(v) / per_shard)) for v in assigned.values())
    n_proc = pool_size(total, n_shards_total, processes)
    if workers is None:
        workers = 1 if total < _POOL_THRESHOLD else min(usable_cpus(), 16)
    return per_shard, n_proc, workers


def _split_info(
    ingested: Path,
    manifest: dict[str, Any],
    img_size: int,
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> dict[str, Any]:
    """The ``split.json`` dictionary, its ``splits`` still empty."""
    return {
        "classes": list(manifest["classes"]),
        "img_size": img_size,
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "test_source": manifest["test_source"],
        "ingest_manifest_sha256": _file_sha256(ingested / MANIFEST),
        "resize": RESIZE_METHOD,
        "splits": {},
    }


def _write_parts(
    tmp: Path,
    ingested: Path,
    manifest: dict[str, Any],
    assigned: dict[str, list[tuple[str, str]]],
    info: dict[str, Any],
    per_shard: int,
    n_proc: int,
    workers: int,
    verify: bool,
) -> None:
    """Write every part's shards into ``tmp`` (in ``n_proc`` processes, or threads) and
    describe each part in ``info["splits"]``."""
    classes, img_size = info["classes"], info["img_size"]
    label_index = {c: i for i, c in enumerate(classes)}
    sha256 = {f["path"]: f["sha256"] for f in manifest["files"]}
    decoded = {f["path"]: f["decoded"] for f in manifest["files"] if "decoded" in f}
    jobs: list[tuple[str, int, list[tuple[str, int, str | None, Any]]]] = []
    try:
        for name in SPLITS:
            items = assigned[name]
            n_shards = max(1, math.ceil(len(items) / per_shard))
            shards = [f"{name}-{k:05d}-of-{n_shards:05d}.tfrecord" for k in range(n_shards)]
            paths = [str(ingested / p) for p, _ in items]
            hashes = [sha256[p] for p, _ in items] if verify else [None] * len(items)
            kept = [_kept_for(decoded.get(p), ingested, img_size) for p, _ in items]
            labels = [label_index[label] for _, label in items]
            if n_proc:  # written below, every part's shards in one pool
                entries = list(zip(paths, labels, hashes, kept, strict=True))
                jobs += [
                    (str(tmp / shard), img_size, entries[k * per_shard : (k + 1) * per_shard])
                    for k, shard in enumerate(shards)
                ]
            else:
                images = _decoded(paths, img_size, workers, hashes if verify else None, kept)
                _write_shards(tmp, shards, per_shard, labels, images, name)
            info["splits"][name] = _part_info(items, classes, shards)
            if not n_proc:
                print(f"split: {name} {len(items)} images in {n_shards} shard(s)", file=sys.stderr)
        if n_proc:
            _write_in_pool(n_proc, jobs, f"split {ingested}")
    except _ChangedFile as e:
        raise CnnzooError(
            f"{e}: sha256 differs from {ingested / MANIFEST} (changed or "
            "half-written since ingest); ingest the data again"
        ) from None
    except RuntimeError as e:
        raise CnnzooError(f"cannot decode ingested image {e}") from None


def split_warnings(info: dict[str, Any]) -> list[str]:
    """``split.json``'s ``warnings``: classes without a validation or test image (their
    precision and recall there would read 0 on no evidence)."""
    out = []
    for part in ("val", "test"):
        empty = [c for c, n in info["splits"][part]["per_class"].items() if n == 0]
        if empty:
            out.append(
                f"no {part} image of class(es) {', '.join(empty)}: their {part} figures "
                "mean nothing; add images or change the fractions"
            )
    return out


def _part_info(items: list[tuple[str, str]], classes: list[str], shards: list[str]) -> dict:
    """One part's entry of ``split.json``'s ``splits``: count, per class, shards, files."""
    per_class = {c: 0 for c in classes}
    for _, label in items:
        per_class[label] += 1
    return {
        "count": len(items),
        "per_class": per_class,
        "shards": shards,
        "files": [p for p, _ in items],
    }
