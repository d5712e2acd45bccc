"""``cnnzoo.orchestration.study.Study``: the study's parameters, validated once, the profile
resolved
on the submitting side into the JSON the tasks receive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cnnzoo.config.profile import profile_from_dict
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
    assert set(args) == {"data_uri", "models", "profile", "tensorboard_root", "output_uri"}
    assert args["models"] == ["simple", "mid"] and args["data_uri"] == "demo"
    profile = json.loads(args["profile"])
    full = yaml.safe_load((REPO / "configs" / "profiles" / "full.yaml").read_text())
    assert profile["name"] == "full" and profile["img_size"] == full["img_size"]
    # --config, then --set, then --seed
    assert (profile["batch_size"], profile["max_epochs"], profile["seed"]) == (5, 2, 11)
    assert profile_from_dict(profile).to_dict() == profile  # what a task rebuilds
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
