"""CLI commands ``cnnzoo report`` (rebuild a run's comparison report) and ``cnnzoo tensorboard``.

The table in :mod:`cnnzoo.cli.main` names the commands below.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from cnnzoo.cli.common import add_connection_args, add_overwrite_arg, connection_arg
from cnnzoo.core.errors import CnnzooError
from cnnzoo.orchestration.kfp_runs import run_logs_root_from_kfp
from cnnzoo.reporting.report import report_files, report_run
from cnnzoo.storage.gcs import is_gcs
from cnnzoo.storage.layout import run_logs_root
from cnnzoo.storage.logsync import LogSync
from cnnzoo.tensorboard.server import has_event_files, resolve_logdir, start_tensorboard


def report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_dir",
        nargs="?",
        default=None,
        help="a finished run's folder (runs/<timestamp>; its run.json names the run manifest) "
        "or a report folder holding run-manifest.json",
    )
    p.add_argument(
        "--evaluations",
        nargs="+",
        default=None,
        metavar="JSON",
        help="instead of RUN_DIR: the 'cnnzoo evaluate' outputs to compare (steps run by "
        "hand); needs --out",
    )
    p.add_argument("--data", default=None, metavar="INGESTED", help="with --evaluations: "
                   "the ingest output, for the report's data section")  # fmt: skip
    p.add_argument("--split", default=None, metavar="SPLIT", help="with --evaluations: "
                   "the split output, for the report's split section")  # fmt: skip
    p.add_argument(
        "--out",
        default=None,
        help="folder to write the report to (default: RUN_DIR/report); it must be missing, "
        "empty or an earlier report",
    )
    add_overwrite_arg(p, "--out")


def report_command(ns: argparse.Namespace) -> int:

    if ns.run_dir is not None and ns.evaluations is not None:
        raise CnnzooError("report: give RUN_DIR or --evaluations JSON..., not both")
    if ns.run_dir is None and ns.evaluations is None:
        raise CnnzooError("report: give RUN_DIR (a finished run) or --evaluations JSON...")
    if ns.evaluations is None:
        if ns.data or ns.split:
            raise CnnzooError("report: --data and --split go with --evaluations")
        paths, notes = report_run(ns.run_dir, ns.out, overwrite=ns.overwrite)
    else:
        if ns.out is None:
            raise CnnzooError("report: --evaluations needs --out DIR (where to write the report)")
        notes = []
        paths = report_files(
            ns.evaluations, ns.out, dataset=ns.data, splits=ns.split, overwrite=ns.overwrite
        )
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    print(f"report: {paths['html']}")
    print(f"table: {paths['markdown']}, data: {paths['csv']}, {paths['json']}")
    return 0


def tensorboard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run",
        nargs="?",
        default=None,
        help="a local run or logs folder (default: runs/latest), a gs:// logs root, "
        "or with --host a cluster run's ID",
    )
    add_connection_args(
        p,
        host_required=False,
        host_help="KFP endpoint: RUN is a cluster run's ID, its logs root is read from the run",
    )
    p.add_argument(
        "--output",
        default=None,
        metavar="URI",
        help="a run's output location (--output of run/submit): serve its tensorboard/",
    )
    p.add_argument(
        "--port", type=int, default=None, help="port (default: 6006 if free, else any; 0 = any)"
    )
    p.add_argument("--bind", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument(
        "--sync-interval",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds between re-syncs of gs:// logs while serving (default 30)",
    )


def _logs_root(ns: argparse.Namespace) -> str:
    """The logs root the arguments name: a local path or a ``gs://`` URI."""

    if ns.host is not None:
        if ns.output is not None or not ns.run:
            raise CnnzooError("tensorboard --host: give the cluster run's ID (and no --output)")

        root = run_logs_root_from_kfp(ns.run, connection_arg(ns))
        print(f"run {ns.run}: logs root {root}", file=sys.stderr)
        return root
    if ns.output is not None:
        if ns.run:
            raise CnnzooError("tensorboard: give either RUN or --output, not both")
        return run_logs_root("", ns.output)
    return ns.run or ""


def tensorboard_command(ns: argparse.Namespace) -> int:

    if not ns.sync_interval > 0:
        raise CnnzooError(f"--sync-interval: must be positive, got {ns.sync_interval:g}")
    root = _logs_root(ns)
    if root.startswith("pvc://"):
        raise CnnzooError(
            f"{root}: logs on a cluster volume; open the run's Kubeflow Tensorboard "
            "(Central Dashboard -> Tensorboards) or kubectl port-forward its service"
        )
    if not is_gcs(root):
        logdir = resolve_logdir(root or None)
        if not has_event_files(logdir):
            print(f"warning: no TensorBoard event files under {logdir} yet", file=sys.stderr)
        return _serve(logdir, ns, f"logs: {logdir}")
    with tempfile.TemporaryDirectory(prefix="cnnzoo-tensorboard-") as cache:
        mirror = LogSync(root, cache, interval_s=ns.sync_interval)
        fetched = mirror.sync()
        print(f"gcs: mirrored {fetched} files of {root} into {cache}", file=sys.stderr)
        if not has_event_files(cache):
            print(f"warning: no TensorBoard event files under {root} yet", file=sys.stderr)
        with mirror:
            label = f"logs: {root}, re-synced every {ns.sync_interval:g} s"
            return _serve(Path(cache), ns, label)


def _serve(logdir: Path, ns: argparse.Namespace, label: str) -> int:
    """Run TensorBoard on ``logdir`` until it exits or Ctrl-C; the command's exit status."""

    server = start_tensorboard(logdir, port=ns.port, host=ns.bind)
    print(f"TensorBoard: {server.url} ({label}); press Ctrl-C to stop", flush=True)
    try:
        status = server.wait()
    except KeyboardInterrupt:
        server.stop()
        print("TensorBoard stopped", file=sys.stderr)
        return 0
    server.stop()
    if status != 0:
        print(f"error: TensorBoard exited with status {status}", file=sys.stderr)
        return 1
    return 0
