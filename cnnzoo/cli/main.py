"""The ``cnnzoo`` command line: every pipeline step, plus local runs and cluster submission.

Each subcommand is a thin wrapper over one library function. Errors caused by input
print one line, ``error: <what and where>``, and exit 1 without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from cnnzoo.core.errors import CnnzooError

_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable]] = {}


def command(name: str, help: str, args: Callable[[argparse.ArgumentParser], None]):
    """Register ``fn(ns)`` as subcommand ``name``; ``args`` adds its arguments."""

    def deco(fn: Callable) -> Callable:
        _COMMANDS[name] = (help, args, fn)
        return fn

    return deco


def add_profile_args(p: argparse.ArgumentParser, config_files: bool = True) -> None:
    """Add ``--profile``, ``--set KEY=VALUE`` (and ``--config YAML``) to a subcommand."""
    p.add_argument("--profile", default="demo", help="profile name or YAML path (default: demo)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile field, e.g. --set max_epochs=1 (repeatable)",
    )
    if not config_files:
        return
    p.add_argument(
        "--config",
        dest="override_files",
        action="append",
        default=[],
        metavar="YAML",
        help="YAML file merged over the profile (repeatable)",
    )


def add_overwrite_arg(p: argparse.ArgumentParser, what: str = "DEST") -> None:
    """Add ``--overwrite``: replace ``what`` even if cnnzoo did not write it."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {what} even if it is not an earlier cnnzoo output of this command "
        "(its content is deleted); without it such a folder is refused",
    )


def local_path(path: str, what: str) -> str:
    """``path``, refused with a CnnzooError if it is a URI where only a local path works."""
    if "://" in str(path):
        raise CnnzooError(f"{path}: {what} must be a local path (a URI is not supported here)")
    return path


def _load_profile(ns: argparse.Namespace):
    from cnnzoo.config.profile import load_profile

    return load_profile(ns.profile, ns.overrides, ns.override_files)


# --- registry and profiles -------------------------------------------------------------


@command("models", "list the registered model configurations", lambda p: None)
def _models(ns: argparse.Namespace) -> int:
    from cnnzoo.models.registry import get_spec, list_models

    for name in list_models():
        s = get_spec(name)
        print(f"{name:22s} {s.strategy:9s} {s.description}")
    return 0


def _profile_show_args(p: argparse.ArgumentParser) -> None:
    add_profile_args(p)


@command("profile", "print a resolved profile as YAML", _profile_show_args)
def _profile(ns: argparse.Namespace) -> int:
    print(_load_profile(ns).to_yaml(), end="")
    return 0


# --- data ------------------------------------------------------------------------------


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dest", help="folder to create (train/<class>/*.jpg, val/<class>/*.jpg)")
    p.add_argument("--per-class-train", type=int, default=80)
    p.add_argument("--per-class-test", type=int, default=20)
    p.add_argument("--size", type=int, default=96, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    add_overwrite_arg(p)


@command("demo-data", "generate the small built-in demo dataset", _demo_args)
def _demo_data(ns: argparse.Namespace) -> int:
    from cnnzoo.data.demo import make_demo_dataset

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


def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="folder, .zip/.tar.gz archive, gs://bucket/prefix, or 'demo'")
    p.add_argument("dest", help="folder to write the validated dataset and manifest.json to")
    p.add_argument(
        "--max-bad-fraction",
        type=float,
        default=0.01,
        help="fail if more than this fraction of a split is undecodable (default 0.01)",
    )
    add_overwrite_arg(p)


@command("ingest", "validate an image-folder dataset and write its manifest", _ingest_args)
def _ingest(ns: argparse.Namespace) -> int:
    from cnnzoo.data.ingest import ingest

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


def _split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ingested", help="output folder of 'cnnzoo ingest'")
    p.add_argument("dest", help="folder to write TFRecord shards and split.json to")
    add_profile_args(p)
    add_overwrite_arg(p)


@command("split", "split (seeded, stratified) and decode once into TFRecords", _split_args)
def _split(ns: argparse.Namespace) -> int:
    from cnnzoo.data.split import split_dataset

    prof = _load_profile(ns)
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


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a registered configuration (see 'cnnzoo models')")
    p.add_argument("split", help="output folder of 'cnnzoo split'")
    p.add_argument("out", help="folder for model.keras, history.json, config.yaml")
    p.add_argument("--logs", default=None, help="TensorBoard logs root (default: OUT/logs)")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="per-epoch training state, resumed from when rerun (default: OUT/checkpoint)",
    )
    add_profile_args(p)
    add_overwrite_arg(p, "OUT")


@command("train", "train one model configuration", _train_args)
def _train(ns: argparse.Namespace) -> int:
    from cnnzoo.training.train import train_model

    hist = train_model(
        ns.model,
        local_path(ns.split, "SPLIT"),
        local_path(ns.out, "OUT"),
        _load_profile(ns),
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


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", help="output folder of 'cnnzoo train'")
    p.add_argument("split", help="output folder of 'cnnzoo split'")
    p.add_argument("out", help="JSON file to write")
    p.add_argument("--batch-size", type=int, default=None)
    add_overwrite_arg(p, "OUT")


@command("evaluate", "evaluate a trained model on the test set", _eval_args)
def _evaluate(ns: argparse.Namespace) -> int:
    from cnnzoo.evaluation.evaluate import evaluate_model

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
    print(
        f"{res['model']}: test_accuracy {res['test_accuracy']:.4f}, "
        f"train_accuracy {res['train_accuracy']:.4f}, gap {res['gap']:+.4f} -> {ns.out}"
    )
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with cnnzoo's error line: the usage, then ``error: ...``; exit status 2."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, "error: " + " ".join(f"{self.prog}: {message}".split()) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cnnzoo",
        description="Train and compare CNN configurations; run the Kubeflow pipeline.",
    )
    from cnnzoo import __version__

    parser.add_argument("--version", action="version", version=f"cnnzoo {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    _load_extra_commands()
    for name, (help_, add_args, fn) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add_args(p)
        p.set_defaults(func=fn)
    return parser


def _load_extra_commands() -> None:
    """Import modules that register further commands (pipeline, report)."""
    import importlib

    for mod in ("cnnzoo.cli.pipeline", "cnnzoo.cli.report"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cnnzoo`` command."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return int(ns.func(ns) or 0)
    except CnnzooError as e:
        # One line, whatever the message carries (paths with newlines, wrapped library text).
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 1
    except OSError as e:
        # The file system refused (no such folder, a file where a folder must be, no
        # space, permission): the path and the reason are the whole story.
        where = f"{e.filename}: " if e.filename else ""
        print("error: " + " ".join(f"{where}{e.strerror or e}".split()), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run the imported module's main: the extra commands register into `cnnzoo.cli.main`,
    # which is a different module object from `__main__`.
    from cnnzoo.cli.main import main as _main

    sys.exit(_main())


__all__ = ["main", "command", "build_parser", "json"]
