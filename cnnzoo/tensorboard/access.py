"""How to open a run's TensorBoard, as the report and the CLI say it.

There is no KFP UI viewer to feed: KFP v2's UI does not read ``mlpipeline-ui-metadata``
(kubeflow/pipelines#6912); on a cluster the run's Kubeflow ``Tensorboard``
(:mod:`cnnzoo.tensorboard.resource`) is the one-click way, else ``cnnzoo tensorboard``.
"""

from __future__ import annotations

from typing import Any


def tensorboard_access(context: dict[str, Any]) -> list[tuple[str, str, str]]:
    """How to open a run's TensorBoard, as the report states it.

    Args:
        context: the report's run context; reads ``tensorboard_root`` (the logs root)
            and ``tensorboard_cr`` (the run's Kubeflow ``Tensorboard``: a
            :meth:`cnnzoo.tensorboard.resource.TensorboardRef.to_dict`, or ``{"error": ...}``
            when the pipeline step could not create it).

    Returns:
        ``(label, text, command)`` per line; ``command`` is "" when there is none.
    """
    lines = []
    root = context.get("tensorboard_root")
    if root:
        lines.append(
            ("TensorBoard logs", f"{root}; serve them locally with", f"cnnzoo tensorboard {root}")
        )
    board = context.get("tensorboard_cr") or {}
    if board.get("error"):
        lines.append(("Kubeflow Tensorboard", f"not created: {board['error']}", ""))
    elif board.get("name"):
        lines.append(
            (
                "Kubeflow Tensorboard",
                f"{board['name']} in namespace {board['namespace']}: Central Dashboard → "
                f"Tensorboards → CONNECT (path {board['dashboard_path']}), or run "
                "this and open http://127.0.0.1:6006/:",
                board["port_forward"],
            )
        )
    return lines


def tensorboard_markdown(context: dict[str, Any]) -> str:
    """:func:`tensorboard_access` as a Markdown section ("" when there is nothing to say)."""
    lines = tensorboard_access(context)
    if not lines:
        return ""
    items = [f"- **{label}**: {text}" + (f" `{cmd}`" if cmd else "") for label, text, cmd in lines]
    return "\n## TensorBoard\n\n" + "\n".join(items) + "\n"
