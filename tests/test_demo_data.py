"""The generated demo dataset: layout, determinism, decodable images of the asked size."""

import pytest
from helpers import tree_hashes
from PIL import Image

from cnnzoo.cli.main import main
from cnnzoo.core.errors import CnnzooError
from cnnzoo.data.demo import CLASSES, make_demo_dataset


def test_layout_counts_and_images(tmp_path):
    dest = make_demo_dataset(tmp_path / "demo", per_class_train=3, per_class_test=2, size=32)
    assert sorted(p.name for p in (dest / "train").iterdir()) == sorted(CLASSES)
    assert sorted(p.name for p in (dest / "val").iterdir()) == sorted(CLASSES)
    for label in CLASSES:
        train = sorted((dest / "train" / label).glob("*.jpg"))
        val = sorted((dest / "val" / label).glob("*.jpg"))
        assert (len(train), len(val)) == (3, 2)
        for path in train + val:
            with Image.open(path) as img:
                img.load()
                assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (32, 32))
    # Nothing else (no temporary folders) is left beside the dataset.
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kw = dict(per_class_train=2, per_class_test=1, size=24)
    a = tree_hashes(make_demo_dataset(tmp_path / "a", seed=3, **kw))
    b = tree_hashes(make_demo_dataset(tmp_path / "b", seed=3, **kw))
    c = tree_hashes(make_demo_dataset(tmp_path / "c", seed=4, **kw))
    assert a == b
    assert len(a) == 15
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a)


def test_images_within_a_class_differ(tmp_path):
    dest = make_demo_dataset(tmp_path / "d", per_class_train=4, per_class_test=0, size=24)
    hashes = tree_hashes(dest)
    assert len(set(hashes.values())) == len(hashes) == 20
    assert not (dest / "val").exists()


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(CnnzooError, match="per_class_train"):
        make_demo_dataset(tmp_path / "x", per_class_train=0)
    with pytest.raises(CnnzooError, match="size"):
        make_demo_dataset(tmp_path / "x", size=4)
    assert not (tmp_path / "x").exists()


def test_cli(tmp_path, capsys):
    rc = main(
        ["demo-data", str(tmp_path / "cli"), "--per-class-train", "1", "--per-class-test", "1"]
    )
    assert rc == 0
    assert len(list((tmp_path / "cli").rglob("*.jpg"))) == 10
    assert "demo dataset" in capsys.readouterr().out
