"""``make bench-memory``: how time and peak memory of split and training grow with the data.

For each dataset size (by default 2,000, 20,000 and 100,000 images) it writes that many
seeded 100 px JPEGs (5 classes, smooth shapes plus noise), ingests them, and measures
in fresh Python processes (``benchmarks.bench --worker``, so each peak resident memory,
``ru_maxrss``, is that step's own):

- ``ingest`` and ``split`` at 100 px: seconds, images/s, peak RSS;
- training: the ``simple`` model built, then ``cnnzoo.data.loader.load_split(train,
  training=True)`` at batch 258 for two epochs (images/s of the second) and a few
  steps with validation, three ways: train and val parts cached in memory, both
  streamed from their shards, and as training decides with the default
  ``cache_budget_mb`` (:func:`cnnzoo.data.loader.plan_cache`: peak under the budget).

One size is on disk at a time (removed before the next), so the disk use is that of the
largest size: about 1.5 GB per 20,000 images (JPEGs, ingest's kept decodes, shards).

Usage::

    python -m benchmarks.memory [--sizes 2000 20000 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench import (
    CLASSES,
    IMG_SIZE,
    NOTEBOOK_BATCH,
    SEED,
    machine_description,
    print_table,
)

DEFAULT_SIZES = (2_000, 20_000, 100_000)
TRAIN_STEPS = 5


def make_small_jpegs(dest: Path, total: int, seed: int = 0) -> float:
    """Write ``total`` 100 px JPEGs to ``dest/train/<class>/`` (and 2 per class to val/).

    Returns:
        Seconds taken.
    """
    import numpy as np
    import simplejpeg

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    base = [rng.integers(0, 256, (5, 5, 3)).astype(np.float32) for _ in CLASSES]
    per_class = -(-total // len(CLASSES))
    for split, n in (("train", per_class), ("val", 2)):
        for k, label in enumerate(CLASSES):
            folder = dest / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                coarse = base[k] + rng.normal(0, 40, (5, 5, 3)).astype(np.float32)
                img = np.kron(coarse, np.ones((20, 20, 1), np.float32))
                img += rng.normal(0, 6, img.shape).astype(np.float32)
                pixels = np.clip(img, 0, 255).astype(np.uint8)
                data = simplejpeg.encode_jpeg(pixels, quality=90, colorspace="RGB")
                (folder / f"{label}_{i:06d}.jpg").write_bytes(data)
    return time.perf_counter() - t0


def job_ingest(job: dict[str, Any]) -> dict[str, Any]:
    """Ingest ``job["data"]`` into ``job["out"]``."""
    from benchmarks.bench import _peak_rss_mb
    from cnnzoo.data.ingest import ingest

    t0 = time.perf_counter()
    ingest(job["data"], job["out"])
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": _peak_rss_mb()}


def job_split(job: dict[str, Any]) -> dict[str, Any]:
    """Split ``job["ingested"]`` at 100 px into ``job["out"]``."""
    from benchmarks.bench import _peak_rss_mb
    from cnnzoo.data.split import split_dataset

    t0 = time.perf_counter()
    info = split_dataset(job["ingested"], job["out"], img_size=IMG_SIZE, seed=SEED)
    return {
        "seconds": time.perf_counter() - t0,
        "train": info["splits"]["train"]["count"],
        "peak_rss_mb": _peak_rss_mb(),
    }


def job_train_memory(job: dict[str, Any]) -> dict[str, Any]:
    """Two epochs of the training feed, then a few ``simple`` steps with validation;
    images/s, peak RSS.

    ``job["mode"]``: ``cached`` (train and val parts in memory), ``streamed`` (both from
    their shards), or ``budget``: what training decides with the ``full`` profile's
    ``cache_budget_mb`` and shuffle buffer (:func:`cnnzoo.data.loader.plan_cache` after the
    model is built, as ``cnnzoo.training.train`` does).
    """
    import keras

    from benchmarks.bench import _peak_rss_mb
    from cnnzoo.config.profile import load_profile
    from cnnzoo.data.loader import load_split, plan_cache, read_split_info
    from cnnzoo.models.build import build_model

    keras.utils.set_random_seed(SEED)
    model = build_model("simple", num_classes=len(CLASSES), img_size=IMG_SIZE)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    defaults = load_profile("full")  # the notebook's scale: batch 258, 100 px
    if job["mode"] == "budget":
        plan = plan_cache(
            job["split"],
            ("train", "val"),
            defaults.cache_budget_mb,
            NOTEBOOK_BATCH,
            defaults.shuffle_buffer,
        )
    else:
        plan = dict.fromkeys(("train", "val"), job["mode"] == "cached")
    ds = load_split(
        job["split"],
        "train",
        NOTEBOOK_BATCH,
        training=True,
        seed=SEED,
        shuffle_buffer=defaults.shuffle_buffer,
        cache=plan["train"],
        cache_budget_mb=1e9,
    )
    val = load_split(job["split"], "val", NOTEBOOK_BATCH, cache=plan["val"], cache_budget_mb=1e9)
    count = int(read_split_info(job["split"])["splits"]["train"]["count"])
    seconds = []
    for _ in range(2):
        t0 = time.perf_counter()
        for _batch in ds:
            pass
        seconds.append(time.perf_counter() - t0)
    model.fit(ds, steps_per_epoch=TRAIN_STEPS, epochs=1, validation_data=val, verbose=0)
    return {
        "first_epoch_per_s": count / seconds[0],
        "images_per_s": count / seconds[1],
        "peak_rss_mb": _peak_rss_mb(),
        "plan": plan,
        "budget_mb": defaults.cache_budget_mb,
    }


JOBS = {"ingest": job_ingest, "split": job_split, "train_memory": job_train_memory}


def _worker(job: dict[str, Any]) -> dict[str, Any]:
    # bench's worker runner starts ``benchmarks/bench.py``; these jobs live here.
    import subprocess

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "--worker", json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY_RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"worker {job['kind']} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len("MEMORY_RESULT ") :])
    result["wall_s"] = time.perf_counter() - t0
    return result


def measure(total: int, work: Path) -> dict[str, Any]:
    """Generate, ingest, split and read ``total`` images under ``work``; the figures."""
    data, ingested, split = work / "jpegs", work / "ingested", work / "split"
    gen_s = make_small_jpegs(data, total)
    ing = _worker({"kind": "ingest", "data": str(data), "out": str(ingested)})
    shutil.rmtree(data)  # ingest holds its own copy
    spl = _worker({"kind": "split", "ingested": str(ingested), "out": str(split)})
    shutil.rmtree(ingested)
    cached = _worker({"kind": "train_memory", "split": str(split), "mode": "cached"})
    streamed = _worker({"kind": "train_memory", "split": str(split), "mode": "streamed"})
    budget = _worker({"kind": "train_memory", "split": str(split), "mode": "budget"})
    shutil.rmtree(split)
    images = total + 2 * len(CLASSES)
    return {
        "images": images,
        "train": spl["train"],
        "generate_s": gen_s,
        "ingest": ing,
        "split": spl,
        "cached": cached,
        "streamed": streamed,
        "budget": budget,
    }


def _plan(r: dict[str, Any]) -> str:
    ways = ", ".join("cached" if r["plan"][p] else "streamed" for p in ("train", "val"))
    under = "under" if r["peak_rss_mb"] <= r["budget_mb"] else "OVER"
    return f"{ways} / {r['peak_rss_mb']:.0f} ({under} {r['budget_mb']})"


def main(argv: list[str] | None = None) -> int:
    """Measure every size and print one table; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--keep", type=Path, help="work in this folder (emptied per size)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        job = json.loads(args.worker)
        print("MEMORY_RESULT " + json.dumps(JOBS[job["kind"]](job)), flush=True)
        return 0
    print(f"machine: {machine_description()}")
    base = args.keep or Path(tempfile.mkdtemp(prefix="cnnzoo-bench-memory-"))
    rows = []
    try:
        for total in args.sizes:
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            work = base / f"n{total}"
            shutil.rmtree(work, ignore_errors=True)
            r = measure(total, work)
            rows.append(
                [
                    f"{r['images']:,}",
                    f"{r['ingest']['seconds']:.1f} / {r['ingest']['peak_rss_mb']:.0f}",
                    f"{r['split']['seconds']:.1f} / {r['split']['peak_rss_mb']:.0f}",
                    f"{r['cached']['images_per_s']:,.0f} / {r['cached']['peak_rss_mb']:.0f}",
                    f"{r['streamed']['images_per_s']:,.0f} / {r['streamed']['peak_rss_mb']:.0f}",
                    _plan(r["budget"]),
                    load,
                ]
            )
            print(f"measured {total:,} images: {json.dumps(r)}", file=sys.stderr, flush=True)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print_table(
        [
            "images",
            "ingest s / RSS MB",
            "split s / RSS MB",
            "train cached img/s / RSS MB",
            "train streamed img/s / RSS MB",
            "default budget: train, val / RSS MB",
            "load avg",
        ],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
