"""Training profiles: the shipped profiles, overrides, and rejection of bad input."""

import pytest
import yaml

from cnnzoo.cli.main import main
from cnnzoo.config.profile import list_profiles, load_profile, parse_override, profile_from_dict
from cnnzoo.core.errors import CnnzooError
from cnnzoo.models.registry import get_spec, list_models


def test_shipped_profiles_exist_and_validate():
    assert {"demo", "full"} <= set(list_profiles())
    for name in ("demo", "full"):
        p = load_profile(name)
        assert p.name == name
        assert set(p.models) == set(list_models())


def test_full_profile_reproduces_the_notebook_schedule():
    p = load_profile("full")
    assert (p.img_size, p.batch_size, p.seed, p.val_fraction) == (100, 258, 42, 0.15)
    assert p.max_epochs is None
    assert [(s.learning_rate, s.epochs) for s in p.stages_for("simple")] == [(1e-3, 20)]
    assert [(s.learning_rate, s.epochs) for s in p.stages_for("mid")] == [(1e-3, 30)]
    assert p.stages_for("inception")[0].learning_rate == 1e-4
    for base, lr2, pat in (
        ("resnet50v2", 5e-5, (3, 10)),
        ("mobilenetv2", 1e-5, (2, 2)),
        ("xception", 1e-5, (2, 2)),
    ):
        s1, s2 = p.stages_for(f"{base}_finetune")
        assert (s1.learning_rate, s1.lr_patience, s1.stop_patience) == (1e-3, 3, 5)
        assert (s2.learning_rate, (s2.lr_patience, s2.stop_patience)) == (lr2, pat)
        for strategy in ("transfer", "partial"):
            (s,) = p.stages_for(f"{base}_{strategy}")
            assert (s.learning_rate, s.epochs, s.lr_patience, s.stop_patience) == (1e-4, 50, 5, 10)


def test_only_finetune_configurations_have_two_stages():
    p = load_profile("full")
    for name in list_models():
        expected = 2 if get_spec(name).strategy == "finetune" else 1
        assert len(p.stages_for(name)) == expected, name


def test_demo_extends_full_and_fits_every_base():
    demo, full = load_profile("demo"), load_profile("full")
    assert demo.img_size >= max(get_spec(m).min_img_size for m in list_models())
    assert demo.batch_size < full.batch_size
    assert demo.weights is None
    for m in list_models():
        d, f = demo.stages_for(m), full.stages_for(m)
        assert len(d) == len(f), m
        for ds, fs in zip(d, f, strict=True):
            # Patiences are inherited from full; every stage is shorter than full's.
            assert (ds.lr_patience, ds.stop_patience) == (fs.lr_patience, fs.stop_patience), m
            assert ds.epochs < fs.epochs, m
    # Cheap custom CNNs get more epochs than the costly pretrained bases.
    assert demo.stages_for("mid")[0].epochs > demo.stages_for("xception_transfer")[0].epochs
    # Random-init bases have nothing pretrained to protect: not the notebook's tiny rates.
    assert demo.weights is None
    for m in list_models():
        if get_spec(m).strategy in ("transfer", "partial"):
            assert demo.stages_for(m)[0].learning_rate > full.stages_for(m)[0].learning_rate, m


def test_overrides_reach_nested_fields_and_cap_epochs():
    p = load_profile(
        "full",
        overrides=[
            "max_epochs=3",
            "batch_size=32",
            "models.simple.learning_rate=0.01",
            "models.xception_finetune.finetune.learning_rate=2e-5",
        ],
    )
    assert p.batch_size == 32
    assert p.stages_for("simple")[0].learning_rate == 0.01
    assert p.stages_for("xception_finetune")[1].learning_rate == 2e-5
    assert all(s.epochs == 3 for s in p.stages_for("resnet50v2_finetune"))


def test_override_file_is_merged(tmp_path):
    f = tmp_path / "over.yaml"
    f.write_text("img_size: 128\nmodels:\n  mid: {epochs: 7}\n")
    p = load_profile("full", override_files=[str(f)], overrides=["img_size=96"])
    assert p.img_size == 96  # --set wins over the file
    assert p.stages_for("mid")[0].epochs == 7
    assert p.stages_for("mid")[0].learning_rate == 1e-3  # untouched fields inherited


def test_resolved_profile_round_trips():
    p = load_profile("demo", overrides=["seed=7"])
    again = profile_from_dict(yaml.safe_load(p.to_yaml()))
    assert again == p


@pytest.mark.parametrize(
    "override, message",
    [
        ("nope=1", "unknown key 'nope'"),
        ("models.simple.nope=1", "unknown key 'models.simple.nope'"),
        ("models.resnett.epochs=1", "models.resnett: unknown model configuration"),
        ("batch_size=0", "batch_size must be >= 1, got 0"),
        ("cache_budget_mb=-1", "cache_budget_mb must be >= 0, got -1"),
        ("batch_size=ten", "--set batch_size=ten: batch_size must be an integer, got 'ten'"),
        ("batch_size=2.5", "batch_size must be an integer, got 2.5"),
        ("max_epochs=-1", "max_epochs must be >= 1"),
        ("models.mid.epochs=0", "models.mid.epochs must be >= 1, got 0"),
        ("img_size=16", "img_size must be >= 32"),
        ("val_fraction=1.5", "val_fraction must be in (0, 1)"),
        ("precision=fp8", "precision must be one of"),
        ("jit_compile=maybe", "jit_compile must be true or false, got 'maybe'"),
        ("models.simple.finetune.epochs=3", "models.simple.finetune"),
        ("models.simple.learning_rate=-1", "models.simple.learning_rate must be > 0"),
        ("noequals", "expected key=value"),
        ("bn_momentum=1", "bn_momentum must be in [0, 1) or null, got 1"),
        ("bn_momentum=fast", "bn_momentum must be a number or null, got 'fast'"),
        ("bn_momentum=true", "bn_momentum must be a number or null, got True"),
        ("random_weights_steps=0", "random_weights_steps must be >= 1 or null, got 0"),
        ("random_weights_steps=2.5", "random_weights_steps must be an integer or null, got 2.5"),
        ("checkpoint_monitor=loss", "checkpoint_monitor must be one of val_loss, val_accuracy"),
    ],
)
def test_bad_values_are_rejected_by_name(override, message):
    with pytest.raises(CnnzooError) as err:
        load_profile("demo", overrides=[override])
    assert message in str(err.value)


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(CnnzooError, match=r"unknown profile 'fast'.*demo.*full"):
        load_profile("fast")


def test_cli_reports_bad_override_in_one_line(capsys):
    assert main(["profile", "--set", "epochz=3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "error: --set epochz=3: unknown key 'epochz' (valid: name, "
    )


def test_cli_prints_resolved_profile(capsys):
    assert main(["profile", "--profile", "full", "--set", "seed=3"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["seed"] == 3 and data["name"] == "full"


def test_parse_override_types():
    assert parse_override("a.b=1e-3") == {"a": {"b": "1e-3"}}  # floats coerced on build
    assert parse_override("x=true") == {"x": True}
    assert parse_override("w=null") == {"w": None}


def test_random_weights_steps_caps_only_backbones_without_weights(tmp_path):
    demo = load_profile("demo")
    assert demo.random_weights_steps is not None
    for m in list_models():
        expected = demo.random_weights_steps if get_spec(m).pretrained else None
        assert demo.steps_cap(m) == expected, m
    weights = tmp_path / "weights"
    weights.mkdir()
    # A user who supplies weights gets whole epochs for the backbones too.
    with_weights = load_profile("demo", [f"weights={weights}"])
    assert all(with_weights.steps_cap(m) is None for m in list_models())
    assert load_profile("full").steps_cap("xception_transfer") is None


def test_full_keeps_keras_batchnorm_momentum_and_demo_sets_its_own():
    assert load_profile("full").bn_momentum is None
    assert 0 < load_profile("demo").bn_momentum < 0.99


def test_an_error_names_the_file_that_set_the_bad_value(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("extends: full\nbatch_size: 16\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {base}\nmodels:\n  mid: {{epochs: ten}}\n")
    over = tmp_path / "over.yaml"
    over.write_text("eval_batch_size: 0\n")
    with pytest.raises(CnnzooError) as err:
        load_profile(str(child))
    assert str(err.value) == f"{child}: models.mid.epochs must be an integer, got 'ten'"
    with pytest.raises(CnnzooError) as err:
        load_profile(str(base), override_files=[str(over)], overrides=["seed=1"])
    assert str(err.value) == f"{over}: eval_batch_size must be >= 1, got 0"
    with pytest.raises(CnnzooError) as err:
        load_profile(str(base), overrides=["batch_size=0"])
    assert str(err.value) == "--set batch_size=0: batch_size must be >= 1, got 0"


def test_profile_from_dict_names_no_file_unless_told():
    data = load_profile("demo").to_dict()
    data["lr_factor"] = 1.5
    with pytest.raises(CnnzooError) as err:
        profile_from_dict(data)
    assert str(err.value) == "lr_factor must be in (0, 1), got 1.5"
    with pytest.raises(CnnzooError, match=r"^task input: lr_factor must be in \(0, 1\)"):
        profile_from_dict(data, source="task input")
