"""Tests of cnnzoo.data.loader: reading TFRecord splits written to the documented format.

The split here is written by hand, following docs/formats.md, so the reader is
checked against the contract rather than against the writer. Each image carries its
record index in its first pixel, which lets the tests track every example.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnzoo.core.errors import CnnzooError
from cnnzoo.data.loader import load_split, read_split_info

SIZE = 8
CLASSES = ["a", "b", "c"]


def _write_split(dest, counts=None, shards=2):
    """Write a tiny split per the contract; image i has pixel [0,0,0] == i and label i % 3."""
    import tensorflow as tf

    counts = counts or {"train": 23, "val": 7, "test": 5}
    dest.mkdir(parents=True, exist_ok=True)
    splits = {}
    rng = np.random.default_rng(0)
    for part, n in counts.items():
        names = [f"{part}-{k:05d}-of-{shards:05d}.tfrecord" for k in range(shards)]
        writers = [tf.io.TFRecordWriter(str(dest / nm)) for nm in names]
        per_shard = -(-n // shards)
        labels = []
        for i in range(n):
            img = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
            img[0, 0, 0] = i
            img[SIZE - 1, SIZE - 1, 2] = 255
            label = i % len(CLASSES)
            labels.append(label)
            ex = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "image": tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[img.tobytes()])
                        ),
                        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                    }
                )
            )
            writers[i // per_shard].write(ex.SerializeToString())
        for w in writers:
            w.close()
        splits[part] = {
            "count": n,
            "per_class": {c: labels.count(k) for k, c in enumerate(CLASSES)},
            "shards": names,
            "files": [f"images/train/{CLASSES[i % 3]}/{i}.png" for i in range(n)],
        }
    info = {
        "classes": CLASSES,
        "img_size": SIZE,
        "seed": 42,
        "val_fraction": 0.15,
        "test_fraction": 0.1,
        "test_source": None,
        "ingest_manifest_sha256": "0" * 64,
        "splits": splits,
    }
    (dest / "split.json").write_text(json.dumps(info))
    return dest


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    return _write_split(tmp_path_factory.mktemp("split"))


def _ids(ds):
    ids, labels = [], []
    for x, y in ds:
        ids.extend(int(v) for v in x.numpy()[:, 0, 0, 0])
        labels.extend(int(v) for v in y.numpy())
    return ids, labels


def test_shapes_dtypes_and_range(split_dir):
    ds = load_split(split_dir, "train", batch_size=4)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [4] * 5 + [3]
    x, y = batches[0]
    assert x.dtype.name == "float32" and tuple(x.shape[1:]) == (SIZE, SIZE, 3)
    assert y.dtype.name == "int32" and tuple(y.shape) == (4,)
    allx = np.concatenate([b[0].numpy() for b in batches])
    assert allx.min() >= 0.0 and allx.max() == 255.0
    # raw bytes come back exactly, not rescaled
    assert np.all(allx[:, SIZE - 1, SIZE - 1, 2] == 255.0)


def test_eval_order_is_record_order_and_stable(split_dir):
    ids1, labels1 = _ids(load_split(split_dir, "val", batch_size=3))
    ds = load_split(split_dir, "val", batch_size=3)
    assert _ids(ds) == _ids(ds) == (ids1, labels1)
    assert ids1 == list(range(7))
    assert labels1 == [i % 3 for i in range(7)]


def test_training_shuffles_each_epoch_and_sees_every_record_once(split_dir):
    ds = load_split(split_dir, "train", batch_size=5, training=True, seed=1)
    epoch1, lab1 = _ids(ds)
    epoch2, lab2 = _ids(ds)
    assert sorted(epoch1) == sorted(epoch2) == list(range(23))
    assert epoch1 != epoch2
    assert epoch1 != list(range(23))
    # label stays attached to its image through the shuffle
    assert all(label == i % 3 for i, label in zip(epoch1, lab1, strict=True))
    # same seed, fresh pipeline: same sequence of epochs
    again = load_split(split_dir, "train", batch_size=5, training=True, seed=1)
    assert _ids(again)[0] == epoch1


def test_small_shuffle_buffer_and_no_cache(split_dir):
    ds = load_split(split_dir, "train", batch_size=23, training=True, shuffle_buffer=2, cache=False)
    ids, _ = _ids(ds)
    assert sorted(ids) == list(range(23))


def test_a_part_over_the_cache_budget_is_streamed_with_the_same_epochs(split_dir, capsys):
    """Over the budget the part is not cached; the seeded epochs are the same ones."""
    cached = load_split(split_dir, "train", batch_size=5, training=True, seed=4)
    assert "streaming" not in capsys.readouterr().err
    streamed = load_split(
        split_dir, "train", batch_size=5, training=True, seed=4, cache_budget_mb=0.001
    )
    err = capsys.readouterr().err
    assert "over the cache budget (0.001 MiB); streaming it from its shards" in err
    assert [_ids(streamed) for _ in range(2)] == [_ids(cached) for _ in range(2)]
    val = load_split(split_dir, "val", batch_size=3, cache_budget_mb=0)
    assert _ids(val)[0] == list(range(7))


def test_read_split_info(split_dir):
    info = read_split_info(split_dir)
    assert info["img_size"] == SIZE and info["classes"] == CLASSES


def test_errors(tmp_path, split_dir):
    with pytest.raises(CnnzooError, match="split.json: file not found"):
        read_split_info(tmp_path)
    with pytest.raises(CnnzooError, match="unknown split part 'dev'"):
        load_split(split_dir, "dev", batch_size=2)
    with pytest.raises(CnnzooError, match="batch_size"):
        load_split(split_dir, "test", batch_size=0)
    broken = _write_split(tmp_path / "broken", counts={"train": 2, "val": 2, "test": 2}, shards=1)
    (broken / "test-00000-of-00001.tfrecord").unlink()
    with pytest.raises(CnnzooError, match="test-00000-of-00001.tfrecord: shard listed"):
        load_split(broken, "test", batch_size=2)


def test_plan_cache_keeps_the_whole_process_under_the_budget(split_dir):
    """Worked by hand: 8 px images are 192 B; train 23, val 7 images; shuffle buffer 100
    and 8 batches of 4 x 5 images in flight: 260 images = 49,920 B besides the cache."""
    from cnnzoo.data.loader import TRAINING_MARGIN_MB, plan_cache

    image_mb = 192 / 1024**2
    fixed = 260 * image_mb + TRAINING_MARGIN_MB

    def plan(budget_mb):
        return plan_cache(split_dir, ("train", "val"), budget_mb, 5, 100, resident=500.0)

    both = 500 + fixed + 30 * image_mb
    assert plan(both) == {"train": True, "val": True}
    # Short of both by one image: train (first) is cached, val (7 images) no longer fits.
    assert plan(both - image_mb) == {"train": True, "val": False}
    # Room for 22 images: not train (23), but val (7).
    assert plan(500 + fixed + 22 * image_mb) == {"train": False, "val": True}
    assert plan(500 + fixed - image_mb) == {"train": False, "val": False}
    assert plan(0) == {"train": False, "val": False}


def test_plan_cache_reads_the_resident_memory_of_this_process(split_dir):
    from cnnzoo.data.loader import plan_cache, resident_mb

    now = resident_mb()
    assert 10 < now < 100_000  # a Python process with numpy loaded, in MiB
    # A budget of what the process holds now leaves nothing to cache.
    assert plan_cache(split_dir, ("train",), now, 5, 100) == {"train": False}
    assert plan_cache(split_dir, ("train",), now + 1e6, 5, 100) == {"train": True}
