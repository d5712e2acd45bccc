"""The task functions (cnnzoo.orchestration.tasks): the KFP components and the CLI run the
same code, every component body is one call, and the evaluation's seed on a non-finite
loss."""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import cli_error

from cnnzoo.cli.main import main
from cnnzoo.config.profile import load_profile
from cnnzoo.core.errors import CnnzooError
from cnnzoo.evaluation.evaluate import evaluate_model
from cnnzoo.models.registry import list_models
from cnnzoo.orchestration import tasks
from cnnzoo.orchestration.placement import load_placement
from cnnzoo.orchestration.study import profile_json
from cnnzoo.storage.layout import (
    LOGS_DIR,
    LOGS_POINTER,
    MODEL_FILE,
    OUTPUT_CHECKPOINTS,
    OUTPUT_MODELS,
    OUTPUT_TENSORBOARD,
)

REPO = Path(__file__).resolve().parent.parent
#: The demo profile cut to one epoch of ``simple`` on the tiny split (72 px, the demo's).
ONE_EPOCH = ["batch_size=8", "models.simple.epochs=1"]
#: A TensorBoard event file's name, ``events.out.tfevents.<time>.<host>.<pid>.<n>.v2``:
#: time, host and pid vary from run to run.
EVENT_FILE = re.compile(r"^events\.out\.tfevents\.\d+(\.\d+)?\..+\.v2$")


def _files(root: Path) -> list[str]:
    """Every file below ``root``, as sorted relative POSIX paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _dirs(root: Path) -> list[str]:
    """Every folder below ``root``, as sorted relative POSIX paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir())


def _log_kinds(root: Path) -> list[str]:
    """The files below a TensorBoard run folder, an event file's varying name (time,
    host, pid) replaced by ``<events>``: ``["train/<events>", "validation/<events>", ...]``."""
    kinds = []
    for rel in _files(root):
        folder, _, name = rel.rpartition("/")
        kind = "<events>" if EVENT_FILE.match(name) else name
        kinds.append(f"{folder}/{kind}" if folder else kind)
    return sorted(kinds)


def _weights(model_keras: Path) -> list[np.ndarray]:
    import keras

    return [np.asarray(w) for w in keras.models.load_model(model_keras).get_weights()]


# --- the KFP train task and `cnnzoo train --output` ----------------------------------------


@pytest.fixture(scope="module")
def both_sides(tiny_split, tmp_path_factory):
    """``simple`` trained one epoch twice on the tiny split: by the KFP train component's
    function on kfp's own artifact objects, and by ``cnnzoo train --output``.

    Both call ``cnnzoo.training.train.train_model``; a spy records the checkpoint folder
    each passed and what that folder held when training ended (a successful run deletes
    its checkpoint afterwards)."""
    import keras
    from kfp import dsl

    import cnnzoo.training.train
    from cnnzoo.components.train import train

    base = tmp_path_factory.mktemp("equivalence")
    checkpoints = []  # (checkpoint_dir, its files at the end of training)

    class Snapshot(keras.callbacks.Callback):
        def __init__(self, folder):
            super().__init__()
            self.folder = folder

        def on_train_end(self, logs=None):  # after the last epoch's checkpoint
            checkpoints.append((self.folder, _files(Path(self.folder))))

    real_train = cnnzoo.training.train.train_model

    def spy(*args, **kwargs):
        return real_train(*args, **kwargs, callbacks=[Snapshot(kwargs["checkpoint_dir"])])

    kfp_model = dsl.Model(uri=str(base / "kfp" / "model"))
    kfp_logs = dsl.Artifact(uri=str(base / "kfp" / "tensorboard"))
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cnnzoo.training.train, "train_model", spy)
        train(
            model_name="simple",
            splits=dsl.Dataset(uri=str(tiny_split)),
            profile=profile_json(load_profile("demo", ONE_EPOCH)),
            tensorboard_root="",
            output_uri=str(base / "kfp" / "output"),
            model=kfp_model,
            tensorboard=kfp_logs,
        )
        argv = ["train", "simple", str(tiny_split), str(base / "cli" / "model")]
        argv += ["--output", str(base / "cli" / "output")]
        for item in ONE_EPOCH:
            argv += ["--set", item]
        assert main(argv) == 0
    return {"base": base, "model": kfp_model, "logs": kfp_logs, "checkpoints": checkpoints}


def test_cli_train_with_output_writes_what_the_kfp_train_task_writes(both_sides):
    """Compared, KFP side vs CLI side: the relative file lists of ``<output>/models/simple``
    and of the task's model folder (OUT for the CLI), config.yaml byte for byte; the
    checkpoint folder training was given (``<output>/checkpoints/simple``) and the files
    in it when training ended, and what is left under ``<output>/checkpoints``; the
    folders below ``<output>/tensorboard/simple`` and its files by kind (an event file's
    name carries a time, host and pid: each is compared as ``<folder>/<events>``); and
    every weight array of both exported model.keras files, exactly."""
    base = both_sides["base"]
    kfp, cli = base / "kfp" / "output", base / "cli" / "output"

    models = [_files(side / OUTPUT_MODELS / "simple") for side in (kfp, cli)]
    assert models[0] == models[1]
    assert {MODEL_FILE, "history.json", "config.yaml"} <= set(models[0])
    # what was exported is the task's model folder (OUT for the CLI), file for file
    assert _files(base / "kfp" / "model") == _files(base / "cli" / "model") == models[0]
    assert (kfp / OUTPUT_MODELS / "simple" / "config.yaml").read_bytes() == (
        cli / OUTPUT_MODELS / "simple" / "config.yaml"
    ).read_bytes()

    (kfp_dir, kfp_state), (cli_dir, cli_state) = both_sides["checkpoints"]
    assert (kfp_dir, cli_dir) == (f"{kfp}/checkpoints/simple", f"{cli}/checkpoints/simple")
    assert kfp_state == cli_state and len(kfp_state) >= 2  # the pointer and the arrays
    assert _files(kfp / OUTPUT_CHECKPOINTS) == _files(cli / OUTPUT_CHECKPOINTS) == []

    logs = [side / OUTPUT_TENSORBOARD / "simple" for side in (kfp, cli)]
    assert _dirs(logs[0]) == _dirs(logs[1])
    assert {"train", "validation"} <= set(_dirs(logs[0]))
    assert _log_kinds(logs[0]) == _log_kinds(logs[1])
    assert "train/<events>" in _log_kinds(logs[0])

    # The task's logs artifact points at the shared root; the CLI's is that root.
    pointer = Path(both_sides["logs"].path) / LOGS_POINTER
    assert pointer.read_text() == f"{kfp}/tensorboard/simple\n"
    assert not (base / "cli" / "model" / LOGS_DIR).exists()
    kfp_model = both_sides["model"]
    assert kfp_model.metadata["exported"] == str(kfp / OUTPUT_MODELS / "simple")
    assert kfp_model.metadata["status"] == "ok" and kfp_model.metadata["epochs_run"] == 1

    # Training is seeded: the same weights, bit for bit.
    kfp_weights = _weights(kfp / OUTPUT_MODELS / "simple" / MODEL_FILE)
    cli_weights = _weights(cli / OUTPUT_MODELS / "simple" / MODEL_FILE)
    assert len(kfp_weights) == len(cli_weights) > 0
    for a, b in zip(kfp_weights, cli_weights, strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)


def test_cli_train_output_refuses_a_checkpoint_folder(capsys, tiny_split, tmp_path):
    line = cli_error(
        capsys,
        ["train", "simple", str(tiny_split), str(tmp_path / "m"), "--output", str(tmp_path / "o")]
        + ["--checkpoint", str(tmp_path / "c")],
    )
    assert "--checkpoint" in line and "conflicts with --output" in line
    assert not (tmp_path / "m").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "output, message",
    [("s3://bucket/x", "expected a local folder or gs://bucket/prefix"), ("gs://", "no bucket")],
)
def test_cli_train_output_refuses_a_bad_location(capsys, tiny_split, tmp_path, output, message):
    line = cli_error(
        capsys,
        ["train", "simple", str(tiny_split), str(tmp_path / "m")]
        + [
            "--output",
            output,
        ],
    )
    assert line.startswith("error: --output") and message in line


# --- plan -----------------------------------------------------------------------------------


def test_plan_names_unknown_models_in_one_line():
    from cnnzoo.components.plan import plan

    placements = load_placement().model_placements()
    profile = profile_json(load_profile("demo"))
    for func in (tasks.plan, plan):
        with pytest.raises(CnnzooError) as raised:
            func(["simple", "no_such_model", "other\nmodel"], placements, profile)
        message = str(raised.value)
        assert "\n" not in message
        assert "no_such_model" in message and "other model" in message
        assert "simple" not in message


def test_plan_starts_the_costliest_trainings_first(capsys):
    """The loop starts its iterations in the plan's order, a few at a time: the demo's
    longest training (inception, 3 epochs of 7x7 convolutions) goes first, the five
    learners before the nine capped pipeline checks."""
    placements = load_placement().model_placements()
    profile = load_profile("demo")
    models = list_models()
    records = tasks.plan(models, placements, profile_json(profile))
    order = [r["model"] for r in records]
    assert sorted(order) == sorted(models)
    assert order[0] == "inception"
    learners = [m for m in models if profile.steps_cap(m) is None]
    assert set(order[: len(learners)]) == set(learners) and len(learners) == 5
    costs = [profile.training_cost(m) for m in order]
    assert costs[:5] == sorted(costs[:5], reverse=True)
    assert costs[5:] == sorted(costs[5:], reverse=True)
    out = capsys.readouterr().out
    assert f"plan: training order, costliest first: {', '.join(order)}" in out
    assert out.index("plan inception:") < out.index("plan simple:")

    # The estimate follows the schedule: more epochs of simple make it the costliest.
    longer = load_profile("demo", ["models.simple.epochs=2000"])
    assert tasks.plan(models, placements, profile_json(longer))[0]["model"] == "simple"
    # ... and the image size: 4x the pixels cost 4x (the registry's figure scales by area).
    big = load_profile("demo", ["img_size=144"])
    assert big.training_cost("mid") == pytest.approx(4 * profile.training_cost("mid"))
    # With pretrained weights every configuration trains whole epochs: no group of checks.
    weighted = load_profile("demo", ["weights=/nowhere/weights"])
    assert weighted.steps_cap("xception_finetune") is None
    assert tasks.costliest_first(weighted, ["simple", "xception_finetune"]) == [
        "xception_finetune",
        "simple",
    ]


def test_a_configuration_of_unknown_cost_starts_before_the_known_ones(monkeypatch):
    from cnnzoo.config.profile import Profile

    known = Profile.training_cost
    monkeypatch.setattr(
        Profile, "training_cost", lambda self, m: None if m == "simple" else known(self, m)
    )
    profile = load_profile("demo")
    assert tasks.costliest_first(profile, ["mid", "simple", "inception", "xception_transfer"]) == [
        "simple",
        "inception",
        "mid",
        "xception_transfer",
    ]
    # Equal estimates keep the order given (the seeds of a model stay together too).
    assert tasks.costliest_first(profile, ["resnet_aug", "resnet"]) == ["resnet_aug", "resnet"]
    assert tasks.costliest_first(profile, ["resnet", "resnet_aug"]) == ["resnet", "resnet_aug"]


# --- the component bodies -------------------------------------------------------------------

COMPONENT_FILES = sorted(p for p in (REPO / "components").glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", COMPONENT_FILES, ids=lambda p: p.stem)
def test_each_component_body_is_one_statement_after_its_imports(path):
    tree = ast.parse(path.read_text(), str(path))
    (func,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == path.stem]
    body = func.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    body = [s for s in body if not isinstance(s, (ast.Import, ast.ImportFrom))]
    assert len(body) == 1, f"{path.name}: {len(body)} statements after the imports"
    call = body[0].value if isinstance(body[0], (ast.Expr, ast.Return)) else None
    assert isinstance(call, ast.Call), ast.unparse(body[0])
    assert ast.unparse(call.func) == f"tasks.{path.stem}", ast.unparse(call.func)
    # every name the body uses is a parameter or imported in the body (KFP ships only it)
    params = {a.arg for a in func.args.args + func.args.kwonlyargs}
    imported = {
        (a.asname or a.name).split(".")[0]
        for s in func.body
        if isinstance(s, (ast.Import, ast.ImportFrom))
        for a in s.names
    }
    used = {n.id for n in ast.walk(call) if isinstance(n, ast.Name)}
    assert used <= params | imported, used - params - imported


# --- LocalArtifact --------------------------------------------------------------------------


def test_local_artifact_records_metrics_as_kfp_does(tmp_path):
    from kfp import dsl

    local = tasks.LocalArtifact(tmp_path / "m")
    assert local.path == local.uri == str(tmp_path / "m") and local.metadata == {}
    kfp_metrics = dsl.Metrics()
    kfp_confusion = dsl.ClassificationMetrics()
    for art in (local, kfp_metrics):
        art.log_metric("test_accuracy", 0.5)
    local.log_confusion_matrix(["a", "b"], [[1, 2], [3, 4]])
    kfp_confusion.log_confusion_matrix(["a", "b"], [[1, 2], [3, 4]])
    assert local.metadata == {**kfp_metrics.metadata, **kfp_confusion.metadata}
    with pytest.raises(ValueError):
        local.log_confusion_matrix(["a", "b"], [[1, 2]])


# --- evaluation of a model whose loss is not finite ----------------------------------------


def test_a_non_finite_loss_is_recorded_with_the_training_seed(tiny_split, trained_simple, tmp_path):
    """The record of a model that outputs NaN names its training seed (with repeats, the
    report tells diverged seeds of one model apart by it)."""
    import keras

    out = tmp_path / "simple"
    shutil.copytree(trained_simple, out)  # the session's model, trained at seed 7
    model = keras.models.load_model(out / MODEL_FILE)
    model.set_weights(
        [
            np.full_like(w, np.nan) if np.issubdtype(w.dtype, np.floating) else w
            for w in model.get_weights()
        ]
    )
    model.save(out / MODEL_FILE)

    res = evaluate_model(out, tiny_split, tmp_path / "evaluation.json")
    assert res["status"] == "failed"
    assert "non-finite" in res["error"]
    assert res["seed"] == 7
    assert json.loads((tmp_path / "evaluation.json").read_text())["seed"] == 7
