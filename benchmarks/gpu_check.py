"""GPU check: how fast every configuration trains when the input costs nothing.

For every registered configuration at the notebook's settings (100 px, batch 258) this
trains a fixed number of steps on 11,453 synthetic images held in memory as uint8 (the
size of the notebook's training set), in ``float32`` and in ``mixed_bfloat16`` with XLA
(``jit_compile=True``), and prints per run: images/s, ms/step, the epoch time this
implies for 11,453 images next to the notebook's ~5 s per epoch, peak GPU memory, and
model FLOP utilisation (MFU).

FLOPs are counted analytically from the Conv/Dense layers' shapes
(:func:`cnnzoo.models.flops.count_flops`; a multiply-add is 2 FLOPs): one forward pass,
plus per layer one more pass for its weight gradients when it trains and one for its
input gradients when a training layer lies before it (about 3x forward for a model
trained whole, less for frozen bases). MFU = achieved FLOP/s over
the assumed peak, tensor-core TF32 for ``float32`` (TensorFlow's default on Ampere and
newer) and BF16 for the mixed run, dense (no sparsity); ``--peak-tflops`` overrides.

Pretrained bases get random weights (same cost, no download). ``*_finetune`` is timed in
its stage 2 (the whole model trains); its stage 1 costs what ``*_transfer`` costs.

The input is batched before it is sliced and cast to float inside the model, so the
host does no per-image work. Runs stop starting after ``--budget-min`` minutes, so the
script ends in under 8 minutes on one modern GPU. On CPU, ``--quick`` checks that every
configuration builds and trains (smallest size, batch 4, 2 eager steps; XLA for
``simple`` only).

Usage::

    python -m benchmarks.gpu_check [--quick] [--models NAME ...] [--peak-tflops BF16,TF32]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from dataclasses import dataclass

from cnnzoo.models.flops import count_flops

NOTEBOOK_IMAGES = 11_453
NOTEBOOK_EPOCH_S = 5.0
NUM_CLASSES = 5

#: Dense (non-sparse) tensor-core peaks in TFLOP/s: (bf16, tf32). Datasheet figures.
KNOWN_PEAKS = {
    "H200": (989.0, 494.0),
    "H100 PCIe": (756.0, 378.0),
    "H100": (989.0, 494.0),
    "A100": (312.0, 156.0),
    "A10G": (70.0, 35.0),
    "A10": (125.0, 62.5),
    "L40S": (362.0, 183.0),
    "L4": (121.0, 60.0),
    "RTX 3090 Ti": (160.0, 80.0),
    "RTX 4090": (165.0, 82.6),
    "V100": (125.0, 15.7),  # no bf16/tf32 tensor cores: fp16 and fp32 rates
    "T4": (65.0, 8.1),
}
QUICK_XLA_MODELS = ("simple",)


@dataclass
class Result:
    """One timed run."""

    model: str
    mode: str
    images_per_s: float | None = None
    ms_per_step: float | None = None
    peak_mem_gib: float | None = None
    train_gflop: float | None = None
    mfu: float | None = None
    note: str = ""


def peak_tflops_for(device_name: str) -> tuple[float, float] | None:
    """The (bf16, tf32) dense peak of a known GPU name, or None."""
    for key in sorted(KNOWN_PEAKS, key=len, reverse=True):  # "H100 PCIe" before "H100"
        if key.lower() in device_name.lower():
            return KNOWN_PEAKS[key]
    return None


def synthetic_dataset(n_images: int, img_size: int, batch_size: int, seed: int = 0):
    """``n_images`` random uint8 images in memory, as full batches, repeated forever."""
    import numpy as np
    import tensorflow as tf

    n_batches = max(1, n_images // batch_size)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_batches, batch_size, img_size, img_size, 3), np.uint8)
    labels = rng.integers(0, NUM_CLASSES, (n_batches, batch_size)).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


def _float32_output(model):
    import keras

    if keras.backend.standardize_dtype(model.outputs[0].dtype) == "float32":
        return model
    out = keras.layers.Activation("linear", dtype="float32")(model.outputs[0])
    return keras.Model(model.inputs, out, name=model.name)


def time_run(name, mode, ds, img_size, args, peaks, gpu: bool) -> Result:
    """Build ``name``, train ``args.warmup`` then ``args.steps`` steps; time the latter."""
    import keras
    import tensorflow as tf

    from cnnzoo.models.build import build_model, prepare_stage
    from cnnzoo.models.registry import get_spec

    mixed = mode != "float32"
    keras.backend.clear_session()
    gc.collect()
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed else "float32")
    try:
        model = _float32_output(build_model(name, NUM_CLASSES, img_size))
        if get_spec(name).strategy == "finetune":
            prepare_stage(model, name, 2)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-4),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=mixed,
            # --quick on CPU: tracing every model's graph would cost minutes; eager runs
            # the same layers and checks the same things (build, FLOPs, a training step).
            run_eagerly=args.quick and not mixed,
        )
        _, train_flops = count_flops(model)
        if args.warmup:
            model.fit(ds, steps_per_epoch=args.warmup, epochs=1, verbose=0)
        t0 = time.perf_counter()
        # fit returns the last step's loss, so the timing ends after the device finished.
        model.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0)
        seconds = time.perf_counter() - t0
    finally:
        keras.mixed_precision.set_global_policy("float32")
    ips = args.steps * args.batch_size / seconds
    result = Result(name, mode, ips, 1000 * seconds / args.steps, train_gflop=train_flops / 1e9)
    if gpu:
        result.peak_mem_gib = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 1024**3
    if peaks is not None:
        peak = peaks[0] if mixed else peaks[1]
        result.mfu = ips * train_flops / (peak * 1e12)
    return result


def _fmt(x, spec: str, missing: str = "n/a") -> str:
    return missing if x is None else format(x, spec)


def _print_row(r: Result, notebook_settings: bool, widths: list[int]) -> None:
    epoch = None if r.images_per_s is None else NOTEBOOK_IMAGES / r.images_per_s
    cells = [
        r.model,
        r.mode,
        _fmt(r.images_per_s, ",.0f", "-"),
        _fmt(r.ms_per_step, ".1f", "-"),
        _fmt(epoch, ".2f", "-"),
        f"{NOTEBOOK_EPOCH_S:.0f}" if notebook_settings else "-",
        _fmt(r.peak_mem_gib, ".2f"),
        _fmt(r.train_gflop, ".2f", "-"),
        "n/a" if r.mfu is None else f"{100 * r.mfu:.1f}%",
        r.note,
    ]
    print(
        "  ".join(
            c.ljust(w) if i in (0, 1, 9) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip(),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the check and print the table; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: tiny sizes")
    parser.add_argument("--models", nargs="+", help="configurations (default: all)")
    parser.add_argument("--img-size", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=258)
    parser.add_argument("--images", type=int, default=NOTEBOOK_IMAGES)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps (compile)")
    parser.add_argument("--steps", type=int, default=44, help="timed steps (44 = one epoch)")
    parser.add_argument(
        "--peak-tflops",
        help="assumed dense peak TFLOP/s 'BF16,TF32' (default: from the GPU's name)",
    )
    parser.add_argument(
        "--budget-min", type=float, default=6.5, help="start no run after this many minutes"
    )
    args = parser.parse_args(argv)
    if args.quick:
        # Every configuration at the smallest size it accepts (>= 32 px); the first of the
        # two steps traces the step function, so the figures only show it all runs.
        args.batch_size, args.images, args.warmup, args.steps = 4, 8, 0, 2

    start = time.monotonic()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from cnnzoo.models.registry import get_spec, list_models

    models = args.models or list_models()
    for name in models:
        get_spec(name)  # unknown names fail before anything runs
    tf.get_logger().setLevel("ERROR")  # retracing notes: each model traces its own step
    gpus = tf.config.list_physical_devices("GPU")
    for g in gpus:
        tf.config.experimental.set_memory_growth(g, True)  # so "peak" means what was used
    if gpus:
        device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    else:
        device = f"CPU only ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    peaks = None
    if args.peak_tflops:
        bf16, _, tf32 = args.peak_tflops.partition(",")
        peaks = (float(bf16), float(tf32 or bf16))
    elif gpus:
        peaks = peak_tflops_for(device)

    print(f"device: {device}  (TensorFlow {tf.__version__}, Keras {keras.__version__})")
    print(
        "assumed peak: "
        + (
            "unknown (MFU n/a)"
            if peaks is None
            else f"{peaks[0]:g} TFLOP/s bf16, {peaks[1]:g} TFLOP/s tf32 (dense)"
        )
    )
    size_text = "smallest size per model (>= 32)" if args.quick else str(args.img_size)
    print(
        f"settings: {size_text} px, batch {args.batch_size}, {args.images:,} synthetic "
        f"images in memory, {args.warmup} warm-up + {args.steps} timed steps per run; "
        "*_finetune timed in stage 2",
        flush=True,
    )
    datasets: dict[int, object] = {}
    modes = ["float32", "bf16+XLA"]
    headers = ["model", "mode", "images/s", "ms/step", "epoch s", "notebook s", "peak GiB"]
    headers += ["GFLOP/img", "MFU", "note"]
    widths = [max(len(m) for m in models), 8, 9, 8, 8, 10, 8, 10, 6, 0]
    print(
        "  ".join(
            h.ljust(w) if i in (0, 1, 9) else h.rjust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        ).rstrip()
    )
    print("  ".join("-" * w for w in widths[:-1]), flush=True)
    # epoch s: the time one notebook epoch (11,453 images) would take at this rate;
    # GFLOP/img: training FLOPs per image as counted in the module docstring.
    failures = 0
    same = not args.quick and args.img_size == 100 and args.batch_size == 258
    for name in models:
        for mode in modes:
            if args.quick and mode != "float32" and name not in QUICK_XLA_MODELS:
                continue
            if time.monotonic() - start > 60 * args.budget_min:
                _print_row(Result(name, mode, note="skipped: time budget"), same, widths)
                continue
            size = max(get_spec(name).min_img_size, 32) if args.quick else args.img_size
            if size not in datasets:
                datasets[size] = synthetic_dataset(args.images, size, args.batch_size)
            try:
                r = time_run(name, mode, datasets[size], size, args, peaks, bool(gpus))
            except Exception as e:  # one failing configuration must not hide the others
                failures += 1
                msg = (str(e).strip().splitlines() or [""])[0][:80]
                r = Result(name, mode, note=f"failed: {type(e).__name__}: {msg}")
            _print_row(r, same, widths)
    print(f"total time: {time.monotonic() - start:.0f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
