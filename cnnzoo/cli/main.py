"""The ``cnnzoo`` command line: every pipeline step, plus local runs and cluster submission.

:data:`COMMANDS` is the whole command table; each command is a thin wrapper over one
library function (:mod:`cnnzoo.cli.steps`, :mod:`cnnzoo.cli.pipeline`,
:mod:`cnnzoo.cli.report`). Errors caused by input print one line, ``error: <what and
where>``, and exit 1 without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from cnnzoo import __version__
from cnnzoo.cli import pipeline, report, steps
from cnnzoo.core.errors import CnnzooError, one_line


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, help line, argument builder and function."""

    name: str
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS = (
    Command(
        "models", "list the registered model configurations", steps.no_args, steps.models_command
    ),
    Command(
        "profile",
        "print a resolved profile as YAML",
        steps.profile_show_args,
        steps.profile_command,
    ),
    Command(
        "demo-data",
        "generate the small built-in demo dataset",
        steps.demo_args,
        steps.demo_data_command,
    ),
    Command(
        "ingest",
        "validate an image-folder dataset and write its manifest",
        steps.ingest_args,
        steps.ingest_command,
    ),
    Command(
        "split",
        "split (seeded, stratified) and decode once into TFRecords",
        steps.split_args,
        steps.split_command,
    ),
    Command("train", "train one model configuration", steps.train_args, steps.train_command),
    Command(
        "evaluate",
        "evaluate a trained model on the test set",
        steps.eval_args,
        steps.evaluate_command,
    ),
    Command(
        "run",
        "run the whole pipeline locally (kfp.local, one subprocess per step)",
        pipeline.run_args,
        pipeline.run_command,
    ),
    Command(
        "compile",
        "compile the pipeline to YAML for a Kubeflow Pipelines 2.x backend",
        pipeline.compile_args,
        pipeline.compile_command,
    ),
    Command(
        "submit",
        "compile the pipeline and start a run on a Kubeflow cluster",
        pipeline.submit_args,
        pipeline.submit_command,
    ),
    Command(
        "upload",
        "compile the pipeline and upload it as a new version, to start runs from the KFP UI",
        pipeline.upload_args,
        pipeline.upload_command,
    ),
    Command(
        "status",
        "print a cluster run's state and each step's, or follow it to its end (--wait)",
        pipeline.status_args,
        pipeline.status_command,
    ),
    Command(
        "report",
        "rebuild the comparison report from a finished run's outputs",
        report.report_args,
        report.report_command,
    ),
    Command(
        "tensorboard",
        "serve a run's TensorBoard logs (local or gs://) until Ctrl-C",
        report.tensorboard_args,
        report.tensorboard_command,
    ),
)


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

    parser.add_argument("--version", action="version", version=f"cnnzoo {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_args(p)
        p.set_defaults(func=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cnnzoo`` command."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return int(ns.func(ns) or 0)
    except CnnzooError as e:
        # One line, whatever the message carries (paths with newlines, wrapped library text).
        print("error: " + one_line(e), file=sys.stderr)
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
    sys.exit(main())


__all__ = ["COMMANDS", "Command", "build_parser", "main"]
