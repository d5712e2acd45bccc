"""Where every artifact lives: the one home of cnnzoo's file names and path rules.

Every step, runner and reader takes the names of the files it exchanges and the places
a run's results go from here, so a name is spelled once. Changing one is a change of
the formats ``docs/formats.md`` describes: do it here and nowhere else.
"""

from __future__ import annotations

from cnnzoo.core.errors import CnnzooError

# --- output ownership --------------------------------------------------------------------
#: An output folder's ownership marker (``{"kind", "cnnzoo_version"}``); on ``gs://`` the
#: commit marker of the output (``storage.outputs.GcsOutput``).
MARKER = ".cnnzoo.json"
#: The kinds of output cnnzoo writes, as recorded in :data:`MARKER`.
INGEST_KIND = "ingest"
SPLIT_KIND = "split"
DEMO_KIND = "demo-data"
TRAIN_KIND = "train"
REPORT_KIND = "report"
EXPORT_KIND = "export"
TENSORBOARD_KIND = "tensorboard"

# --- ingest output -----------------------------------------------------------------------
#: The ingested dataset's manifest.
MANIFEST = "manifest.json"
#: Usable images, ``images/<split>/<class>/<file>``.
IMAGES_DIR = "images"
#: The kept JPEG decodes, ``decoded/pixels-CCCCC[-P].bin``.
DECODED_DIR = "decoded"


def decoded_file(chunk: int, part: int = 0) -> str:
    """The kept-decode file of ``chunk`` (its ``part``-th continuation when > 0), relative
    to the ingest output."""
    return f"{DECODED_DIR}/pixels-{chunk:05d}{f'-{part}' if part else ''}.bin"


# --- split output ------------------------------------------------------------------------
#: The split's description (classes, sizes, shards, files in record order).
SPLIT_INFO = "split.json"

# --- train output ------------------------------------------------------------------------
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
#: The resolved configuration saved beside the model.
CONFIG_FILE = "config.yaml"
#: TensorBoard logs inside a train output when no logs folder is given.
LOGS_DIR = "logs"
#: Default checkpoint folder inside a train output folder.
CHECKPOINT_DIR = "checkpoint"
#: The checkpoint's pointer file, written last: its presence marks a complete checkpoint.
CHECKPOINT_POINTER = "latest.json"
#: A KFP train task's ``tensorboard`` artifact, when the logs go to a shared root: a
#: pointer to where they are.
LOGS_POINTER = "LOGS_AT.txt"


def checkpoint_file(epoch: int) -> str:
    """The arrays of the checkpoint after ``epoch``."""
    return f"state-epoch{epoch:04d}.npz"


# --- report output -----------------------------------------------------------------------
#: The report's files by format.
REPORT_FILES = {
    "html": "report.html",
    "markdown": "report.md",
    "csv": "comparison.csv",
    "json": "comparison.json",
}
#: The artifacts a report was built from (what ``cnnzoo report`` reads back).
RUN_MANIFEST = "run-manifest.json"

# --- a local run folder (``cnnzoo run``) -------------------------------------------------
#: Where ``cnnzoo run`` makes run folders by default; ``<runs>/latest`` links the newest.
RUNS_DIR = "runs"
LATEST_RUN = "latest"
#: The run's record, log and compiled pipeline.
RUN_RECORD = "run.json"
RUN_LOG = "run.log"
RUN_PIPELINE = "pipeline.yaml"
#: The run's TensorBoard root inside its folder, and kfp.local's pipeline root.
RUN_TENSORBOARD = "tensorboard"
RUN_KFP_ROOT = "kfp"
#: Under kfp.local's pipeline root with the docker runner: a local ``--data`` copied in
#: (``input/<name>``) and the logs root the containers write (``tensorboard/``).
DOCKER_INPUT_DIR = "input"
DOCKER_LOGS_DIR = "tensorboard"

# --- a run's output location (``--output``, a local folder or gs://) -------------------
#: ``<output>/models/<label>/``, ``<output>/checkpoints/<label>/``,
#: ``<output>/tensorboard/<label>/``, ``<output>/report/``.
OUTPUT_MODELS = "models"
OUTPUT_CHECKPOINTS = "checkpoints"
OUTPUT_TENSORBOARD = "tensorboard"
OUTPUT_REPORT = "report"


def run_label(model: str, seed: int, repeats: int) -> str:
    """The name of one training run of ``model``, also its folder below models/,
    checkpoints/ and the TensorBoard root: ``model`` alone when the profile has one
    repeat (the paths of a study without repeats), else ``<model>/seed-<seed>``."""
    return model if repeats == 1 else f"{model}/seed-{seed}"


def output_location(output_uri: str, *parts: str) -> str:
    """``<output_uri>/<part>/...``: a place under a run's output location (``--output``).

    Args:
        output_uri: a local folder or ``gs://bucket/prefix`` (a trailing ``/`` is ignored).
        *parts: path components below it, e.g. ``"models", "simple"``.

    Returns:
        The location, joined with ``/`` (kept a string: a ``gs://`` URI is not a path).

    Raises:
        CnnzooError: if ``output_uri`` is empty.
    """
    root = str(output_uri).rstrip("/")
    if not root:
        raise CnnzooError("output_uri: empty output location")
    return "/".join([root, *parts])


def model_location(output_uri: str, label: str) -> str:
    """Where a finished training run ``label`` (:func:`run_label`) is exported."""
    return output_location(output_uri, OUTPUT_MODELS, *label.split("/"))


def checkpoint_location(output_uri: str, label: str) -> str:
    """Where training run ``label`` checkpoints, so a retried task resumes."""
    return output_location(output_uri, OUTPUT_CHECKPOINTS, label)


def report_location(output_uri: str) -> str:
    """Where a run's report is exported."""
    return output_location(output_uri, OUTPUT_REPORT)


def run_logs_root(tensorboard_root: str, output_uri: str) -> str:
    """A run's TensorBoard root: ``tensorboard_root``, else ``<output_uri>/tensorboard``.

    Returns:
        The root without a trailing ``/``, or ``""`` when neither is set (each train
        task then keeps its logs in its own artifact).
    """
    if tensorboard_root:
        return str(tensorboard_root).rstrip("/")
    return output_location(output_uri, OUTPUT_TENSORBOARD) if output_uri else ""
