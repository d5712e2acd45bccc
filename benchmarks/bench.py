"""``make bench``: cnnzoo's input path against the seed notebook's, on this machine.

One run generates a seeded dataset of JPEGs of realistic size (5 classes, 200-500 px
sides, photo-like noise) at the seed notebook's scale: 11,453 training images after the
85/15 validation split, as in the notebook. It prints:

1. input feed rate alone (images/s delivered, no model, 100 px, batch 258, whole epochs
   after a warm-up epoch; median of the epochs and their spread): the notebook's
   ``keras.utils.image_dataset_from_directory`` on the JPEG folder (re-decodes every
   epoch) against cnnzoo's split + ``cnnzoo.data.loader.load_split``;
2. training ``simple``, ``mid`` and ``resnet`` at 100 px fed each way, in alternating
   rounds (2 per side by default, each a fresh process: warm-up steps, then timed steps
   for at least 8 s), with each round's images/s and load average; each side's best
   round, their ratio and the peak resident memory of each side;
3. data preparation (``cnnzoo.data.ingest`` + ``cnnzoo.data.split``) against a plain single-process
   Pillow decode-and-resize loop over the same files;
4. a local pipeline run of two configurations (``cnnzoo.orchestration.local_run.run_local``, on a
   300-per-class subset) against the same steps called in sequence in one Python
   process, and the measured fixed cost of one task (a fresh Python process importing
   what a task imports), which explains the difference;
5. one line per target (``target ...: figure, met|MISSED``), then the line
   ``input feed speedup vs notebook (100px): X.XXx``.

How memory grows with the dataset is ``benchmarks/memory.py`` (``make bench-memory``).

Every measurement runs in its own Python process (``--worker``), so each one's peak
memory (``ru_maxrss``) is its own and no run warms a cache for the next. Ratios compare
runs of this one script on this one machine; absolute figures depend on the machine.

Usage::

    python -m benchmarks.bench [--quick] [--per-class N] [--skip-pipeline]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

IMG_SIZE = 100
NOTEBOOK_BATCH = 258
VAL_FRACTION = 0.15
SEED = 42
CLASSES = ("cat", "dog", "elephant", "horse", "lion")
RESULT_TAG = "BENCH_RESULT "
FINAL_LINE = "input feed speedup vs notebook (100px): {:.2f}x"
PIPELINE_MODELS = ("simple", "mid")
#: The notebook's training-set size; 2,695 per class x 5 classes, 15% held out -> 11,454.
NOTEBOOK_TRAIN_IMAGES = 11_453
SEED_PER_CLASS = 2695
PIPELINE_PER_CLASS = 300
TARGETS = {"feed": 10.0, "train": 0.95, "prep": 1.5, "orchestration": 1.3, "wall_s": 600}
#: Most timed chunks in one training round (a bound should the clock misbehave).
MAX_CHUNKS = 200
REPO_ROOT = Path(__file__).resolve().parent.parent


# --- the generated dataset ---------------------------------------------------------------


def _render_jpeg(job: tuple[int, int, int, int, int, int]) -> tuple[bytes, int, int]:
    """One seeded photo-like JPEG: a demo-data scene upscaled, plus sensor-like noise."""
    import numpy as np
    from PIL import Image

    from cnnzoo.data.demo import CLASSES as SHAPES
    from cnnzoo.data.demo import render_image

    seed, split_idx, class_idx, i, min_side, max_side = job
    rng = np.random.default_rng([seed, split_idx, class_idx, i])
    w, h = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    scene = render_image(SHAPES[class_idx % len(SHAPES)], max(w, h) // 2, rng)
    img = scene.resize((w, h), Image.BICUBIC)
    # Fine noise gives the files the entropy (and so the decode cost) of photographs.
    noisy = np.asarray(img, dtype=np.float32) + rng.standard_normal((h, w, 3), np.float32) * 5
    buf = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB").save(
        buf, format="JPEG", quality=90
    )
    return buf.getvalue(), w, h


def make_jpeg_dataset(
    dest: Path,
    per_class: int,
    test_per_class: int,
    seed: int = 0,
    min_side: int = 200,
    max_side: int = 500,
    workers: int | None = None,
) -> dict[str, float]:
    """Write ``dest/train/<class>/*.jpg`` and ``dest/val/<class>/*.jpg`` (the test set).

    Args:
        dest: folder to create.
        per_class: training images per class.
        test_per_class: test images per class.
        seed: the same seed gives the same bytes.
        min_side: smallest image width/height in pixels.
        max_side: largest image width/height in pixels.
        workers: generating processes (default: one per CPU).

    Returns:
        ``{"images", "mean_kb", "mean_width", "mean_height", "seconds"}``.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    t0 = time.perf_counter()
    jobs, paths = [], []
    for split_idx, (split, n) in enumerate((("train", per_class), ("val", test_per_class))):
        for class_idx, label in enumerate(CLASSES):
            (dest / split / label).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                jobs.append((seed, split_idx, class_idx, i, min_side, max_side))
                paths.append(dest / split / label / f"{label}_{i:04d}.jpg")
    workers = workers or os.cpu_count() or 1
    sizes, widths, heights = [], [], []
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        for path, (data, w, h) in zip(
            paths, pool.map(_render_jpeg, jobs, chunksize=16), strict=True
        ):
            path.write_bytes(data)
            sizes.append(len(data))
            widths.append(w)
            heights.append(h)
    n = len(paths)
    return {
        "images": n,
        "mean_kb": sum(sizes) / n / 1024,
        "mean_width": sum(widths) / n,
        "mean_height": sum(heights) / n,
        "seconds": time.perf_counter() - t0,
    }


# --- the two ways of feeding a model -------------------------------------------------------


def notebook_dataset(data_dir: str, batch_size: int):
    """The notebook's input: JPEGs decoded and resized by Keras on every epoch.

    Returns:
        ``(dataset, images per epoch)``: the training subset (85%, seed 42) of ``train/``.
    """
    import keras

    ds = keras.utils.image_dataset_from_directory(
        str(Path(data_dir) / "train"),
        validation_split=VAL_FRACTION,
        subset="training",
        seed=SEED,
        image_size=(IMG_SIZE, IMG_SIZE),
        batch_size=batch_size,
        verbose=False,
    )
    return ds, len(ds.file_paths)


def cnnzoo_dataset(split_dir: str, batch_size: int):
    """cnnzoo's input: the split's decoded pixels through ``load_split(training=True)``.

    Returns:
        ``(dataset, images per epoch)``.
    """
    from cnnzoo.data.loader import load_split, read_split_info

    ds = load_split(split_dir, "train", batch_size, training=True, seed=SEED)
    return ds, int(read_split_info(split_dir)["splits"]["train"]["count"])


def _dataset(job: dict[str, Any], batch_size: int):
    if job["way"] == "notebook":
        return notebook_dataset(job["data"], batch_size)
    return cnnzoo_dataset(job["split"], batch_size)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- worker jobs (each in its own process) -------------------------------------------------


def job_feed(job: dict[str, Any]) -> dict[str, Any]:
    """Iterate whole epochs of one way's dataset with no model; images/s after warm-up."""
    import statistics

    ds, _ = _dataset(job, NOTEBOOK_BATCH)
    rates = []
    for epoch in range(1 + job["epochs"]):
        t0 = time.perf_counter()
        n = 0
        for images, _labels in ds:
            n += int(images.shape[0])
        if epoch > 0:  # the first epoch fills caches and starts the threads
            rates.append(n / (time.perf_counter() - t0))
    return {
        "images_per_epoch": n,
        "images_per_s": statistics.median(rates),
        "min_per_s": min(rates),
        "max_per_s": max(rates),
        "peak_rss_mb": _peak_rss_mb(),
    }


def job_train(job: dict[str, Any]) -> dict[str, Any]:
    """Train one model fed one way: one round of section 2.

    A warm-up chunk of ``job["steps"]`` steps (it traces the step function and starts
    the input threads), then timed chunks of as many steps until they add up to at least
    ``job["seconds"]`` seconds and ``job["chunks"]`` chunks; images/s of the timed chunks.
    """
    import keras

    from cnnzoo.models.build import build_model

    keras.utils.set_random_seed(SEED)
    ds, per_epoch = _dataset(job, job["batch_size"])
    model = build_model(job["model"], num_classes=len(CLASSES), img_size=IMG_SIZE)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    times: list[float] = []

    class ChunkTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self._t0)
            timed = times[1:]
            if len(timed) >= job["chunks"] and sum(timed) >= job["seconds"]:
                self.model.stop_training = True

    steps = job["steps"]
    # A Keras "epoch" here is one chunk; the iterator over ds.repeat() carries on between them.
    model.fit(
        ds.repeat(),
        steps_per_epoch=steps,
        epochs=1 + MAX_CHUNKS,
        callbacks=[ChunkTimer()],
        verbose=0,
    )
    timed = times[1:]
    return {
        "images_per_epoch": per_epoch,
        "steps": steps * len(timed),
        "seconds": sum(timed),
        "images_per_s": steps * job["batch_size"] * len(timed) / sum(timed),
        "load": os.getloadavg()[0],
        "peak_rss_mb": _peak_rss_mb(),
    }


def pil_decode_loop(paths: list[str], img_size: int = IMG_SIZE) -> int:
    """The baseline preparation: decode and resize every file in one process, one by one.

    Returns:
        Bytes of pixels produced (so the work cannot be skipped).
    """
    from PIL import Image

    total = 0
    for p in paths:
        with Image.open(p) as img:
            rgb = img.convert("RGB").resize((img_size, img_size), Image.BILINEAR)
        total += len(rgb.tobytes())
    return total


def job_prep(job: dict[str, Any]) -> dict[str, Any]:
    """Time ``ingest`` + ``split`` (as ``cnnzoo`` runs them) and the plain Pillow loop.

    Neither step imports TensorFlow (its import would cost more than the split), so
    neither does this job. Last, the same steps confined to one CPU (no pool, one thread)
    give the ratio per core.
    """
    from cnnzoo.data.ingest import ingest
    from cnnzoo.data.split import split_dataset

    data, work = Path(job["data"]), Path(job["work"])
    paths = sorted(str(p) for p in data.rglob("*.jpg"))
    # Rounds alternate which side runs first, so neither always gets the quieter moment
    # or the warmer page cache; each side's best round is compared.
    rounds = []
    for r in range(job.get("rounds", 1)):
        ingested = work / ("ingested" if r == 0 else f"ingested-{r}")
        split = Path(job["split"]) if r == 0 else work / f"split-{r}"
        times = {}
        for side in ("cnnzoo", "pil") if r % 2 == 0 else ("pil", "cnnzoo"):
            t0 = time.perf_counter()
            if side == "pil":
                pil_decode_loop(paths)
                times["pil_s"] = time.perf_counter() - t0
                continue
            ingest(str(data), ingested)
            t1 = time.perf_counter()
            info = split_dataset(
                ingested, split, img_size=IMG_SIZE, seed=SEED, val_fraction=VAL_FRACTION
            )
            times["ingest_s"], times["split_s"] = t1 - t0, time.perf_counter() - t1
        times["load"] = os.getloadavg()[0]
        rounds.append(times)
        if r > 0:
            shutil.rmtree(ingested)
            shutil.rmtree(split)
    best_cnnzoo = min(rounds, key=lambda t: t["ingest_s"] + t["split_s"])
    # As on a one-CPU machine: cnnzoo sees one usable CPU (no pool; threads share it).
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        t0 = time.perf_counter()
        ingest(str(data), work / "ingested-1cpu")
        split_dataset(
            work / "ingested-1cpu",
            work / "split-1cpu",
            img_size=IMG_SIZE,
            seed=SEED,
            val_fraction=VAL_FRACTION,
        )
    finally:
        os.sched_setaffinity(0, cpus)
    one_cpu_s = time.perf_counter() - t0
    shutil.rmtree(work / "ingested-1cpu")
    shutil.rmtree(work / "split-1cpu")
    # What checking each file's sha256 against the manifest costs: the split again with
    # and without the check (files now in the page cache).
    best = {True: math.inf, False: math.inf}
    for _ in range(1):
        for verify in (False, True):
            t = time.perf_counter()
            split_dataset(
                work / "ingested",
                work / "split-again",
                img_size=IMG_SIZE,
                seed=SEED,
                val_fraction=VAL_FRACTION,
                verify=verify,
            )
            best[verify] = min(best[verify], time.perf_counter() - t)
    shutil.rmtree(work / "split-again")
    shutil.rmtree(work / "ingested")
    return {
        "images": len(paths),
        "ingest_s": best_cnnzoo["ingest_s"],
        "split_s": best_cnnzoo["split_s"],
        "pil_s": min(t["pil_s"] for t in rounds),
        "one_cpu_s": one_cpu_s,
        "cpus": len(cpus),
        "rounds": rounds,
        "split_verified_s": best[True],
        "split_unverified_s": best[False],
        "train_count": info["splits"]["train"]["count"],
        "peak_rss_mb": _peak_rss_mb(),
    }


def job_sequence(job: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's steps called in order in this one process (the baseline of step 4)."""
    from cnnzoo.config.profile import load_profile
    from cnnzoo.data.ingest import ingest
    from cnnzoo.data.split import split_dataset
    from cnnzoo.evaluation.evaluate import evaluate_model
    from cnnzoo.reporting.report import build_report
    from cnnzoo.training.train import train_model

    work = Path(job["work"])
    profile = load_profile(job["profile"], job["overrides"])
    ingest(job["data"], work / "ingested")
    split_dataset(
        work / "ingested",
        work / "split",
        img_size=profile.img_size,
        seed=profile.seed,
        val_fraction=profile.val_fraction,
        test_fraction=profile.test_fraction,
    )
    evaluations = []
    for model in job["models"]:
        train_model(model, work / "split", work / "train" / model, profile)
        evaluations.append(
            evaluate_model(work / "train" / model, work / "split", work / "eval" / f"{model}.json")
        )
    build_report(evaluations, work / "report")
    return {"peak_rss_mb": _peak_rss_mb()}


def job_imports(job: dict[str, Any]) -> dict[str, Any]:
    """Import what one pipeline task imports (the fixed part of a task's cost).

    ``job["tensorflow"]``: a train or evaluate task (kfp, TensorFlow and cnnzoo's train
    and evaluate); otherwise a task that needs no TensorFlow (fingerprint, plan, ingest,
    split, report: kfp and cnnzoo's ingest, split and report).
    """
    t0 = time.perf_counter()
    import kfp.dsl  # noqa: F401

    if job.get("tensorflow", True):
        import tensorflow  # noqa: F401

        import cnnzoo.evaluation.evaluate  # noqa: F401
        import cnnzoo.training.train  # noqa: F401
    else:
        import cnnzoo.data.ingest  # noqa: F401
        import cnnzoo.data.split  # noqa: F401
        import cnnzoo.reporting.report  # noqa: F401
    return {"import_s": time.perf_counter() - t0, "peak_rss_mb": _peak_rss_mb()}


JOBS = {
    "feed": job_feed,
    "train": job_train,
    "prep": job_prep,
    "sequence": job_sequence,
    "imports": job_imports,
}


def run_worker(job: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """Run ``job`` in a fresh Python process; return its result plus ``wall_s``.

    Raises:
        RuntimeError: the worker failed (the message ends with its output's tail).
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"worker {job['kind']} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len(RESULT_TAG) :])
    result["wall_s"] = wall
    return result


# --- reporting ------------------------------------------------------------------------------


def machine_description() -> str:
    """CPU model, cores and memory of this machine, on one line."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024**2:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{model}, {os.cpu_count()} logical CPUs ({usable} usable){mem}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Print a plain left/right-aligned text table (first column left, others right)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    sys.stdout.flush()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _section(title: str) -> None:
    print(f"\n== {title} [load average {_load()}]", flush=True)


# --- main -----------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        return {
            "per_class": args.per_class or 16,
            "test_per_class": 2,
            "sides": (200, 300),
            "feed_epochs": 2,
            "train_rounds": 2,
            "train_chunks": 1,
            "train_seconds": 0.0,
            "train_steps": 2,
            "batch_size": 16,
            "models": args.models or ["simple"],
            "pipeline_per_class": 16,
            "prep_rounds": 2,
        }
    per_class = args.per_class or SEED_PER_CLASS
    return {
        "per_class": per_class,
        "test_per_class": max(2, per_class // 20),
        "sides": (200, 500),
        "feed_epochs": args.feed_epochs,
        "train_rounds": args.train_rounds,
        "train_chunks": 2,
        "train_seconds": args.train_seconds,
        "train_steps": args.train_steps,
        "batch_size": args.batch_size,
        "models": args.models or ["simple", "mid", "resnet"],
        "pipeline_per_class": min(per_class, PIPELINE_PER_CLASS),
        "prep_rounds": 2,
    }


def _subset(data: Path, dest: Path, per_class: int) -> Path:
    """The first ``per_class`` files of each class folder of ``data``, hard-linked."""
    for folder in sorted(p for p in data.glob("*/*") if p.is_dir()):
        out = dest / folder.relative_to(data)
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(folder.iterdir())[:per_class]:
            try:
                os.link(f, out / f.name)
            except OSError:
                shutil.copyfile(f, out / f.name)
    return dest


#: Tasks of a local run that import no TensorFlow: fingerprint, plan, ingest, split, report.
LIGHT_TASKS = 5


def task_cost() -> tuple[float, float]:
    """The fixed cost of one task: the wall time of a fresh Python process importing
    what a task without TensorFlow imports, and what a train or evaluate task imports;
    best of two each.

    Returns:
        ``(light seconds, TensorFlow task seconds)``.
    """
    light = min(run_worker({"kind": "imports", "tensorflow": False})["wall_s"] for _ in range(2))
    heavy = min(run_worker({"kind": "imports", "tensorflow": True})["wall_s"] for _ in range(2))
    return light, heavy


def fixed_cost(models: int, light: float, heavy: float) -> float:
    """CPU seconds a local run of ``models`` configurations spends starting tasks beyond
    one process that imports everything once: every task's start, less that one."""
    return LIGHT_TASKS * light + 2 * models * heavy - heavy


def bench_pipeline(
    data: Path, work: Path, quick: bool, rounds: int = 2
) -> tuple[float, float] | str:
    """Time a local pipeline run of two configurations and the in-process sequence.

    They alternate for ``rounds`` rounds (each side's best counts: single runs of about
    20 s swing by a few seconds on this machine).

    Returns:
        ``(pipeline seconds, sequence seconds)``, or why the pipeline could not run.
    """
    overrides = ["max_epochs=1"] + (["img_size=72"] if quick else [])
    try:
        from cnnzoo.orchestration.local_run import run_local
        from cnnzoo.orchestration.study import Study
    except Exception as e:  # the pipeline extras may be missing on a trimmed install
        return f"unavailable ({type(e).__name__}: {e})"
    pipeline, sequence = [], []
    for r in range(rounds):
        t0 = time.perf_counter()
        try:
            study = Study(
                data_uri=str(data),
                models=tuple(PIPELINE_MODELS),
                profile="demo",
                overrides=overrides,
            )
            run_local(
                study, runs_dir=work / "runs", console=sys.stderr if r == 0 else io.StringIO()
            )
        except Exception as e:
            return f"failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        pipeline.append(time.perf_counter() - t0)
        seq = run_worker(
            {
                "kind": "sequence",
                "data": str(data),
                "work": str(work / f"sequence-{r}"),
                "profile": "demo",
                "overrides": overrides,
                "models": list(PIPELINE_MODELS),
            }
        )
        sequence.append(seq["wall_s"])
        print(
            f"round {r + 1}: pipeline {pipeline[-1]:.1f} s, sequence {sequence[-1]:.1f} s "
            f"(load average {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    return min(pipeline), min(sequence)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a few minutes)")
    parser.add_argument(
        "--per-class", type=int, help=f"training JPEGs per class (default {SEED_PER_CLASS})"
    )
    parser.add_argument("--feed-epochs", type=int, default=3, help="timed feed epochs")
    parser.add_argument(
        "--train-rounds", type=int, default=2, help="training rounds per side (alternating)"
    )
    parser.add_argument(
        "--train-seconds", type=float, default=8.0, help="least timed seconds of a training round"
    )
    parser.add_argument(
        "--train-steps", type=int, default=5, help="training steps per chunk (and warm-up)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size")
    parser.add_argument("--models", nargs="+", help="models to train (default simple mid resnet)")
    parser.add_argument("--skip-pipeline", action="store_true", help="skip the pipeline timing")
    parser.add_argument("--keep", type=Path, help="write the data here and keep it")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        job = json.loads(args.worker)
        result = JOBS[job["kind"]](job)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0

    s = _settings(args)
    print(f"machine: {machine_description()}")
    print(f"python {platform.python_version()}, {platform.platform()}", flush=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="cnnzoo-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(s, args, work)
    except RuntimeError as e:  # a worker failed; its output's tail is in the message
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _verdict(figure: float, target: float, higher_is_better: bool = True) -> str:
    met = figure >= target if higher_is_better else figure <= target
    return "met" if met else "MISSED"


def _run(s: dict[str, Any], args: argparse.Namespace, work: Path) -> int:
    """Generate the data, run every measurement, print the sections and the targets."""
    t_start, start_load = time.perf_counter(), _load()
    print(f"load average at start: {start_load}", flush=True)
    data, split = work / "jpegs", work / "split"
    _generate_data(s, data)

    # 3 first: its split is what cnnzoo's way reads in 1 and 2.
    prep = run_worker(
        {
            "kind": "prep",
            "data": str(data),
            "work": str(work),
            "split": str(split),
            "rounds": s["prep_rounds"],
        }
    )
    feed_ratio = _feed_section(s, data, split)
    train = _train_section(s, data, split)
    prep_ratio = _prep_section(prep)
    overhead, light, heavy = _orchestration_section(s, args, data, work)
    _print_targets(t_start, start_load, feed_ratio, min(train), prep_ratio, overhead, light, heavy)
    return 0


def _generate_data(s: dict[str, Any], data: Path) -> None:
    """Generate the JPEG dataset into ``data`` (replacing it) and describe it."""
    if data.exists():
        shutil.rmtree(data)
    gen = make_jpeg_dataset(
        data, s["per_class"], s["test_per_class"], min_side=s["sides"][0], max_side=s["sides"][1]
    )
    print(
        f"data: {gen['images']} JPEGs, {len(CLASSES)} classes ({s['per_class']} train + "
        f"{s['test_per_class']} test per class), {s['sides'][0]}-{s['sides'][1]} px "
        f"(mean {gen['mean_width']:.0f}x{gen['mean_height']:.0f}), mean {gen['mean_kb']:.1f} KB;"
        f" generated in {gen['seconds']:.1f} s",
        flush=True,
    )


def _feed_section(s: dict[str, Any], data: Path, split: Path) -> float:
    """Section 1, the input feed rate of each way; returns cnnzoo's / the notebook's."""
    _section(
        f"1. input feed rate, no model ({IMG_SIZE} px, batch {NOTEBOOK_BATCH}, "
        f"{s['feed_epochs']} epoch(s) after 1 warm-up; median and range of the epochs)"
    )
    feed = {}
    for way in ("notebook", "cnnzoo"):
        feed[way] = run_worker(
            {
                "kind": "feed",
                "way": way,
                "data": str(data),
                "split": str(split),
                "epochs": s["feed_epochs"],
            }
        )
    feed_ratio = feed["cnnzoo"]["images_per_s"] / feed["notebook"]["images_per_s"]
    print_table(
        ["input path", "images/epoch", "median images/s", "range images/s", "peak RSS MB"],
        [
            [
                label,
                str(feed[way]["images_per_epoch"]),
                f"{feed[way]['images_per_s']:,.0f}",
                f"{feed[way]['min_per_s']:,.0f}-{feed[way]['max_per_s']:,.0f}",
                f"{feed[way]['peak_rss_mb']:.0f}",
            ]
            for way, label in (
                ("notebook", "notebook: image_dataset_from_directory"),
                ("cnnzoo", "cnnzoo: split + load_split"),
            )
        ],
    )
    worst = feed["cnnzoo"]["min_per_s"] / feed["notebook"]["max_per_s"]
    print(f"ratio cnnzoo / notebook: {feed_ratio:.2f}x", flush=True)
    print(f"ratio, slowest cnnzoo epoch / fastest notebook epoch: {worst:.2f}x", flush=True)
    return feed_ratio


def _train_round(s: dict[str, Any], model: str, way: str, data: Path, split: Path):
    return run_worker(
        {
            "kind": "train",
            "way": way,
            "model": model,
            "data": str(data),
            "split": str(split),
            "chunks": s["train_chunks"],
            "seconds": s["train_seconds"],
            "steps": s["train_steps"],
            "batch_size": s["batch_size"],
        }
    )


def _train_section(s: dict[str, Any], data: Path, split: Path) -> list[tuple[float, str, str]]:
    """Section 2, training each model fed each way; returns per model cnnzoo's / the
    notebook's images/s (best round of each side), the model and its rounds in words.

    The two sides run in alternating rounds, each in a fresh process, the first side
    swapping every round, so that a busy moment hits both sides rather than one; each
    side's best round counts (the load only ever slows a round down)."""
    _section(
        f"2. training at {IMG_SIZE} px, batch {s['batch_size']}, Adam ({s['train_rounds']} "
        f"alternating rounds per side, each a fresh process: a warm-up of "
        f"{s['train_steps']} steps, then chunks of {s['train_steps']} steps for at least "
        f"{s['train_seconds']:g} s; best round of each side)"
    )
    rows, train = [], []
    for model in s["models"]:
        rounds: dict[str, list[dict[str, Any]]] = {"notebook": [], "cnnzoo": []}
        for r in range(s["train_rounds"]):
            order = ("notebook", "cnnzoo") if r % 2 == 0 else ("cnnzoo", "notebook")
            for way in order:
                rounds[way].append(_train_round(s, model, way, data, split))
            nb, cz = rounds["notebook"][-1], rounds["cnnzoo"][-1]
            print(
                f"{model} round {r + 1} ({order[0]} first): notebook "
                f"{nb['images_per_s']:,.1f} img/s ({nb['steps']} steps, {nb['seconds']:.1f} s, "
                f"load average {nb['load']:.2f}), cnnzoo {cz['images_per_s']:,.1f} img/s "
                f"({cz['steps']} steps, {cz['seconds']:.1f} s, load average {cz['load']:.2f}): "
                f"{cz['images_per_s'] / nb['images_per_s']:.2f}x",
                flush=True,
            )
        best = {way: max(rs, key=lambda x: x["images_per_s"]) for way, rs in rounds.items()}
        ratio = best["cnnzoo"]["images_per_s"] / best["notebook"]["images_per_s"]
        loads = [x["load"] for rs in rounds.values() for x in rs]
        per_round = "/".join(
            f"{cz['images_per_s'] / nb['images_per_s']:.2f}x"
            for nb, cz in zip(rounds["notebook"], rounds["cnnzoo"], strict=True)
        )
        train.append(
            (ratio, model, f"rounds {per_round}, load average {min(loads):.2f}-{max(loads):.2f}")
        )
        rows.append(
            [
                model,
                f"{best['notebook']['images_per_s']:,.1f}",
                f"{best['cnnzoo']['images_per_s']:,.1f}",
                f"{ratio:.2f}x",
                f"{max(r['peak_rss_mb'] for r in rounds['notebook']):.0f}",
                f"{max(r['peak_rss_mb'] for r in rounds['cnnzoo']):.0f}",
            ]
        )
    print_table(
        [
            "model (best round)",
            "notebook img/s",
            "cnnzoo img/s",
            "ratio",
            "notebook RSS MB",
            "cnnzoo RSS MB",
        ],
        rows,
    )
    return train


def _prep_section(prep: dict[str, Any]) -> float:
    """Section 3, data preparation; returns the PIL loop's time / cnnzoo's."""
    _section(f"3. data preparation ({prep['images']} JPEGs -> {IMG_SIZE} px)")
    cnnzoo_prep = prep["ingest_s"] + prep["split_s"]
    print_table(
        ["step", "seconds", "images/s"],
        [
            [
                "cnnzoo ingest",
                f"{prep['ingest_s']:.2f}",
                f"{prep['images'] / prep['ingest_s']:,.0f}",
            ],
            ["cnnzoo split", f"{prep['split_s']:.2f}", f"{prep['images'] / prep['split_s']:,.0f}"],
            ["cnnzoo ingest + split", f"{cnnzoo_prep:.2f}", f"{prep['images'] / cnnzoo_prep:,.0f}"],
            [
                "single-process PIL loop",
                f"{prep['pil_s']:.2f}",
                f"{prep['images'] / prep['pil_s']:,.0f}",
            ],
        ],
    )
    prep_ratio = prep["pil_s"] / cnnzoo_prep
    for i, t in enumerate(prep["rounds"], 1):
        print(
            f"round {i}: ingest {t['ingest_s']:.2f} s + split {t['split_s']:.2f} s vs PIL loop "
            f"{t['pil_s']:.2f} s: {t['pil_s'] / (t['ingest_s'] + t['split_s']):.2f}x "
            f"(load average {t['load']:.2f})"
        )
    print(f"ratio PIL loop time / cnnzoo time (best round of each): {prep_ratio:.2f}x", flush=True)
    _print_prep_notes(prep, prep_ratio)
    return prep_ratio


def _print_prep_notes(prep: dict[str, Any], prep_ratio: float) -> None:
    """Print data preparation on one CPU and what split's sha256 check costs."""
    from cnnzoo.core.workers import PROCESS_THRESHOLD

    print(
        f"on one CPU: cnnzoo ingest + split {prep['one_cpu_s']:.2f} s, "
        f"{prep['pil_s'] / prep['one_cpu_s']:.2f}x the PIL loop; on {prep['cpus']} CPUs "
        f"{prep_ratio:.2f}x (ingest and split run one process per CPU from "
        f"{PROCESS_THRESHOLD:,} images on)",
        flush=True,
    )
    verified, unverified = prep["split_verified_s"], prep["split_unverified_s"]
    print(
        f"sha256 check in split: {verified - unverified:+.2f} s (split {verified:.2f} s, "
        f"without the check {unverified:.2f} s: {verified / unverified:.2f}x)",
        flush=True,
    )


def _orchestration_section(
    s: dict[str, Any], args: argparse.Namespace, data: Path, work: Path
) -> tuple[float | None, float, float]:
    """Section 4, a local pipeline run against the same steps in one process, and the
    fixed cost of a task; returns ``(overhead or None if not measured, light, heavy)``."""
    _section(
        f"4. orchestration: local pipeline run of {' + '.join(PIPELINE_MODELS)} "
        f"(demo profile, 1 epoch, {s['pipeline_per_class']} images per class) vs the same "
        "steps in one process"
    )
    overhead: float | None = None
    light, heavy = task_cost()
    if args.skip_pipeline:
        print("skipped (--skip-pipeline)")
    else:
        small = _subset(data, work / "jpegs-small", s["pipeline_per_class"])
        outcome = bench_pipeline(small, work / "pipeline", args.quick)
        if isinstance(outcome, str):
            print(f"pipeline: {outcome}")
        else:
            overhead = _print_pipeline_times(*outcome, light, heavy)
    print(
        f"fixed cost per task: {light:.2f} s without TensorFlow (kfp and cnnzoo), {heavy:.2f} s "
        "for train and evaluate (+ TensorFlow): a fresh Python process importing what the "
        "task imports"
    )
    full_models = 14
    full = fixed_cost(full_models, light, heavy)
    print(
        f"the 14-model run: {LIGHT_TASKS + 2 * full_models} tasks, {full:.0f} CPU s of fixed "
        "cost in all; it does not grow with the data or the epochs",
        flush=True,
    )
    return overhead, light, heavy


def _print_pipeline_times(pipeline_s: float, sequence_s: float, light: float, heavy: float):
    """Print the pipeline and in-sequence times and what the tasks' fixed cost explains of
    the difference; returns the overhead (pipeline / sequence)."""
    tasks = LIGHT_TASKS + 2 * len(PIPELINE_MODELS)
    overhead = pipeline_s / sequence_s
    print_table(
        ["run (best round)", "seconds"],
        [
            ["local pipeline (kfp.local)", f"{pipeline_s:.1f}"],
            ["one process, in sequence", f"{sequence_s:.1f}"],
        ],
    )
    print(f"ratio pipeline / sequence (overhead): {overhead:.2f}x")
    diff = pipeline_s - sequence_s
    fixed = fixed_cost(len(PIPELINE_MODELS), light, heavy)
    print(
        f"difference: {diff:.1f} s over {tasks} tasks; their fixed cost is {fixed:.1f} "
        f"CPU s ({LIGHT_TASKS} tasks x {light:.2f} s + {2 * len(PIPELINE_MODELS)} "
        f"TensorFlow tasks x {heavy:.2f} s, less the one process's {heavy:.2f} s), "
        f"{fixed / len(os.sched_getaffinity(0)):.1f} s of wall time if spread over "
        f"all {len(os.sched_getaffinity(0))} CPUs"
    )
    return overhead


def _print_targets(
    t_start: float,
    start_load: str,
    feed_ratio: float,
    slowest: tuple[float, str, str],
    prep_ratio: float,
    overhead: float | None,
    light: float,
    heavy: float,
) -> None:
    """Print the closing lines: load, wall time, each target's verdict, the final figure."""
    tasks = LIGHT_TASKS + 2 * len(PIPELINE_MODELS)
    print()
    print(f"load average at end: {_load()}")
    wall = time.perf_counter() - t_start
    print(
        f"target bench wall time <= {TARGETS['wall_s']} s on a quiet machine: {wall:.0f} s, "
        f"{_verdict(wall, TARGETS['wall_s'], False)} (load average at start {start_load}, "
        f"at end {_load()}: the load slows every section)"
    )
    print(
        f"target input feed >= {TARGETS['feed']:g}x the notebook's: {feed_ratio:.2f}x, "
        f"{_verdict(feed_ratio, TARGETS['feed'])}"
    )
    print(
        f"target training no slower than the notebook's feed (>= {TARGETS['train']:g}x, "
        f"slowest model): {slowest[0]:.2f}x, {_verdict(slowest[0], TARGETS['train'])} "
        f"({slowest[1]}: {slowest[2]})"
    )
    print(
        f"target data preparation >= {TARGETS['prep']:g}x the one-process PIL loop: "
        f"{prep_ratio:.2f}x, {_verdict(prep_ratio, TARGETS['prep'])}"
    )
    if overhead is None:
        print(f"target orchestration <= {TARGETS['orchestration']:g}x: not measured")
    else:
        print(
            f"target orchestration <= {TARGETS['orchestration']:g}x the in-process sequence: "
            f"{overhead:.2f}x, {_verdict(overhead, TARGETS['orchestration'], False)} "
            f"({tasks} tasks, {light:.2f} / {heavy:.2f} s fixed cost each)"
        )
    print(FINAL_LINE.format(feed_ratio), flush=True)


if __name__ == "__main__":
    sys.exit(main())
