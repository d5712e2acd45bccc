"""Split: seeded stratified assignment, TFRecord contents, determinism, errors."""

import json
import multiprocessing
import re
import shutil

import numpy as np
import pytest
from helpers import sha256, tree_hashes, write_image_folder

from cnnzoo.cli.main import main
from cnnzoo.core.errors import CnnzooError
from cnnzoo.data import split as split_mod
from cnnzoo.data.ingest import ingest
from cnnzoo.data.split import SPLITS, assign_splits, load_image, split_dataset

SIZE = 12


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """3 classes x 20 train (+ 3 val) images, ingested."""
    base = tmp_path_factory.mktemp("ing")
    src = write_image_folder(base / "src", classes=("ant", "bee", "cow"), n_train=20, n_test=3)
    ingest(str(src), base / "ingested")
    return base / "ingested"


@pytest.fixture(scope="module")
def ingested_no_test(tmp_path_factory):
    """2 classes x 21 train images, no test folder, ingested."""
    base = tmp_path_factory.mktemp("ing_nt")
    src = write_image_folder(base / "src", n_train=21, test_name=None)
    ingest(str(src), base / "ingested")
    return base / "ingested"


def _read_records(split_dir, info, name):
    import tensorflow as tf

    size = info["img_size"]
    files = [str(split_dir / s) for s in info["splits"][name]["shards"]]
    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }
    out = []
    for rec in tf.data.TFRecordDataset(files):
        ex = tf.io.parse_single_example(rec, spec)
        img = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), (size, size, 3)).numpy()
        out.append((img, int(ex["label"])))
    return out


def test_split_contents(ingested, tmp_path):
    info = split_dataset(ingested, tmp_path / "s", img_size=SIZE, seed=7)
    manifest = json.loads((ingested / "manifest.json").read_text())
    labels = {f["path"]: f["label"] for f in manifest["files"]}
    on_disk = json.loads((tmp_path / "s" / "split.json").read_text())
    assert on_disk == info
    assert info["classes"] == ["ant", "bee", "cow"]
    assert info["test_source"] == "val"
    assert info["ingest_manifest_sha256"] == sha256(ingested / "manifest.json")
    # Stratified: 15% of 20 = 3 per class in val; test = the val/ folder.
    assert info["splits"]["val"]["per_class"] == {"ant": 3, "bee": 3, "cow": 3}
    assert info["splits"]["train"]["per_class"] == {"ant": 17, "bee": 17, "cow": 17}
    assert info["splits"]["test"]["per_class"] == {"ant": 3, "bee": 3, "cow": 3}
    all_files = [p for s in info["splits"].values() for p in s["files"]]
    assert len(all_files) == len(set(all_files)) == len(manifest["files"])  # no file twice
    assert {p for p in info["splits"]["test"]["files"]} == {
        f["path"] for f in manifest["files"] if f["split"] == "test"
    }
    # Train records are mixed across classes, not grouped.
    train_labels = [labels[p] for p in info["splits"]["train"]["files"]]
    assert train_labels != sorted(train_labels)
    for name in ("train", "val", "test"):
        records = _read_records(tmp_path / "s", info, name)
        assert len(records) == info["splits"][name]["count"]
        for (img, label), path in zip(records, info["splits"][name]["files"], strict=True):
            assert img.shape == (SIZE, SIZE, 3)
            assert info["classes"][label] == labels[path]
        first = np.frombuffer(
            load_image(ingested / info["splits"][name]["files"][0], SIZE), np.uint8
        )
        assert np.array_equal(records[0][0], first.reshape(SIZE, SIZE, 3))


def test_same_seed_same_bytes_and_pool_matches(ingested, tmp_path):
    split_dataset(ingested, tmp_path / "a", img_size=SIZE, seed=1, workers=1)
    split_dataset(ingested, tmp_path / "b", img_size=SIZE, seed=1, workers=2)
    split_dataset(ingested, tmp_path / "c", img_size=SIZE, seed=2, workers=1)
    a, b, c = (tree_hashes(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys() and a != c
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]


def test_holdout_when_no_test_folder(ingested_no_test, tmp_path):
    info = split_dataset(ingested_no_test, tmp_path / "s", img_size=SIZE, seed=0)
    assert info["test_source"] is None
    # Per class of 21: test round(2.1) = 2, val round(0.15 * 19) = 3, train 16.
    assert info["splits"]["test"]["per_class"] == {"ant": 2, "bee": 2}
    assert info["splits"]["val"]["per_class"] == {"ant": 3, "bee": 3}
    assert info["splits"]["train"]["per_class"] == {"ant": 16, "bee": 16}
    all_files = [p for s in info["splits"].values() for p in s["files"]]
    assert len(set(all_files)) == len(all_files) == 42
    assert all(p.startswith("images/train/") for p in all_files)


def test_shard_size_limits():
    assert split_mod.shard_size(100) == 1000  # 30 kB images: the image cap
    assert split_mod.shard_size(4000) == 2  # 48 MB images: the ~100 MB cap


def test_shards(ingested, tmp_path, monkeypatch):
    monkeypatch.setattr(split_mod, "MAX_SHARD_IMAGES", 20)
    info = split_dataset(ingested, tmp_path / "s", img_size=SIZE)
    assert info["splits"]["train"]["shards"] == [
        "train-00000-of-00003.tfrecord",
        "train-00001-of-00003.tfrecord",
        "train-00002-of-00003.tfrecord",
    ]
    assert len(_read_records(tmp_path / "s", info, "train")) == 51
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(
        [s for v in info["splits"].values() for s in v["shards"]] + ["split.json", ".cnnzoo.json"]
    )


@pytest.mark.parametrize("n, seed", [(7, 0), (20, 1), (33, 2), (101, 3)])
def test_assign_splits_stratified(n, seed):
    files = {c: [f"{c}/{i}.jpg" for i in range(n)] for c in ("x", "y")}
    out = assign_splits(files, None, seed, val_fraction=0.15, test_fraction=0.1)
    for c in files:
        n_test = sum(1 for _, label in out["test"] if label == c)
        n_val = sum(1 for _, label in out["val"] if label == c)
        assert abs(n_test - 0.1 * n) <= 1
        assert abs(n_val - 0.15 * (n - n_test)) <= 1
    assert sorted(p for s in out.values() for p, _ in s) == sorted(sum(files.values(), []))
    assert out == assign_splits(files, None, seed, 0.15, 0.1)


def test_errors_leave_no_dest(ingested, tmp_path, capsys):
    with pytest.raises(CnnzooError, match="manifest.json: file not found"):
        split_dataset(tmp_path, tmp_path / "s", img_size=SIZE)
    with pytest.raises(CnnzooError, match="val_fraction"):
        split_dataset(ingested, tmp_path / "s", img_size=SIZE, val_fraction=1.5)
    with pytest.raises(CnnzooError, match="img_size"):
        split_dataset(ingested, tmp_path / "s", img_size=0)
    assert not (tmp_path / "s").exists()
    with pytest.raises(CnnzooError, match="would replace the ingested data"):
        split_dataset(ingested, ingested, img_size=SIZE)
    assert (ingested / "manifest.json").is_file()
    rc = main(["split", str(tmp_path / "nope"), str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error:")


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_ingested_image_fails_atomically(tmp_path, workers):
    src = write_image_folder(tmp_path / "src", n_train=8, n_test=1)
    ingest(str(src), tmp_path / "ing")
    (tmp_path / "ing" / "images" / "train" / "bee" / "bee003.jpg").write_bytes(b"garbage")
    with pytest.raises(CnnzooError, match="bee003.jpg"):
        split_dataset(tmp_path / "ing", tmp_path / "s", img_size=SIZE, workers=workers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ing", "src"]


def test_too_few_images(tmp_path):
    src = write_image_folder(tmp_path / "src", n_train=1, n_test=1)
    ingest(str(src), tmp_path / "ing")
    with pytest.raises(CnnzooError, match="val split would be empty"):
        split_dataset(tmp_path / "ing", tmp_path / "s", img_size=SIZE)


def test_tiny_split_fixture(tiny_split):
    info = json.loads((tiny_split / "split.json").read_text())
    assert info["img_size"] == 72
    assert sum(v["count"] for v in info["splits"].values()) == 40
    assert info["splits"]["test"]["count"] == 10


@pytest.fixture(scope="module")
def ingested_large(tmp_path_factory):
    """2 classes x 8 train (+ 2 val) JPEGs of 260 px: kept at 1/2 scale (130 px)."""
    base = tmp_path_factory.mktemp("ing_large")
    src = write_image_folder(base / "src", n_train=8, n_test=2, size=260)
    ingest(str(src), base / "ingested")
    return base / "ingested"


def _without_kept_decodes(ingested, dest):
    shutil.copytree(ingested, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    for f in manifest["files"]:
        f.pop("decoded")
    (dest / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(dest / "decoded")
    return dest


@pytest.mark.parametrize("img_size", [SIZE, 100, 120])
def test_kept_decode_gives_the_bytes_of_a_fresh_decode(ingested_large, tmp_path, img_size):
    """Split resizes ingest's kept decode; the records equal decoding the JPEGs in split."""
    manifest = json.loads((ingested_large / "manifest.json").read_text())
    assert {(f["decoded"]["width"], f["decoded"]["min_side"]) for f in manifest["files"]} == {
        (130, 100)
    }
    plain = _without_kept_decodes(ingested_large, tmp_path / "plain")
    read = []
    for name, source in (("kept", ingested_large), ("decoded", plain)):
        info = split_dataset(source, tmp_path / name, img_size=img_size, seed=3)
        read.append(
            [
                img.tobytes()
                for part in SPLITS
                for img, _ in _read_records(tmp_path / name, info, part)
            ]
        )
    assert read[0] == read[1] and len(read[0]) == 20


def test_kept_decode_is_used_and_checked(ingested_large, tmp_path, monkeypatch):
    manifest = json.loads((ingested_large / "manifest.json").read_text())
    calls = []
    real = split_mod.resized_pixels
    monkeypatch.setattr(split_mod, "resized_pixels", lambda *a: calls.append(1) or real(*a))
    split_dataset(ingested_large, tmp_path / "s", img_size=SIZE)
    assert calls == []  # no JPEG decoded in split
    # A changed kept decode is refused like a changed image, naming the file and offset.
    tampered = tmp_path / "tampered"
    shutil.copytree(ingested_large, tampered)
    kept = manifest["files"][5]["decoded"]
    with open(tampered / kept["file"], "r+b") as f:
        f.seek(kept["offset"] + 7)
        f.write(b"\x00\x01\x02")
    with pytest.raises(CnnzooError, match=rf"{kept['file']} \(at byte {kept['offset']}\): sha256"):
        split_dataset(tampered, tmp_path / "t", img_size=SIZE)
    assert not (tmp_path / "t").exists()
    # Above the kept scale (img_size 140 > min_side 100) the JPEGs are decoded again.
    split_dataset(ingested_large, tmp_path / "big", img_size=140)
    assert len(calls) == 20


def test_a_missing_kept_decode_file_is_named(ingested_large, tmp_path):
    copy = tmp_path / "ing"
    shutil.copytree(ingested_large, copy)
    (copy / "decoded" / "pixels-00000.bin").unlink()
    with pytest.raises(CnnzooError, match="listed file decoded/pixels-00000.bin is missing"):
        split_dataset(copy, tmp_path / "s", img_size=SIZE)
    assert not (tmp_path / "s").exists()


def test_a_kept_decode_cut_short_is_named_even_unverified(ingested_large, tmp_path):
    copy = tmp_path / "ing"
    shutil.copytree(ingested_large, copy)
    packed = copy / "decoded" / "pixels-00000.bin"
    packed.write_bytes(packed.read_bytes()[:1000])  # cut inside the first kept decode
    for verify, message in ((True, "sha256 differs"), (False, "cut short since ingest")):
        with pytest.raises(CnnzooError, match=message):
            split_dataset(copy, tmp_path / "s", img_size=SIZE, verify=verify)
        assert not (tmp_path / "s").exists()


def test_a_bad_kept_decode_record_is_named(ingested_large, tmp_path):
    copy = tmp_path / "ing"
    shutil.copytree(ingested_large, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"][2]["decoded"]["offset"] = "zero"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    bad = manifest["files"][2]["path"]
    message = f"file {bad}: decoded.offset must be an integer, got 'zero'"
    with pytest.raises(CnnzooError, match=message):
        split_dataset(copy, tmp_path / "s", img_size=SIZE)


@pytest.mark.parametrize(("processes", "start"), [(2, "fork"), (2, "spawn"), (None, "fork")])
def test_shards_written_by_processes_are_the_bytes_of_one_process(
    ingested, tmp_path, monkeypatch, processes, start
):
    monkeypatch.setattr(split_mod, "MAX_SHARD_IMAGES", 20)  # 3 train shards, 1 val, 1 test
    monkeypatch.setattr("cnnzoo.core.workers.PROCESS_THRESHOLD", 10)  # None: a pool, as 2 CPUs
    monkeypatch.setattr("cnnzoo.core.workers.usable_cpus", lambda: 2)
    monkeypatch.setattr(
        "cnnzoo.core.workers.pool_context", lambda: multiprocessing.get_context(start)
    )
    pools = []
    real_pool = split_mod.process_pool

    def counted_pool(n, *args, **kwargs):
        pools.append(n)
        return real_pool(n, *args, **kwargs)

    monkeypatch.setattr(split_mod, "process_pool", counted_pool)
    one = split_dataset(ingested, tmp_path / "one", img_size=SIZE, seed=3, processes=0, workers=1)
    assert pools == []
    pool = split_dataset(ingested, tmp_path / "pool", img_size=SIZE, seed=3, processes=processes)
    assert pools == [2]
    assert pool == one
    assert tree_hashes(tmp_path / "pool") == tree_hashes(tmp_path / "one")
    assert len(one["splits"]["train"]["shards"]) == 3


@pytest.mark.parametrize("what", ["jpeg", "kept"])
def test_a_change_found_by_a_worker_process_is_one_error_line(tmp_path, what):
    src = write_image_folder(tmp_path / "src", n_train=8, n_test=1, size=260)
    ingest(str(src), tmp_path / "ing")
    if what == "jpeg":
        (tmp_path / "ing" / "images" / "train" / "bee" / "bee003.jpg").write_bytes(b"garbage")
        expected = "bee003.jpg: sha256 differs from"
    else:
        packed = tmp_path / "ing" / "decoded" / "pixels-00000.bin"
        raw = bytearray(packed.read_bytes())
        raw[-1] ^= 0xFF  # the last image's kept decode
        packed.write_bytes(bytes(raw))
        expected = "pixels-00000.bin (at byte"
    with pytest.raises(CnnzooError, match=re.escape(expected)) as e:
        split_dataset(tmp_path / "ing", tmp_path / "s", img_size=SIZE, processes=2)
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ing", "src"]
