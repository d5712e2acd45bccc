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
    example: str


COMMANDS = (
    Command(
        "models",
        "list the model configurations (registered, plugins', the profile's variants and sweeps)",
        steps.models_args,
        steps.models_command,
        "cnnzoo models --config my-study.yaml",
    ),
    Command(
        "profile",
        "print a resolved profile as YAML",
        steps.profile_show_args,
        steps.profile_command,
        "cnnzoo profile --profile full --set max_epochs=5",
    ),
    Command(
        "demo-data",
        "generate the small built-in demo dataset",
        steps.demo_args,
        steps.demo_data_command,
        "cnnzoo demo-data data/demo",
    ),
    Command(
        "ingest",
        "validate an image-folder dataset and write its manifest",
        steps.ingest_args,
        steps.ingest_command,
        "cnnzoo ingest ~/photos/animals data/ingested",
    ),
    Command(
        "split",
        "split (seeded, stratified) and decode once into TFRecords",
        steps.split_args,
        steps.split_command,
        "cnnzoo split data/ingested data/split --profile full",
    ),
    Command(
        "train",
        "train one model configuration",
        steps.train_args,
        steps.train_command,
        "cnnzoo train mid data/split out/mid --profile demo",
    ),
    Command(
        "evaluate",
        "evaluate a trained model on the test set",
        steps.eval_args,
        steps.evaluate_command,
        "cnnzoo evaluate out/mid data/split out/mid-eval",
    ),
    Command(
        "run",
        "run the whole pipeline locally (kfp.local, one subprocess per step)",
        pipeline.run_args,
        pipeline.run_command,
        "cnnzoo run --models simple,mid --profile demo",
    ),
    Command(
        "compile",
        "compile the pipeline to YAML for a Kubeflow Pipelines 2.x backend",
        pipeline.compile_args,
        pipeline.compile_command,
        (
            "cnnzoo compile --out cnnzoo.yaml --image REGISTRY/cnnzoo:TAG"
            " --gpu-image REGISTRY/cnnzoo-gpu:TAG"
        ),
    ),
    Command(
        "submit",
        "compile the pipeline and start a run on a Kubeflow cluster",
        pipeline.submit_args,
        pipeline.submit_command,
        (
            "cnnzoo submit --host https://kubeflow.example.com/pipeline --data gs://bucket/photos"
            " --image REGISTRY/cnnzoo:TAG --gpu-image REGISTRY/cnnzoo-gpu:TAG --wait"
        ),
    ),
    Command(
        "upload",
        "compile the pipeline and upload it as a new version, to start runs from the KFP UI",
        pipeline.upload_args,
        pipeline.upload_command,
        (
            "cnnzoo upload --host https://kubeflow.example.com/pipeline"
            " --image REGISTRY/cnnzoo:TAG --gpu-image REGISTRY/cnnzoo-gpu:TAG"
        ),
    ),
    Command(
        "status",
        "print a cluster run's state and each step's, or follow it to its end (--wait)",
        pipeline.status_args,
        pipeline.status_command,
        "cnnzoo status RUN_ID --host https://kubeflow.example.com/pipeline --wait",
    ),
    Command(
        "report",
        "rebuild the comparison report from a finished run's outputs",
        report.report_args,
        report.report_command,
        "cnnzoo report runs/latest",
    ),
    Command(
        "tensorboard",
        "serve a run's TensorBoard logs (local or gs://) until Ctrl-C",
        report.tensorboard_args,
        report.tensorboard_command,
        "cnnzoo tensorboard runs/latest",
    ),
)


#: The end of ``cnnzoo --help``: where a newcomer starts.
EXAMPLES = """\
examples:
  cnnzoo run                                 # the whole study, locally, on the built-in demo data
  cnnzoo run --data ~/photos --profile full  # the notebook's schedule on your image folders
  cnnzoo submit --host https://kubeflow.example.com/pipeline --data gs://bucket/photos \\
      --image REGISTRY/cnnzoo:TAG --gpu-image REGISTRY/cnnzoo-gpu:TAG   # on a Kubeflow cluster

Start with `cnnzoo run`; `cnnzoo COMMAND --help` shows each command's options.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with cnnzoo's error line: the usage, then ``error: ...``; exit status 2."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, "error: " + " ".join(f"{self.prog}: {message}".split()) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cnnzoo",
        description="Train and compare CNN configurations; run the Kubeflow pipeline.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    parser.add_argument("--version", action="version", version=f"cnnzoo {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    for cmd in COMMANDS:
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.help,
            epilog=f"example:\n  {cmd.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
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


__all__ = ["COMMANDS", "EXAMPLES", "Command", "build_parser", "main"]
