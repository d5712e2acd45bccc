"""The pipeline's steps one at a time: ``cnnzoo models``, ``profile``, ``demo-data``,
``ingest``, ``split``, ``train``, ``evaluate``.

Each command parses its arguments and calls one library function; the table in
:mod:`cnnzoo.cli.main` names them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cnnzoo.cli.common import add_overwrite_arg, add_profile_args, load_profile_arg, local_path
from cnnzoo.core.errors import CnnzooError
from cnnzoo.data.demo import make_demo_dataset
from cnnzoo.data.ingest import ingest
from cnnzoo.data.split import split_dataset
from cnnzoo.evaluation.evaluate import evaluate_model
from cnnzoo.models.registry import get_spec, list_models
from cnnzoo.orchestration import tasks
from cnnzoo.orchestration.study import profile_json
from cnnzoo.storage.gcs import is_gcs, parse_gs_uri
from cnnzoo.storage.layout import run_logs_root
from cnnzoo.training.train import train_model

# --- registry and profiles -------------------------------------------------------------


def no_args(p: argparse.ArgumentParser) -> None:
    """A command without arguments."""


def models_args(p: argparse.ArgumentParser) -> None:
    add_profile_args(p)


def models_command(ns: argparse.Namespace) -> int:
    """The registry's configurations (plugins' included), then the profile's variants and
    sweep points with what each derives from and its settings."""
    derived = load_profile_arg(ns).derived_configurations()
    width = max(22, *(len(name) for name in [*list_models(), *derived]))
    for name in list_models():
        s = get_spec(name)
        plugin = f" (plugin {s.plugin})" if s.plugin else ""
        print(f"{name:{width}s} {s.strategy:9s} {s.description}{plugin}")
    for name, c in derived.items():
        kind = f"sweep {c.sweep}" if c.sweep else "variant"
        settings = ", ".join(f"{k}={v}" for k, v in c.settings.items()) or "same settings"
        print(f"{name:{width}s} {c.spec.strategy:9s} {kind} of {c.derives_from}: {settings}")
    return 0


def profile_show_args(p: argparse.ArgumentParser) -> None:
    add_profile_args(p)


def profile_command(ns: argparse.Namespace) -> int:
    print(load_profile_arg(ns).to_yaml(), end="")
    return 0


# --- data ------------------------------------------------------------------------------


def demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dest", help="folder to create (train/<class>/*.jpg, val/<class>/*.jpg)")
    p.add_argument("--per-class-train", type=int, default=80)
    p.add_argument("--per-class-test", type=int, default=20)
    p.add_argument("--size", type=int, default=96, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    add_overwrite_arg(p)


def demo_data_command(ns: argparse.Namespace) -> int:

    path = make_demo_dataset(
        local_path(ns.dest, "DEST"),
        per_class_train=ns.per_class_train,
        per_class_test=ns.per_class_test,
        seed=ns.seed,
        size=ns.size,
        overwrite=ns.overwrite,
    )
    print(f"demo dataset: {path}")
    return 0


def ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="folder, .zip/.tar.gz archive, gs://bucket/prefix, or 'demo'")
    p.add_argument("dest", help="folder to write the validated dataset and manifest.json to")
    p.add_argument(
        "--max-bad-fraction",
        type=float,
        default=0.01,
        help="fail if more than this fraction of a split is undecodable (default 0.01)",
    )
    add_overwrite_arg(p)


def ingest_command(ns: argparse.Namespace) -> int:

    manifest = ingest(
        ns.source, ns.dest, max_bad_fraction=ns.max_bad_fraction, overwrite=ns.overwrite
    )
    counts = manifest["counts"]
    total = {k: sum(v.values()) for k, v in counts.items()}
    print(
        f"ingested {ns.source} -> {ns.dest}: {len(manifest['classes'])} classes, "
        + ", ".join(f"{k} {v}" for k, v in total.items())
        + f", {len(manifest['skipped'])} skipped"
    )
    return 0


def split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ingested", help="output folder of 'cnnzoo ingest'")
    p.add_argument("dest", help="folder to write TFRecord shards and split.json to")
    add_profile_args(p)
    add_overwrite_arg(p)


def split_command(ns: argparse.Namespace) -> int:

    prof = load_profile_arg(ns)
    info = split_dataset(
        ns.ingested,
        ns.dest,
        img_size=prof.img_size,
        seed=prof.seed,
        val_fraction=prof.val_fraction,
        test_fraction=prof.test_fraction,
        overwrite=ns.overwrite,
    )
    print(
        f"split -> {ns.dest} at {info['img_size']}px: "
        + ", ".join(f"{k} {v['count']}" for k, v in info["splits"].items())
    )
    return 0


# --- train and evaluate ----------------------------------------------------------------


def train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        help="a configuration: registered, a plugin's, or the profile's variant or sweep point "
        "(see 'cnnzoo models --config F')",
    )
    p.add_argument("split", help="output folder of 'cnnzoo split'")
    p.add_argument("out", help="folder for model.keras, history.json, config.yaml")
    p.add_argument(
        "--output",
        default="",
        metavar="URI",
        help="a run's output location (local folder or gs://bucket/prefix): train as a "
        "pipeline train task does, checkpointing to URI/checkpoints/MODEL/, logging to "
        "URI/tensorboard/MODEL/ (unless --logs) and exporting OUT to URI/models/MODEL/",
    )
    p.add_argument(
        "--logs",
        default=None,
        help="TensorBoard logs root (default: OUT/logs; with --output: URI/tensorboard)",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="per-epoch training state, resumed from when rerun (default: OUT/checkpoint); "
        "not with --output, which checkpoints to URI/checkpoints/MODEL/",
    )
    add_profile_args(p)
    add_overwrite_arg(p, "OUT")


def train_command(ns: argparse.Namespace) -> int:

    if ns.output:
        # What a pipeline's train task does (the same task function), on local artifacts.
        if ns.checkpoint:
            raise CnnzooError(
                f"--checkpoint {ns.checkpoint} conflicts with --output {ns.output}: with "
                "--output the training state is checkpointed to <output>/checkpoints/<model>/"
            )
        output = ns.output
        if is_gcs(output):
            try:
                parse_gs_uri(output)
            except CnnzooError as e:
                raise CnnzooError(f"--output {e}") from None
            output = output.rstrip("/")
        elif "://" in output:
            raise CnnzooError(f"--output {output!r}: expected a local folder or gs://bucket/prefix")
        elif os.path.exists(output) and not os.path.isdir(output):
            raise CnnzooError(f"--output {output}: exists and is not a folder")
        else:
            output = str(Path(output).resolve())
        logs = ns.logs or ""
        if logs and "://" not in logs:
            logs = str(Path(logs).resolve())
        out = local_path(ns.out, "OUT")
        hist = tasks.train(
            ns.model,
            tasks.LocalArtifact(local_path(ns.split, "SPLIT")),
            profile_json(load_profile_arg(ns)),
            logs,
            output,
            tasks.LocalArtifact(out),
            # The logs artifact is the logs root itself: no pointer file in OUT.
            tasks.LocalArtifact(run_logs_root(logs, output)),
            overwrite=ns.overwrite,
        )
    else:
        hist = train_model(
            ns.model,
            local_path(ns.split, "SPLIT"),
            local_path(ns.out, "OUT"),
            load_profile_arg(ns),
            logs_dir=ns.logs,
            checkpoint_dir=ns.checkpoint,
            overwrite=ns.overwrite,
        )
    if hist.get("status") == "failed":
        print(f"error: training {ns.model} failed: {hist.get('error')}", file=sys.stderr)
        return 1
    print(
        f"trained {ns.model}: {hist['epochs_run']} epoch(s), "
        f"best val_accuracy {hist['best_val_accuracy']:.4f} -> {ns.out}"
    )
    return 0


def eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", help="output folder of 'cnnzoo train'")
    p.add_argument("split", help="output folder of 'cnnzoo split'")
    p.add_argument("out", help="JSON file to write")
    p.add_argument("--batch-size", type=int, default=None)
    add_overwrite_arg(p, "OUT")


def evaluate_command(ns: argparse.Namespace) -> int:

    res = evaluate_model(
        local_path(ns.model_dir, "MODEL_DIR"),
        local_path(ns.split, "SPLIT"),
        local_path(ns.out, "OUT_JSON"),
        batch_size=ns.batch_size,
        overwrite=ns.overwrite,
    )
    if res.get("status") != "ok":
        print(f"error: {res['model']} has no trained model: {res.get('error')}", file=sys.stderr)
        return 1
    if res["train_accuracy"] is None:  # a pipeline check: evaluated on its test images only
        train = "train_accuracy n/a (pipeline check)"
    else:
        train = f"train_accuracy {res['train_accuracy']:.4f}, gap {res['gap']:+.4f}"
    print(f"{res['model']}: test_accuracy {res['test_accuracy']:.4f}, {train} -> {ns.out}")
    return 0
