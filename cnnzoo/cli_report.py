"""CLI commands ``cnnzoo report`` (rebuild a run's comparison report) and ``cnnzoo tensorboard``.

Imported by :mod:`cnnzoo.cli`, which registers every ``@command`` defined here.
"""

from __future__ import annotations

import argparse
import sys

from cnnzoo.cli import command


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_dir",
        help="a finished run's folder (runs/<timestamp>, KFP local outputs, downloaded artifacts)",
    )
    p.add_argument(
        "--out", default=None, help="folder to write the report to (default: RUN_DIR/report)"
    )


@command("report", "rebuild the comparison report from a finished run's outputs", _report_args)
def _report(ns: argparse.Namespace) -> int:
    from cnnzoo.report import report_run

    paths, notes = report_run(ns.run_dir, ns.out)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    print(f"report: {paths['html']}")
    print(f"table: {paths['markdown']}, data: {paths['csv']}, {paths['json']}")
    return 0


def _tensorboard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run",
        nargs="?",
        default=None,
        help="a run folder or logs folder (default: runs/latest)",
    )
    p.add_argument(
        "--port", type=int, default=None, help="port (default: 6006 if free, else any; 0 = any)"
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")


@command("tensorboard", "serve a local run's TensorBoard logs until Ctrl-C", _tensorboard_args)
def _tensorboard(ns: argparse.Namespace) -> int:
    from cnnzoo.tblogs import has_event_files, resolve_logdir, start_tensorboard

    logdir = resolve_logdir(ns.run)
    if not has_event_files(logdir):
        print(f"warning: no TensorBoard event files under {logdir} yet", file=sys.stderr)
    server = start_tensorboard(logdir, port=ns.port, host=ns.host)
    print(f"TensorBoard: {server.url} (logs: {logdir}); press Ctrl-C to stop", flush=True)
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
