"""A profile's own configurations: variants and grid sweeps, from YAML to plan, train,
config.yaml and the evaluation record."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import cli_error, notebook_profile

from cnnzoo.cli.main import main
from cnnzoo.config.profile import load_profile, profile_from_dict
from cnnzoo.core.errors import CnnzooError
from cnnzoo.evaluation.evaluate import evaluate_model
from cnnzoo.evaluation.records import read_evaluation
from cnnzoo.models.registry import get_spec, list_models
from cnnzoo.orchestration import tasks
from cnnzoo.orchestration.study import Study, profile_json
from cnnzoo.tensorboard.hparams import write_hparams_config
from cnnzoo.training.train import train_model

STUDY = {
    "variants": {
        "mid_slow": {"from": "mid", "learning_rate": 0.0001, "epochs": 20},
        "mid_slower": {"from": "mid_slow", "epochs": 3},
        "resnet_plus_aug": {"from": "resnet", "augment": True},
        "xft_fast": {"from": "xception_finetune", "finetune": {"learning_rate": 0.001}},
    },
    "sweeps": {
        "simple_lr": {"from": "simple", "epochs": 10, "grid": {"learning_rate": [0.01, 0.001]}},
    },
}
POINTS = ["simple_lr__learning_rate_0p01", "simple_lr__learning_rate_0p001"]


@pytest.fixture
def study_yaml(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    return path


def test_variants_derive_their_schedule_and_spec(study_yaml):
    profile = load_profile("full", override_files=[str(study_yaml)])
    derived = profile.derived_configurations()
    assert list(derived) == [*STUDY["variants"], *POINTS]

    mid = profile.stages_for("mid")[0]
    (slow,) = profile.stages_for("mid_slow")
    assert (slow.learning_rate, slow.epochs) == (0.0001, 20)
    assert (slow.lr_patience, slow.stop_patience) == (mid.lr_patience, mid.stop_patience)
    (slower,) = profile.stages_for("mid_slower")  # a variant of a variant
    assert (slower.learning_rate, slower.epochs) == (0.0001, 3)
    assert derived["mid_slower"].registered == "mid"
    assert derived["mid_slower"].derives_from == "mid_slow"

    spec = profile.spec_for("resnet_plus_aug")
    assert (spec.name, spec.strategy, spec.architecture) == (
        "resnet_plus_aug",
        "augment",
        "resnet_aug",
    )
    assert spec.derived_from == "resnet"
    assert spec.notebook_test_accuracy is None

    stage1, stage2 = profile.stages_for("xft_fast")
    base1, base2 = profile.stages_for("xception_finetune")
    assert stage1 == base1 and stage2.learning_rate == 0.001 != base2.learning_rate
    assert profile.spec_for("xft_fast").base == "xception"

    for name, lr in zip(POINTS, (0.01, 0.001), strict=True):
        (stage,) = profile.stages_for(name)
        assert (stage.learning_rate, stage.epochs) == (lr, 10)
        assert derived[name].sweep == "simple_lr"
        assert derived[name].point == {"learning_rate": lr}


def test_max_epochs_caps_variants_too(study_yaml):
    profile = load_profile("full", ["max_epochs=2"], [str(study_yaml)])
    assert [s.epochs for s in profile.stages_for("mid_slow")] == [2]


def test_expansion_is_a_function_of_the_profile_data(study_yaml):
    # the plan step gets the profile as JSON (the UI's way too): same configurations
    profile = load_profile("full", override_files=[str(study_yaml)])
    again = profile_from_dict(json.loads(profile_json(profile)))
    assert again.derived_configurations() == profile.derived_configurations()
    assert again.to_dict()["variants"]["mid_slow"]["from"] == "mid"


def test_sweep_point_names_are_stable_and_path_safe():
    text = "sweeps: {s1: {from: simple, grid: {learning_rate: [1.0e-5, 0.5], lr_patience: [2]}}}"
    profile = load_profile("full", [f"sweeps={yaml.safe_load(text)['sweeps']}"])
    names = [n for n in profile.configuration_names() if n.startswith("s1")]
    assert names == [
        "s1__learning_rate_1em05__lr_patience_2",
        "s1__learning_rate_0p5__lr_patience_2",
    ]
    for name in names:
        assert all(c.isalnum() or c == "_" for c in name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("variants: {v1: {from: nope}}", "variants.v1.from: unknown configuration 'nope'"),
        ("variants: {v1: {from: mid, lr: 3}}", "unknown key 'variants.v1.lr'"),
        ("variants: {v1: {learning_rate: 3}}", "variants.v1.from: missing"),
        (
            "variants: {v1: {from: mid, epochs: 0}}",
            "variants.v1.epochs must be >= 1 or null, got 0",
        ),
        ("variants: {a: {from: b}, b: {from: a}}", "'from' forms a cycle: a -> b -> a"),
        ("variants: {v1: {from: mid, augment: true}}", "variants.v1.augment: mid has no augmented"),
        ("variants: {v1: {from: mid, finetune: {epochs: 2}}}", "variants.v1.finetune: mid has one"),
        ("variants: {mid: {from: simple}}", "variants.mid: is the name of a registered"),
        ("variants: {Bad-Name: {from: mid}}", "variants.Bad-Name: a name is 1-48"),
        ("sweeps: {s: {from: simple, grid: {lr: [0.1]}}}", "sweeps.s.grid.lr: unknown setting"),
        ("sweeps: {s: {from: simple, grid: {epochs: []}}}", "sweeps.s.grid.epochs: must list"),
        ("sweeps: {s: {from: nope, grid: {epochs: [1]}}}", "sweeps.s.from: unknown configuration"),
        (
            "sweeps: {s: {from: simple, grid: {learning_rate: [0.1, -2]}}}",
            "sweeps.s.grid: learning_rate must be > 0 or null, got -2",
        ),
        (
            "sweeps: {s: {from: simple, grid: {epochs: [1, 2, 3], lr_patience: [1, 2]}}}\n"
            "max_sweep_points: 5",
            "sweeps.s.grid: 6 points is more than max_sweep_points (5)",
        ),
    ],
)
def test_bad_variants_and_sweeps_are_one_line_naming_file_and_key(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(CnnzooError) as raised:
        load_profile("full", override_files=[str(path)])
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_default_sweep_cap_is_64(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = {"learning_rate": [0.1 / (i + 1) for i in range(13)], "epochs": [1, 2, 3, 4, 5]}
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({"sweeps": {"big": {"from": "simple", "grid": grid}}}))
    with pytest.raises(CnnzooError, match="65 points is more than max_sweep_points \\(64\\)"):
        load_profile("full", override_files=[str(path)])
    line = cli_error(capsys, ["run", "--config", str(path), "--models", "simple"])
    assert "65 points is more than max_sweep_points (64)" in line
    assert not (tmp_path / "runs").exists()  # refused before anything ran


def test_select_expands_sweeps_and_refuses_unknown_or_twice(study_yaml):
    profile = load_profile("full", override_files=[str(study_yaml)])
    assert profile.select(["simple_lr", "mid_slow"]) == [*POINTS, "mid_slow"]
    assert profile.select(None) == [*list_models(), *STUDY["variants"], *POINTS]
    with pytest.raises(CnnzooError, match="--models: unknown model configuration 'nope'"):
        profile.select(["nope"])
    with pytest.raises(CnnzooError, match="listed more than once: " + POINTS[0]):
        profile.select(["simple_lr", POINTS[0]])


def test_study_arguments_carry_the_expanded_models(study_yaml):
    study = Study(
        models=("simple_lr", "mid_slow"), profile="full", override_files=(str(study_yaml),)
    )
    arguments = study.arguments()
    assert arguments["models"] == [*POINTS, "mid_slow"]
    assert json.loads(arguments["profile"])["sweeps"]["simple_lr"]["from"] == "simple"

    small = Study(models=("xft_fast",), profile="full", override_files=(str(study_yaml),),
                  overrides=("img_size=64",))  # fmt: skip
    with pytest.raises(CnnzooError, match="img_size 64 is too small for xft_fast"):
        small.arguments()


def test_plan_places_variants_on_their_registered_configuration_pool(study_yaml):
    profile = load_profile("full", ["repeats=2"], [str(study_yaml)])
    placements = {m: {"pool": f"pool-of-{m}", "accelerator": ""} for m in list_models()}
    records = tasks.plan(["simple_lr", "mid_slower", "mid"], placements, profile_json(profile))
    seeds = profile.repeat_seeds()
    # Costliest first (full's 30 epochs of mid, mid_slower's 3, then the points' 10 of
    # simple, a sixth of mid's cost an epoch), a model's seeds together.
    assert [(r["model"], r["seed"], r["repeat"]) for r in records] == [
        (name, seed, i)
        for name in ["mid", "mid_slower", *POINTS]
        for i, seed in enumerate(seeds, 1)
    ]
    pools = {r["model"]: r["pool"] for r in records}
    assert pools == {POINTS[0]: "pool-of-simple", POINTS[1]: "pool-of-simple",
                     "mid_slower": "pool-of-mid", "mid": "pool-of-mid"}  # fmt: skip
    with pytest.raises(CnnzooError, match="unknown model configurations: nope"):
        tasks.plan(["nope"], placements, profile_json(profile))


def test_compile_with_a_study_defaults_models_to_its_configurations(study_yaml, tmp_path, capsys):
    """A run started from the KFP UI trains the study the pipeline was compiled with."""
    out = tmp_path / "study-pipeline.yaml"
    images = ["--image", "registry.test/cnnzoo:t1", "--gpu-image", "registry.test/cnnzoo-gpu:t1"]
    assert main(["compile", "--out", str(out), "--config", str(study_yaml), *images]) == 0
    capsys.readouterr()
    spec = next(yaml.safe_load_all(out.read_text()))
    default = spec["root"]["inputDefinitions"]["parameters"]["models"]["defaultValue"]
    assert default == [*list_models(), *STUDY["variants"], *POINTS]
    plain = tmp_path / "plain.yaml"
    assert main(["compile", "--out", str(plain), *images]) == 0
    spec = next(yaml.safe_load_all(plain.read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["models"]["defaultValue"] == list(
        list_models()
    )


def test_cli_models_lists_variants_and_points(study_yaml, capsys):
    assert main(["models", "--config", str(study_yaml)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(list_models()) + len(STUDY["variants"]) + len(POINTS)
    (slower,) = [line for line in lines if line.startswith("mid_slower ")]
    assert "variant of mid_slow" in slower and "epochs=3" in slower
    (point,) = [line for line in lines if line.startswith(POINTS[1] + " ")]
    assert "sweep simple_lr of simple" in point and "learning_rate=0.001" in point


def test_a_variant_trains_and_evaluates_under_its_own_name(tmp_path, tiny_split, study_yaml):
    profile = notebook_profile(["batch_size=8", "max_epochs=1"])
    profile = profile_from_dict({**profile.to_dict(), **STUDY})
    out = tmp_path / "out"
    history = train_model("mid_slow", tiny_split, out, profile)
    assert history["status"] == "ok" and history["model"] == "mid_slow"
    assert history["epochs"][0]["learning_rate"] == pytest.approx(0.0001)

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"] == "mid_slow" and config["strategy"] == get_spec("mid").strategy
    (stage,) = config["stages"]
    assert (stage["learning_rate"], stage["epochs"]) == (0.0001, 1)  # max_epochs=1 applied
    assert config["derived"]["from"] == "mid" and config["derived"]["registered"] == "mid"
    assert config["derived"]["settings"] == {"learning_rate": 0.0001, "epochs": 20}
    # the saved profile rebuilds the same configuration
    again = profile_from_dict(config["profile"])
    assert again.stages_for("mid_slow") == profile.stages_for("mid_slow")

    evaluate_model(out, tiny_split, tmp_path / "eval.json")
    record = read_evaluation(tmp_path / "eval.json")
    assert record.ok and record.model == "mid_slow" and record.derived_from == "mid"
    assert record.sweep is None and record.strategy == "scratch"


def test_unknown_names_for_train_list_the_profile_configurations(
    tmp_path, tiny_split, study_yaml, capsys
):
    line = cli_error(
        capsys,
        ["train", "mid_fast", str(tiny_split), str(tmp_path / "t"), "--config", str(study_yaml)],
    )
    assert "unknown model configuration 'mid_fast'" in line and "mid_slow" in line


def test_the_hparams_model_domain_takes_the_runs_own_configurations(tmp_path):
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins.hparams import metadata

    write_hparams_config(tmp_path, ["simple", *POINTS])
    mx = pem.EventMultiplexer()
    mx.AddRunsFromDirectory(str(tmp_path))
    mx.Reload()
    content = mx.PluginRunToTagToContent("hparams")
    experiment = metadata.parse_experiment_plugin_data(content["."][metadata.EXPERIMENT_TAG])
    domain = [v.string_value for v in experiment.hparam_infos[0].domain_discrete.values]
    assert sorted(domain) == sorted([*list_models(), *POINTS])
