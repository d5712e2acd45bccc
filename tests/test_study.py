"""``cnnzoo.orchestration.study.Study``: the study's parameters, validated once, the profile
resolved
on the submitting side into the JSON the tasks receive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cnnzoo.config.profile import load_profile, profile_from_dict
from cnnzoo.core.errors import CnnzooError
from cnnzoo.orchestration.study import Study

REPO = Path(__file__).resolve().parent.parent


def test_arguments_carry_the_resolved_profile_as_data(tmp_path):
    over = tmp_path / "over.yaml"
    over.write_text("batch_size: 5\nmax_epochs: 4\n")
    study = Study(
        models=["simple", "mid"],
        profile="full",
        overrides=["max_epochs=2"],
        override_files=[str(over)],
        seed=11,
        tensorboard_root="tb",
    )
    args = study.arguments(local=True)
    typed = {"max_epochs", "img_size", "batch_size", "seed", "repeats", "weights"}
    assert set(args) == {"data_uri", "models", "profile", "tensorboard_root", "output_uri"} | typed
    assert args["models"] == ["simple", "mid"] and args["data_uri"] == "demo"
    profile = json.loads(args["profile"])
    full = yaml.safe_load((REPO / "configs" / "profiles" / "full.yaml").read_text())
    assert profile["name"] == "full" and profile["img_size"] == full["img_size"]
    # --config, then --set, then --seed
    assert (profile["batch_size"], profile["max_epochs"], profile["seed"]) == (5, 2, 11)
    assert profile_from_dict(profile).to_dict() == profile  # what a task rebuilds
    # the typed parameters carry the same values (a run started from the UI edits these)
    assert {k: args[k] for k in typed} == {
        "max_epochs": 2,
        "img_size": full["img_size"],
        "batch_size": 5,
        "seed": 11,
        "repeats": 1,
        "weights": profile["weights"],
    }
    assert Path(args["tensorboard_root"]).is_absolute()
    # immutable and plain: the same study, the same arguments
    assert study.models == ("simple", "mid")
    assert study.arguments(local=True) == args
    assert json.loads(json.dumps(study.to_dict()))["override_files"] == [str(over)]


def test_a_users_profile_file_is_fine_for_a_cluster_run(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: full\nname: mine\nmax_epochs: 7\n")
    args = Study(data_uri="gs://b/data", profile=str(mine)).arguments(local=False)
    profile = json.loads(args["profile"])
    assert (profile["name"], profile["max_epochs"]) == ("mine", 7)


@pytest.mark.parametrize(
    "study, local, message",
    [
        (Study(models=()), True, "no model configuration"),
        (Study(models=("simple", "vgg")), True, "'vgg'"),
        (Study(overrides=("batch_size=zero",)), True, "batch_size"),
        (Study(data_uri="./nowhere/at/all"), True, "no such file or folder"),
        (Study(data_uri="/some/folder"), False, "a cluster run reads"),
        (Study(output_uri="out/dir"), False, "a cluster run writes"),
        (Study(output_uri="gs://Bad_Bucket/x"), False, "'Bad_Bucket'"),
    ],
)
def test_bad_studies_are_rejected_with_one_line(study, local, message):
    with pytest.raises(CnnzooError, match=message) as e:
        study.arguments(local=local)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("models", "repeats", "parallelism", "cpus", "threads"),
    [
        (("simple",), 1, 4, 16, 16),  # one training at a time: every CPU
        (("simple", "mid", "resnet"), 1, 4, 16, 8),  # kfp.local runs 2 iterations at once
        (("simple", "mid", "resnet"), 1, 1, 16, 16),  # parallelism 1: one at a time
        (("simple",), 2, 0, 16, 8),  # two repeats are two iterations
        (("simple", "mid"), 1, 4, 2, 1),
        (("simple", "mid"), 1, 4, 1, 1),  # never 0
    ],
)
def test_local_tasks_share_the_cpus_between_the_trainings_that_run_at_once(
    monkeypatch, models, repeats, parallelism, cpus, threads
):
    from cnnzoo.orchestration.local_run import _threads_per_task
    from cnnzoo.orchestration.placement import load_placement

    monkeypatch.setattr("cnnzoo.core.workers.usable_cpus", lambda: cpus)
    study = Study(data_uri="demo", models=models, profile="demo", overrides=[f"repeats={repeats}"])
    placement = load_placement().model_copy(update={"parallelism": parallelism})
    models = study.arguments(local=True)["models"]
    assert _threads_per_task(study, placement, models) == threads


def test_a_run_of_every_model_shares_the_cpus_too(monkeypatch):
    from cnnzoo.models.registry import list_models
    from cnnzoo.orchestration.local_run import _threads_per_task
    from cnnzoo.orchestration.placement import load_placement

    monkeypatch.setattr("cnnzoo.core.workers.usable_cpus", lambda: 16)
    study = Study(data_uri="demo", profile="demo")  # no models named: all fourteen
    models = study.arguments(local=True)["models"]
    assert models == list(list_models())
    assert _threads_per_task(study, load_placement(), models) == 8


# --- the typed parameters a person edits in the KFP UI --------------------------------------


def _typed(profile, **changes):
    from cnnzoo.orchestration.study import parameter_values

    return {**parameter_values(profile), **changes}


def test_ui_parameters_win_over_the_compiled_in_profile():
    from cnnzoo.components.resolve_profile import resolve_profile
    from cnnzoo.orchestration import tasks

    demo = load_profile("demo")
    base = json.dumps(demo.to_dict())
    # unchanged values: the profile as it was (equal JSON, so equal cache keys downstream)
    for func in (tasks.resolve_profile, resolve_profile):
        same = json.loads(func(base, **_typed(demo)))
        assert same == json.loads(base)
    edited = json.loads(
        tasks.resolve_profile(
            base, **_typed(demo, max_epochs=7, batch_size=3, seed=9, repeats=2, weights="imagenet")
        )
    )
    assert (edited["max_epochs"], edited["batch_size"], edited["seed"]) == (7, 3, 9)
    assert (edited["repeats"], edited["weights"]) == (2, "imagenet")
    assert edited["models"] == demo.to_dict()["models"]  # the rest of the profile kept
    # 0 epochs: no cap; empty weights: random weights
    full = load_profile("full")
    uncapped = json.loads(
        tasks.resolve_profile(json.dumps(full.to_dict()), **_typed(full, max_epochs=0, weights=""))
    )
    assert full.weights == "imagenet" and uncapped["weights"] is None
    assert uncapped["max_epochs"] is None


@pytest.mark.parametrize(
    "change, line",
    [
        ({"batch_size": 0}, "--set batch_size=0: batch_size must be >= 1, got 0"),
        ({"img_size": 10}, "--set img_size=10: img_size must be >= 32, got 10"),
        ({"repeats": 101}, "--set repeats=101: repeats must be <= 100, got 101"),
        ({"seed": -1}, "--set seed=-1: seed must be >= 0, got -1"),
        ({"max_epochs": -2}, "--set max_epochs=-2: max_epochs must be >= 1 or null, got -2"),
    ],
)
def test_a_bad_ui_value_fails_with_the_set_message(change, line):
    """The same rules and the same line as ``--set`` on the command line."""
    from cnnzoo.orchestration import tasks

    demo = load_profile("demo")
    with pytest.raises(CnnzooError) as raised:
        tasks.resolve_profile(json.dumps(demo.to_dict()), **_typed(demo, **change))
    assert str(raised.value) == line
    ((key, value),) = change.items()
    with pytest.raises(CnnzooError) as cli:
        load_profile("demo", [f"{key}={value}"])
    assert str(cli.value) == line


def test_plan_refuses_an_image_size_too_small_for_a_model():
    from cnnzoo.orchestration import tasks
    from cnnzoo.orchestration.placement import load_placement

    profile = json.dumps(load_profile("demo", ["img_size=32"]).to_dict())
    placements = load_placement().model_placements()
    with pytest.raises(CnnzooError, match=r"img_size 32 is too small for xception_transfer"):
        tasks.plan(["simple", "xception_transfer"], placements, profile)
