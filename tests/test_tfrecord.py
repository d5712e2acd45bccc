"""cnnzoo.storage.tfrecord against TensorFlow: the same bytes, read back by TensorFlow and
TensorBoard.

Split and the report step write their files without importing TensorFlow; these tests
make TensorFlow's own writers produce the same records and compare byte for byte, and
check in a fresh process that neither step imports ``tensorflow`` or ``keras``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_image_folder

from cnnzoo.storage.tfrecord import RecordWriter, example_bytes, frame, write_event_file
from cnnzoo.tensorboard.hparams import write_hparams_config

LABELS = (0, 1, 4, 127, 128, 300, 2**40, 2**63 - 1, -1)
IMAGE_SIZES = (0, 1, 127, 128, 30000)


def _tf_example(image: bytes, label: int) -> bytes:
    import tensorflow as tf

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
        )
    ).SerializeToString(deterministic=True)


def _image(size: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 256 for i in range(size))


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("size", IMAGE_SIZES)
def test_example_bytes_equal_tensorflows(size, label):
    image = _image(size, seed=label % 251)
    assert example_bytes(image, label) == _tf_example(image, label)


def _tf_shard(path: Path, records: list[bytes]) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for r in records:
            writer.write(r)


def _read_back(path: Path) -> list[tuple[bytes, int]]:
    import tensorflow as tf

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }
    out = []
    for rec in tf.data.TFRecordDataset([str(path)]):
        ex = tf.io.parse_single_example(rec, spec)
        out.append((ex["image"].numpy(), int(ex["label"])))
    return out


def test_a_shard_equals_tensorflows_and_reads_back(tmp_path):
    items = [(_image(s, seed=label % 251), label) for s in IMAGE_SIZES for label in LABELS]
    with RecordWriter(tmp_path / "ours.tfrecord") as writer:
        for image, label in items:
            writer.write(example_bytes(image, label))
    _tf_shard(tmp_path / "tf.tfrecord", [_tf_example(i, label) for i, label in items])
    ours = (tmp_path / "ours.tfrecord").read_bytes()
    assert ours == (tmp_path / "tf.tfrecord").read_bytes()
    assert ours.startswith(frame(example_bytes(*items[0])))
    assert _read_back(tmp_path / "ours.tfrecord") == items


def test_split_shards_are_what_tensorflow_writes(tmp_path):
    """Every shard split writes, rewritten by TensorFlow from its parsed records: same bytes."""
    src = write_image_folder(tmp_path / "src", n_train=9, n_test=2)
    from cnnzoo.data.ingest import ingest
    from cnnzoo.data.split import split_dataset

    ingest(str(src), tmp_path / "ingested")
    info = split_dataset(tmp_path / "ingested", tmp_path / "split", img_size=8, seed=3)
    shards = [s for part in info["splits"].values() for s in part["shards"]]
    assert len(shards) == 3
    for shard in shards:
        records = _read_back(tmp_path / "split" / shard)
        assert records and all(len(image) == 8 * 8 * 3 for image, _ in records)
        _tf_shard(tmp_path / "tf.tfrecord", [_tf_example(i, label) for i, label in records])
        assert (tmp_path / "split" / shard).read_bytes() == (tmp_path / "tf.tfrecord").read_bytes()


def _tf_hparams_config(logdir: Path) -> None:
    """write_hparams_config as it was before cnnzoo.storage.tfrecord: TensorFlow's summary
    writer."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    from cnnzoo.config.profile import PRECISIONS
    from cnnzoo.models.registry import BASES, STRATEGIES, list_models

    params = [
        hp.HParam("model", hp.Discrete(list_models())),
        hp.HParam("strategy", hp.Discrete(list(STRATEGIES))),
        hp.HParam("base", hp.Discrete(["none", *BASES])),
        hp.HParam("learning_rate", hp.RealInterval(1e-7, 1.0)),
        hp.HParam("img_size", hp.IntInterval(32, 4096)),
        hp.HParam("batch_size", hp.IntInterval(1, 65536)),
        hp.HParam("precision", hp.Discrete(list(PRECISIONS))),
    ]
    metrics = [
        hp.Metric("best_val_accuracy", display_name="best val accuracy"),
        hp.Metric("best_val_loss", display_name="best val loss"),
        hp.Metric("epochs_run", display_name="epochs run"),
        hp.Metric("epoch_accuracy", group="validation", display_name="val accuracy (last)"),
        hp.Metric("epoch_loss", group="validation", display_name="val loss (last)"),
        hp.Metric("epoch_accuracy", group="train", display_name="train accuracy (last)"),
    ]
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        hp.hparams_config(hparams=params, metrics=metrics)
    writer.close()


def _events(logdir: Path) -> tuple[Path, list]:
    import tensorflow as tf

    (path,) = logdir.glob("events.out.tfevents.*")
    return path, list(tf.compat.v1.train.summary_iterator(str(path)))


def _experiment(logdir: Path):
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import metadata

    acc = event_accumulator.EventAccumulator(str(logdir))
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    assert list(content) == [metadata.EXPERIMENT_TAG]  # "_hparams_/experiment"
    return metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])


def test_hparams_event_file_matches_tensorflows(tmp_path):
    write_hparams_config(tmp_path / "ours")
    _tf_hparams_config(tmp_path / "tf")

    ours = _experiment(tmp_path / "ours")
    assert [h.name for h in ours.hparam_infos][:2] == ["model", "strategy"]
    assert ours == _experiment(tmp_path / "tf")  # names, domains, metrics, display names

    path, events = _events(tmp_path / "ours")
    tf_path, tf_events = _events(tmp_path / "tf")
    name = r"events\.out\.tfevents\.\d{10}\.[^.]+(\.[^.]+)*\.\d+\.\d+\.v2"
    assert re.fullmatch(name, path.name) and re.fullmatch(name, tf_path.name), (path, tf_path)
    assert [e.file_version for e in events] == [e.file_version for e in tf_events]
    assert events[0].file_version == "brain.Event:2"
    assert [e.step for e in events] == [e.step for e in tf_events] == [0, 0]
    (value,) = events[1].summary.value
    (tf_value,) = tf_events[1].summary.value
    assert value.tag == tf_value.tag == "_hparams_/experiment"
    assert value.metadata.plugin_data.plugin_name == "hparams"
    assert events[1].summary == tf_events[1].summary  # the whole Summary proto


def test_event_files_get_distinct_names(tmp_path):
    first = write_event_file(tmp_path, [])
    second = write_event_file(tmp_path, [])
    assert first != second
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])


_NO_TF = """
import json, sys
from cnnzoo.data.split import split_dataset
from cnnzoo.tensorboard.hparams import write_hparams_config
ingested, out = sys.argv[1], sys.argv[2]
split_dataset(ingested, out + "/split", img_size=8, seed=1)
write_hparams_config(out + "/tensorboard")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))))
"""


def test_split_and_the_hparams_config_import_no_tensorflow(tmp_path):
    from cnnzoo.data.ingest import ingest

    src = write_image_folder(tmp_path / "src", n_train=6, n_test=2)
    ingest(str(src), tmp_path / "ingested")
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TF, str(tmp_path / "ingested"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    assert (tmp_path / "split" / "split.json").is_file()
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 1
