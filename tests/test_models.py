"""Tests of cnnzoo.models.registry: the registry's builders, parameterised over list_models().

Parameter counts are checked against the seed notebook's summaries (100 px, 5 classes);
every configuration also gets a forward and backward pass on small random input.
Pretrained bases are built with random weights: nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnzoo.core.errors import CnnzooError
from cnnzoo.models.build import build_model, count_trainable_params, get_base, prepare_stage
from cnnzoo.models.custom import ARCHITECTURES
from cnnzoo.models.flops import count_flops
from cnnzoo.models.registry import (
    BASE_LAYER,
    PARTIAL_LAYERS,
    get_spec,
    list_models,
    register_model,
)

# (total, trainable as built) at 100 px and 5 classes, from the notebook's summaries
EXPECTED_PARAMS = {
    "simple": (726_277, 726_277),
    "mid": (1_614_885, 1_614_885),
    "resnet": (11_705_333, 11_697_525),
    "inception": (14_633_877, 14_632_725),
    "resnet_aug": (11_705_333, 11_697_525),
}
_BASE_PARAMS = {
    "resnet50v2": (56_338_805, 32_774_005),
    "mobilenetv2": (22_743_989, 20_486_005),
    "xception": (39_299_485, 18_438_005),
}
for _base, (_total, _frozen) in _BASE_PARAMS.items():
    # finetune's stage 1 is transfer; partial's trainable count is checked structurally
    EXPECTED_PARAMS[f"{_base}_transfer"] = (_total, _frozen)
    EXPECTED_PARAMS[f"{_base}_finetune"] = (_total, _frozen)
    EXPECTED_PARAMS[f"{_base}_partial"] = (_total, None)

# Keras' own weight saving trips NumPy 2's copy= deprecation; nothing of ours
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

CUSTOM = [n for n in list_models() if not get_spec(n).pretrained]
PRETRAINED = [n for n in list_models() if get_spec(n).pretrained]


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    """Free each test's models; the pretrained ones hold tens of millions of weights."""
    yield
    import keras

    keras.backend.clear_session()


def _n_weights(variables) -> int:
    return int(sum(np.prod(v.shape) for v in variables))


def _is_batchnorm(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.BatchNormalization)


def _params(name):
    pretrained = get_spec(name).pretrained
    return pytest.param(name, marks=pytest.mark.slow if pretrained else ())


def test_registry_lists_fourteen_configurations():
    names = list_models()
    assert len(names) == 14 == len(set(names))
    assert set(EXPECTED_PARAMS) == set(names)
    # The study's order: the pipeline, the CLI and the report enumerate it.
    assert names[:5] == ["simple", "mid", "resnet", "inception", "resnet_aug"]
    assert names[5:8] == ["resnet50v2_transfer", "resnet50v2_finetune", "resnet50v2_partial"]
    assert names[-3:] == ["xception_transfer", "xception_finetune", "xception_partial"]


def test_registered_specs_carry_strategy_base_and_minimum_size():
    by_name = {n: get_spec(n) for n in list_models()}
    assert [(s.strategy, s.base, s.min_img_size) for s in map(by_name.get, ("simple", "mid"))] == [
        ("scratch", None, 8),
        ("scratch", None, 36),
    ]
    assert (by_name["resnet_aug"].strategy, by_name["inception"].min_img_size) == ("augment", 46)
    spec = by_name["mobilenetv2_finetune"]
    assert (spec.strategy, spec.base, spec.min_img_size, spec.pretrained) == (
        "finetune",
        "mobilenetv2",
        32,
        True,
    )
    assert by_name["xception_partial"].min_img_size == 71


def test_register_model_refuses_a_name_twice():
    with pytest.raises(ValueError, match="registered twice"):
        register_model("simple", strategy="scratch", min_img_size=8, description="again")
    assert list_models().count("simple") == 1


def test_flop_count_matches_known_architectures():
    """The analytic count gives the published forward cost of a standard network."""
    import keras

    forward, train = count_flops(keras.applications.MobileNetV2(weights=None))
    assert 0.55e9 < forward < 0.65e9  # ~300 M multiply-adds at 224 px
    assert 2.5 * forward < train < 3.0 * forward  # trained whole (no grads into the input)

    # A frozen base costs one forward pass. The head's first layer adds its weight
    # gradients; the output layer its weight gradients and the gradients it passes back.
    model = build_model("mobilenetv2_transfer", num_classes=5, img_size=100)
    forward, train = count_flops(model)
    fc, out = 2 * (4 * 4 * 1280) * 1000, 2 * 1000 * 5
    assert train == forward + fc + 2 * out


@pytest.mark.parametrize("name", [_params(n) for n in list_models()])
def test_parameter_counts_match_the_notebook(name):
    total, trainable = EXPECTED_PARAMS[name]
    model = build_model(name, num_classes=5, img_size=100)
    assert model.input_shape == (None, 100, 100, 3)
    assert model.output_shape == (None, 5)
    assert model.name == name
    assert model.count_params() == total
    # The registry's cost figure (the plan's order) is the built model's, at 100 px.
    assert get_spec(name).macs == pytest.approx(count_flops(model)[0] / 2e6, rel=1e-3)
    if trainable is not None:
        assert count_trainable_params(model) == trainable
    if get_spec(name).pretrained:
        # the base's own [-1, 1] scaling, not 1/255
        rescaling = model.get_layer("rescaling")
        assert rescaling.scale == pytest.approx(1 / 127.5)
        assert rescaling.offset == pytest.approx(-1.0)
    else:
        assert model.layers[1].name == "rescaling"
        assert model.layers[1].scale == pytest.approx(1 / 255)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in PRETRAINED if get_spec(n).strategy == "partial"])
def test_partial_trains_the_last_ten_base_layers_and_the_head(name):
    model = build_model(name, num_classes=5, img_size=100)
    base = get_base(model)
    head = _BASE_PARAMS[get_spec(name).base][1]
    last = base.layers[-PARTIAL_LAYERS:]
    # every layer counts (weightless ones too); BatchNorm stays frozen in inference mode
    assert [la.name for la in base.layers if la.trainable] == [
        la.name for la in last if not _is_batchnorm(la)
    ]
    assert all(not la.trainable for la in base.layers[:-PARTIAL_LAYERS])
    trainable_in_base = {id(v) for v in base.trainable_weights}
    expected_in_base = {id(v) for la in last if la.trainable for v in la.trainable_weights}
    assert trainable_in_base == expected_in_base and trainable_in_base
    assert count_trainable_params(model) == head + _n_weights(base.trainable_weights)
    assert head < count_trainable_params(model) < model.count_params()


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in PRETRAINED if get_spec(n).strategy == "finetune"])
def test_finetune_stage_two_trains_everything_but_batchnorm(name):
    model = build_model(name, num_classes=5, img_size=100)
    total, frozen_trainable = EXPECTED_PARAMS[name]
    base = get_base(model)
    batchnorm = [la for la in base.layers if _is_batchnorm(la)]
    assert batchnorm

    prepare_stage(model, name, 1)
    assert count_trainable_params(model) == frozen_trainable

    prepare_stage(model, name, 2)
    bn_weights = {id(v) for la in batchnorm for v in la.weights}
    trainable = {id(v) for v in model.trainable_weights}
    assert all(id(v) in trainable for v in model.weights if id(v) not in bn_weights)
    assert not trainable & bn_weights
    bn_total = _n_weights([v for la in batchnorm for v in la.weights])
    assert count_trainable_params(model) == total - bn_total

    prepare_stage(model, name, 1)  # back to the frozen base
    assert count_trainable_params(model) == frozen_trainable


def _small_size(name) -> int:
    return max(get_spec(name).min_img_size, 32)


@pytest.mark.parametrize("name", list_models())
def test_forward_and_backward_pass_reaches_every_trainable_weight(name):
    import tensorflow as tf

    size = _small_size(name)
    model = build_model(name, num_classes=2, img_size=size)
    if get_spec(name).strategy == "finetune":
        prepare_stage(model, name, 2)  # the stage where the base's weights train too
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(2, size, size, 3)).astype("float32")
    y = np.array([0, 1])
    with tf.GradientTape() as tape:
        probs = model(x, training=True)
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, probs))
    assert probs.shape == (2, 2)
    assert np.isfinite(float(loss))
    weights = model.trainable_weights
    assert weights
    grads = tape.gradient(loss, weights)
    missing = [w.path for w, g in zip(weights, grads, strict=True) if g is None]
    assert not missing, f"no gradient for {missing}"
    bad = [w.path for w, g in zip(weights, grads, strict=True) if not np.isfinite(g).all()]
    assert not bad, f"non-finite gradient for {bad}"


@pytest.mark.parametrize("name", ["mobilenetv2_partial", "mobilenetv2_finetune"])
def test_base_batchnorm_statistics_stay_frozen_in_training(name):
    model = build_model(name, num_classes=2, img_size=32)
    prepare_stage(model, name, 1)
    if get_spec(name).strategy == "finetune":
        prepare_stage(model, name, 2)
    base = get_base(model)
    before = [v.numpy() for v in base.non_trainable_weights]
    x = np.random.default_rng(1).uniform(0, 255, size=(4, 32, 32, 3)).astype("float32")
    model(x, training=True)
    after = [v.numpy() for v in base.non_trainable_weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_saved_model_keeps_its_frozen_layers(tmp_path):
    import keras

    name = "mobilenetv2_partial"
    model = build_model(name, num_classes=2, img_size=32)
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    assert count_trainable_params(reloaded) == count_trainable_params(model)
    # [1:]: the InputLayer's flag is not saved and means nothing
    flags = [la.trainable for la in get_base(model).layers[1:]]
    assert [la.trainable for la in get_base(reloaded).layers[1:]] == flags
    x = np.random.default_rng(3).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(reloaded(x), model(x), rtol=1e-5, atol=1e-6)


def test_resnet_aug_augments_only_in_training():
    model = build_model("resnet_aug", num_classes=2, img_size=32)
    names = [la.name for la in model.layers[:6]]
    assert names == ["image", "rescaling", "aug_flip", "aug_rotation", "aug_zoom", "aug_noise"]
    x = np.random.default_rng(2).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model(x, training=False), model(x, training=False))


@pytest.mark.parametrize("name", [n for n in CUSTOM if get_spec(n).min_img_size > 1])
def test_custom_min_img_size_is_the_smallest_that_builds(name):
    # The registered builder itself (build_model refuses sizes below the minimum first).
    spec = get_spec(name)
    ARCHITECTURES[spec.architecture](2, spec.min_img_size)
    with pytest.raises(ValueError):
        ARCHITECTURES[spec.architecture](2, spec.min_img_size - 1)


def test_prepare_stage_is_a_no_op_for_one_stage_configurations():
    model = build_model("simple", num_classes=2, img_size=32)
    before = count_trainable_params(model)
    prepare_stage(model, "simple", 1)
    assert count_trainable_params(model) == before
    with pytest.raises(CnnzooError, match="one training stage"):
        prepare_stage(model, "simple", 2)
    with pytest.raises(CnnzooError, match="stage must be 1 or 2"):
        prepare_stage(model, "simple", 3)


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(CnnzooError, match="unknown model configuration 'vgg16'") as e:
        build_model("vgg16", num_classes=5, img_size=100)
    assert "xception_partial" in str(e.value) and "simple" in str(e.value)


@pytest.mark.parametrize("name", ["xception_transfer", "inception", "mobilenetv2_partial"])
def test_img_size_below_the_minimum_is_rejected(name):
    smallest = get_spec(name).min_img_size
    with pytest.raises(CnnzooError, match=rf"{name}: img_size {smallest - 1} .* {smallest} px"):
        build_model(name, num_classes=5, img_size=smallest - 1)


def test_too_few_classes_is_rejected():
    with pytest.raises(CnnzooError, match="num_classes"):
        build_model("simple", num_classes=1, img_size=32)


# --- weights ----------------------------------------------------------------------------

NAME, SIZE = "mobilenetv2_transfer", 32


@pytest.fixture(scope="module")
def saved_base(tmp_path_factory):
    """A directory holding ``mobilenetv2.weights.h5`` (random weights); and the arrays."""
    folder = tmp_path_factory.mktemp("weights")
    base = get_base(build_model(NAME, num_classes=2, img_size=SIZE))
    base.save_weights(str(folder / "mobilenetv2.weights.h5"))
    return folder, [v.numpy() for v in base.weights]


def _assert_base_weights(model, expected):
    got = [v.numpy() for v in get_base(model).weights]
    assert len(got) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_weights_from_a_file(saved_base):
    folder, expected = saved_base
    path = folder / "mobilenetv2.weights.h5"
    model = build_model(NAME, num_classes=2, img_size=SIZE, weights=str(path))
    _assert_base_weights(model, expected)
    assert model.get_layer(BASE_LAYER) is get_base(model)


def test_weights_from_a_directory(saved_base):
    folder, expected = saved_base
    model = build_model(NAME, num_classes=2, img_size=SIZE, weights=folder)
    _assert_base_weights(model, expected)


def test_weights_from_a_directory_with_the_keras_notop_file(tmp_path):
    """Keras' own ImageNet notop files are legacy HDF5; written here with Keras' writer."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    base = get_base(build_model(NAME, num_classes=2, img_size=SIZE))
    notop = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    with h5py.File(tmp_path / notop, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, base)
    model = build_model(NAME, num_classes=2, img_size=SIZE, weights=str(tmp_path))
    _assert_base_weights(model, [v.numpy() for v in base.weights])


def test_weights_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(CnnzooError, match="nope.weights.h5: weights file not found"):
        build_model(NAME, num_classes=2, img_size=SIZE, weights=str(missing))


def test_weights_directory_without_a_file_for_the_base(tmp_path):
    with pytest.raises(CnnzooError, match="no weights file for mobilenetv2"):
        build_model(NAME, num_classes=2, img_size=SIZE, weights=str(tmp_path))


def test_weights_unreadable_file_names_the_path(tmp_path):
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(CnnzooError, match="bad.weights.h5"):
        build_model(NAME, num_classes=2, img_size=SIZE, weights=str(bad))


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_weights_for_another_base_are_rejected(tmp_path):
    path = tmp_path / "x.weights.h5"
    get_base(build_model("xception_transfer", 2, 71)).save_weights(str(path))
    with pytest.raises(CnnzooError, match="x.weights.h5: cannot load MobileNetV2 weights") as e:
        build_model(NAME, num_classes=2, img_size=SIZE, weights=str(path))
    assert "\n" not in str(e.value)


def test_weights_are_ignored_by_custom_models(tmp_path):
    model = build_model("simple", 2, 32, weights=str(tmp_path / "absent.weights.h5"))
    assert model.count_params() > 0


def test_weights_from_gcs_object_and_folder(saved_base, gcs_emulator):
    folder, expected = saved_base
    bucket = gcs_emulator.new_bucket()
    gcs_emulator.upload_folder(folder, bucket, "w")  # gs://bucket/w/mobilenetv2.weights.h5
    for uri in (f"gs://{bucket}/w/mobilenetv2.weights.h5", f"gs://{bucket}/w/", f"gs://{bucket}/w"):
        model = build_model(NAME, num_classes=2, img_size=SIZE, weights=uri)
        _assert_base_weights(model, expected)
    missing = f"gs://{bucket}/w/other.weights.h5"
    with pytest.raises(CnnzooError, match=f"{missing}: weights file not found"):
        build_model(NAME, num_classes=2, img_size=SIZE, weights=missing)
