"""Read a split dataset (the output of ``cnnzoo split``) as ``tf.data`` pipelines.

The split is decoded once into TFRecord shards of raw uint8 pixels, so reading it
only parses fixed-size records: batches of serialized examples are parsed together
(``tf.io.parse_example``), the pixels are reinterpreted with ``tf.io.decode_raw`` and
the parsed uint8 arrays are cached in memory while training's whole process stays
under a budget (``cache_budget_mb``, 4 GiB by default; :func:`plan_cache`); a part that
does not fit is streamed from its shards every epoch (they already hold decoded
pixels, so streaming costs a read and a parse, not a decode), and memory stays
bounded by the shuffle buffer. Images leave the pipeline as float32 in 0..255; every
model scales its own inputs.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path
from typing import Any

from cnnzoo.core.errors import CnnzooError
from cnnzoo.data import artifacts
from cnnzoo.storage.layout import SPLIT_INFO

SPLIT_NAMES = ("train", "val", "test")
#: Default memory budget of the in-memory cache (MiB of decoded uint8 pixels).
CACHE_BUDGET_MB = 4096
#: Batches tf.data may hold at once beyond the cache (parallel parse, the float32 copies,
#: prefetch): part of what :func:`plan_cache` keeps free of the budget.
BATCHES_IN_FLIGHT = 8
#: What training's first epochs add to the process beyond the data (activations,
#: gradients, the optimizer's slots, TensorFlow's runtime caches): 0.5-1.0 GB from the
#: built model to the peak for simple, mid and resnet at 100 px, batch 64, streamed.
TRAINING_MARGIN_MB = 1536


def read_split_info(split_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and sanity-check ``split.json`` of a split dataset.

    Args:
        split_dir: output folder of ``cnnzoo split``.

    Returns:
        The parsed ``split.json`` (see docs/formats.md).

    Raises:
        CnnzooError: the file is missing, not JSON, or lacks a required key.
    """
    path = Path(split_dir) / SPLIT_INFO
    if not path.is_file():
        raise CnnzooError(f"{path}: file not found (is {split_dir} the output of 'cnnzoo split'?)")
    return artifacts.read_split_info(path)  # the declared schema, every key checked


def resident_mb() -> float:
    """This process's resident memory now, in MiB (Linux ``/proc/self/statm``; elsewhere
    the peak so far, an upper bound)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1024**2
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; bytes on macOS
        return peak / 1024**2 if sys.platform == "darwin" else peak / 1024


def plan_cache(
    split_dir: str | os.PathLike,
    parts: tuple[str, ...],
    budget_mb: float,
    batch_size: int,
    shuffle_buffer: int,
    resident: float | None = None,
) -> dict[str, bool]:
    """Which of ``parts`` training may cache in memory so its peak stays under ``budget_mb``.

    The budget is for the whole process: what it holds now (``resident``, MiB; default
    :func:`resident_mb`: TensorFlow and the built model), the shuffle buffer,
    :data:`BATCHES_IN_FLIGHT` float32 batches and :data:`TRAINING_MARGIN_MB` for
    training itself are taken off first, then parts are cached
    in the order given while their pixels fit in what is left; the others are streamed
    from their shards every epoch.

    Returns:
        ``{part: cache it}``.
    """
    info = read_split_info(split_dir)
    size = int(info["img_size"])
    image_mb = size * size * 3 / 1024**2
    resident = resident_mb() if resident is None else resident
    working = (shuffle_buffer + BATCHES_IN_FLIGHT * batch_size * 4) * image_mb
    left = budget_mb - resident - working - TRAINING_MARGIN_MB
    plan = {}
    for part in parts:
        need = int(info["splits"].get(part, {}).get("count", 0)) * image_mb
        plan[part] = need <= left
        if plan[part]:
            left -= need
    return plan


def load_split(
    split_dir: str | os.PathLike,
    name: str,
    batch_size: int,
    training: bool = False,
    shuffle_buffer: int = 2048,
    seed: int = 42,
    cache: bool = True,
    cache_budget_mb: float = CACHE_BUDGET_MB,
):
    """A ``tf.data.Dataset`` of one part of a split dataset.

    Args:
        split_dir: output folder of ``cnnzoo split``.
        name: ``"train"``, ``"val"`` or ``"test"``.
        batch_size: images per batch (the last batch may be smaller).
        training: shuffle the examples (differently every epoch, seeded). When false the
            order is the record order of ``split.json``'s ``files`` list, every time.
        shuffle_buffer: upper bound on the shuffle buffer (examples).
        seed: shuffle seed.
        cache: keep the parsed uint8 pixels in memory after the first pass, if they fit
            in ``cache_budget_mb``.
        cache_budget_mb: the largest part (MiB of pixels) cached in memory; a larger
            one is streamed from its shards every epoch.

    Returns:
        A dataset of ``(images, labels)``: float32 ``(B, S, S, 3)`` in 0..255 and
        int32 ``(B,)`` class indices.

    Raises:
        CnnzooError: unknown part name, bad batch size, or a shard file is missing.
    """
    import tensorflow as tf

    info = read_split_info(split_dir)
    if name not in SPLIT_NAMES:
        raise CnnzooError(f"unknown split part {name!r} (valid: {', '.join(SPLIT_NAMES)})")
    part = info["splits"].get(name)
    if not isinstance(part, dict) or "shards" not in part:
        raise CnnzooError(f"{Path(split_dir) / SPLIT_INFO}: no 'splits.{name}.shards' entry")
    if batch_size < 1:
        raise CnnzooError(f"batch_size must be >= 1, got {batch_size}")
    files = [str(Path(split_dir) / s) for s in part["shards"]]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise CnnzooError(f"{missing[0]}: shard listed in {SPLIT_INFO} not found")
    if not files:
        raise CnnzooError(f"{Path(split_dir) / SPLIT_INFO}: split {name!r} has no shards")
    size = int(info["img_size"])
    count = int(part.get("count", 0))
    if cache and count * size * size * 3 > cache_budget_mb * 1024**2:
        cache = False
        print(
            f"data: {name} ({count} images, {count * size * size * 3 / 1024**2:,.0f} MiB) is "
            f"over the cache budget ({cache_budget_mb:g} MiB); streaming it from its shards",
            file=sys.stderr,
        )

    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(serialized):
        ex = tf.io.parse_example(serialized, features)
        pixels = tf.io.decode_raw(ex["image"], tf.uint8)
        images = tf.reshape(pixels, [-1, size, size, 3])
        return images, tf.cast(ex["label"], tf.int32)

    def to_float(images, labels):
        return tf.cast(images, tf.float32), labels

    autotune = tf.data.AUTOTUNE
    # Parallel reads interleave the shards; evaluation reads them in order instead, so
    # the example order equals split.json's record order (predictions line up with files).
    reads = min(len(files), 8) if training and len(files) > 1 else None
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=reads)
    ds = ds.batch(batch_size).map(parse, num_parallel_calls=autotune, deterministic=True)
    if training:
        ds = ds.unbatch()
        if cache:
            ds = ds.cache()
        buffer = max(1, min(shuffle_buffer, count if count > 0 else shuffle_buffer))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    elif cache:
        ds = ds.cache()
    ds = ds.map(to_float, num_parallel_calls=autotune, deterministic=True)
    if count > 0:
        # Known length: Keras shows real progress and needs no end-of-data probing; a
        # split.json whose count disagrees with the shards fails loudly at the end.
        ds = ds.apply(tf.data.experimental.assert_cardinality(-(-count // batch_size)))
    # tf.data's autotuning may otherwise buffer up to half the machine's RAM of float32
    # batches (31 MB each at 100 px, batch 258): bound it to the batches plan_cache
    # counts, and start the parallel maps narrow instead of 16 wide.
    options = tf.data.Options()
    options.autotune.ram_budget = int(
        max(64 * 1024**2, BATCHES_IN_FLIGHT * batch_size * size * size * 3 * 4)
    )
    options.autotune.initial_parallelism = 2
    return ds.prefetch(autotune).with_options(options)
