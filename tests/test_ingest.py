"""Ingest: layout checks, decoding and RGB conversion, manifest, archives and sources."""

import hashlib
import io
import json
import multiprocessing
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    jpeg_bytes,
    png16_rgb_bytes,
    png_bytes,
    rgb_image,
    sha256,
    write_image_folder,
)
from PIL import Image

import cnnzoo.data.ingest
from cnnzoo.cli.main import main
from cnnzoo.core.errors import CnnzooError
from cnnzoo.data import sources
from cnnzoo.data.ingest import ingest


def _files_by_source(manifest):
    return {f["source_path"]: f for f in manifest["files"]}


def test_good_dataset_manifest(tmp_path):
    src = write_image_folder(tmp_path / "src", classes=("bee", "ant"), n_train=3, n_test=2)
    (src / "train" / "ant" / ".DS_Store").write_bytes(b"junk")
    (src / "__MACOSX").mkdir()
    (src / "__MACOSX" / "._x").write_bytes(b"junk")
    m = ingest(str(src), tmp_path / "out")
    out = tmp_path / "out"
    assert m["classes"] == ["ant", "bee"]
    assert m["test_source"] == "val"
    assert m["counts"] == {"train": {"ant": 3, "bee": 3}, "test": {"ant": 2, "bee": 2}}
    assert m["skipped"] == []
    assert len(m["files"]) == 10
    for f in m["files"]:
        # RGB JPEGs are copied byte for byte under images/<split>/<class>/.
        assert (out / f["path"]).read_bytes() == (src / f["source_path"]).read_bytes()
        assert f["sha256"] == sha256(out / f["path"])
        assert (f["width"], f["height"]) == (16, 16)
        assert f["path"].split("/")[1] == f["split"]
        assert f["path"].split("/")[2] == f["label"]
    assert _files_by_source(m)["val/bee/bee000.jpg"]["path"] == "images/test/bee/bee000.jpg"
    assert json.loads((out / "manifest.json").read_text()) == m
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_bad_files_skipped_and_odd_modes_converted(tmp_path):
    src = write_image_folder(tmp_path / "src", n_train=20, n_test=2)
    cat = src / "train" / "ant"
    good = jpeg_bytes(rgb_image(32, 99))
    (cat / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (cat / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (cat / "empty.jpg").write_bytes(b"")
    (cat / "text.jpg").write_bytes(b"this is not an image\n")
    bee = src / "train" / "bee"
    Image.new("L", (8, 6), 77).save(bee / "gray.jpg", quality=95)
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 255))
    rgba.putpixel((0, 0), (10, 20, 30, 0))  # fully transparent pixel -> white
    rgba.save(bee / "alpha.png")
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(bee / "cmyk.jpg")
    rgb_image(8, 5).convert("P").save(bee / "palette.png")
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(bee / "gray16.png")
    (bee / "rgb16.png").write_bytes(png16_rgb_bytes(5, 3, value=0x8080))
    # A converted b.jpg cannot become b.png (an RGB b.png exists): it becomes b.jpg.png.
    Image.new("L", (4, 4), 200).save(bee / "b.jpg")
    rgb_image(4, 6).save(bee / "b.png")

    m = ingest(str(src), tmp_path / "out", max_bad_fraction=0.5)
    out = tmp_path / "out"
    skipped = {s["path"]: s["reason"] for s in m["skipped"]}
    assert set(skipped) == {
        "train/ant/corrupt.jpg",
        "train/ant/truncated.jpg",
        "train/ant/empty.jpg",
        "train/ant/text.jpg",
    }
    assert "empty" in skipped["train/ant/empty.jpg"]
    assert m["counts"]["train"] == {"ant": 20, "bee": 28}
    files = _files_by_source(m)
    assert not any(p.startswith("train/ant/corrupt") for p in files)
    expected = {
        "train/bee/gray.jpg": "images/train/bee/gray.png",
        "train/bee/alpha.png": "images/train/bee/alpha.png",
        "train/bee/cmyk.jpg": "images/train/bee/cmyk.png",
        "train/bee/palette.png": "images/train/bee/palette.png",
        "train/bee/gray16.png": "images/train/bee/gray16.png",
        "train/bee/rgb16.png": "images/train/bee/rgb16.png",
        "train/bee/b.jpg": "images/train/bee/b.jpg.png",
        "train/bee/b.png": "images/train/bee/b.png",
    }
    for source_path, path in expected.items():
        f = files[source_path]
        assert f["path"] == path
        with Image.open(out / path) as img:
            img.load()
            assert (img.format, img.mode) == ("PNG", "RGB"), source_path
            assert img.size == (f["width"], f["height"])
            assert not any("16" in str(t.args) for t in img.tile)
        assert f["sha256"] == sha256(out / path)
    # The RGB PNG b.png is a byte-for-byte copy; the converted ones are not.
    assert (out / "images/train/bee/b.png").read_bytes() == (bee / "b.png").read_bytes()
    assert (out / "images/train/bee/rgb16.png").read_bytes() != (bee / "rgb16.png").read_bytes()
    px = Image.open(out / "images/train/bee/alpha.png").convert("RGB")
    assert px.getpixel((0, 0)) == (255, 255, 255)
    assert px.getpixel((1, 1)) == (10, 20, 30)
    assert Image.open(out / "images/train/bee/gray16.png").getpixel((0, 0)) == (255, 255, 255)
    assert Image.open(out / "images/train/bee/rgb16.png").getpixel((0, 0)) == (128, 128, 128)
    r, g, b = Image.open(out / "images/train/bee/cmyk.png").getpixel((0, 0))
    assert r > 200 and g < 60 and b < 60  # CMYK (0, 100%, 100%, 0) is red
    # images, the packed kept decodes, manifest and the ownership marker only
    kept = {f["path"]: f["decoded"] for f in m["files"] if "decoded" in f}
    copied_jpegs = [
        f["path"] for f in m["files"] if (out / f["path"]).read_bytes()[:3] == b"\xff\xd8\xff"
    ]
    assert sorted(kept) == sorted(copied_jpegs) and kept  # every JPEG copied as is, only those
    packed = sorted({d["file"] for d in kept.values()})
    assert packed == ["decoded/pixels-00000.bin"]
    assert len(list(out.rglob("*.*"))) == len(m["files"]) + len(packed) + 2
    blob = (out / packed[0]).read_bytes()
    for path, d in kept.items():
        raw = blob[d["offset"] : d["offset"] + d["width"] * d["height"] * 3]
        assert hashlib.sha256(raw).hexdigest() == d["sha256"]
        with Image.open(out / path) as img:  # the strict decode at the smallest scale >= 100
            assert (d["width"], d["height"]) == img.size  # these test images are small
            fresh = np.asarray(img.convert("RGB"))
        pixels = np.frombuffer(raw, np.uint8).reshape(fresh.shape)
        assert np.abs(pixels.astype(int) - fresh).max() <= 2  # libjpeg-turbo vs Pillow
    assert sum(d["width"] * d["height"] * 3 for d in kept.values()) == len(blob)


def test_kept_decodes_are_at_the_smallest_scale_at_least_100_px(tmp_path):
    """A 450x230 JPEG is kept at 1/2 scale (225x115): 1/4 would give 57 px < 100."""
    src = write_image_folder(tmp_path / "src", n_train=2, n_test=1)
    big = src / "train" / "ant" / "big.jpg"
    big.write_bytes(jpeg_bytes(rgb_image(450, seed=3).resize((450, 230))))
    m = ingest(str(src), tmp_path / "out")
    d = _files_by_source(m)["train/ant/big.jpg"]["decoded"]
    assert (d["width"], d["height"], d["min_side"]) == (225, 115, 100)
    # The source is hard-linked, not copied, on one file system; the bytes are the same.
    out = tmp_path / "out" / "images" / "train" / "ant" / "big.jpg"
    assert out.stat().st_ino == big.stat().st_ino


def test_a_source_on_another_file_system_is_copied(tmp_path, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("cnnzoo.data.ingest.os.link", no_links)
    src = write_image_folder(tmp_path / "src", n_train=2, n_test=1)
    m = ingest(str(src), tmp_path / "out")
    for f in m["files"]:
        out = tmp_path / "out" / f["path"]
        assert out.stat().st_ino != (src / f["source_path"]).stat().st_ino
        assert out.read_bytes() == (src / f["source_path"]).read_bytes()


@pytest.mark.parametrize("max_pixels", [1000, 3000])  # 4096 px: Pillow errors / only warns
def test_decompression_bomb_skipped(tmp_path, monkeypatch, max_pixels):
    src = write_image_folder(tmp_path / "src", n_train=3, n_test=1)
    Image.new("RGB", (64, 64)).save(src / "train" / "ant" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", max_pixels)
    m = ingest(str(src), tmp_path / "out", max_bad_fraction=0.5)
    assert [s["path"] for s in m["skipped"]] == ["train/ant/huge.png"]
    assert "decompression bomb" in m["skipped"][0]["reason"]


def test_test_folder_preferred_and_no_test_folder(tmp_path):
    src = write_image_folder(tmp_path / "a", n_train=2, n_test=1, test_name="test")
    m = ingest(str(src), tmp_path / "out_a")
    assert m["test_source"] == "test"
    src = write_image_folder(tmp_path / "b", n_train=2, test_name=None)
    m = ingest(str(src), tmp_path / "out_b")
    assert m["test_source"] is None
    assert m["counts"]["test"] == {}
    assert {f["split"] for f in m["files"]} == {"train"}


def _no_train(root: Path) -> None:
    write_image_folder(root, n_train=1, n_test=1)
    shutil.move(root / "train", root / "training")


def _no_classes(root: Path) -> None:
    (root / "train").mkdir(parents=True)


def _empty_class(root: Path) -> None:
    write_image_folder(root, n_train=2, n_test=1)
    (root / "train" / "cow").mkdir()
    (root / "val" / "cow").mkdir()


def _classes_differ(root: Path) -> None:
    write_image_folder(root, n_train=2, n_test=1)
    shutil.move(root / "val" / "bee", root / "val" / "wasp")


def _files_in_train(root: Path) -> None:
    write_image_folder(root, n_train=2, n_test=1)
    (root / "train" / "loose.jpg").write_bytes(jpeg_bytes(rgb_image()))


def _nothing_decodable(root: Path) -> None:
    for label in ("ant", "bee"):
        (root / "train" / label).mkdir(parents=True)
        (root / "train" / label / "x.jpg").write_bytes(b"not a jpeg")


def _all_bad_in_class(root: Path) -> None:
    write_image_folder(root, n_train=2, n_test=1)
    for p in (root / "train" / "bee").iterdir():
        p.write_bytes(b"broken")


def _too_many_bad(root: Path) -> None:
    write_image_folder(root, n_train=10, n_test=1)
    (root / "train" / "ant" / "ant000.jpg").write_bytes(b"broken")  # 1 of 20 = 5% > 1%


@pytest.mark.parametrize(
    "make, message",
    [
        (_no_train, "no train/ folder"),
        (_no_classes, "no class folders in train/"),
        (_empty_class, "train/cow/ has no images"),
        (_classes_differ, "class folders differ"),
        (_files_in_train, "directly in train/"),
        (_nothing_decodable, "no decodable image"),
        (_all_bad_in_class, "train/bee/ has no usable image"),
        (_too_many_bad, "max_bad_fraction"),
    ],
)
def test_fatal_layout_problems(tmp_path, capsys, make, message):
    src = tmp_path / "src"
    src.mkdir()
    make(src)
    dest = tmp_path / "out"
    with pytest.raises(CnnzooError, match=message):
        ingest(str(src), dest)
    assert not dest.exists()
    capsys.readouterr()
    assert main(["ingest", str(src), str(dest)]) == 1
    err_lines = capsys.readouterr().err.splitlines()
    errors = [line for line in err_lines if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert err_lines[-1] == errors[0]
    assert "Traceback" not in "\n".join(err_lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_failure_keeps_previous_dest(tmp_path):
    good = write_image_folder(tmp_path / "good", n_train=2, n_test=1)
    ingest(str(good), tmp_path / "out")
    bad = tmp_path / "bad"
    _no_classes(bad)
    with pytest.raises(CnnzooError):
        ingest(str(bad), tmp_path / "out")
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]["train"] == {
        "ant": 2,
        "bee": 2,
    }


def test_dest_must_not_replace_source(tmp_path):
    src = write_image_folder(tmp_path / "src", n_train=1, n_test=1)
    for dest in (src, tmp_path):
        with pytest.raises(CnnzooError, match="would replace the source"):
            ingest(str(src), dest)
    assert len(list(src.rglob("*.jpg"))) == 4


def test_extract_limit_from_environment(tmp_path, monkeypatch):
    archive = _zip_tree(write_image_folder(tmp_path / "d"), tmp_path / "d.zip")
    monkeypatch.setenv("CNNZOO_MAX_EXTRACT_BYTES", "10")
    with pytest.raises(CnnzooError, match="more than 10 bytes"):
        ingest(str(archive), tmp_path / "out")
    monkeypatch.setenv("CNNZOO_MAX_EXTRACT_BYTES", "lots")
    with pytest.raises(CnnzooError, match="CNNZOO_MAX_EXTRACT_BYTES: not an integer"):
        ingest(str(archive), tmp_path / "out")


def test_missing_source_and_bad_fraction(tmp_path):
    with pytest.raises(CnnzooError, match="no such file or folder"):
        ingest(str(tmp_path / "nope"), tmp_path / "out")
    with pytest.raises(CnnzooError, match="max_bad_fraction"):
        ingest(str(tmp_path), tmp_path / "out", max_bad_fraction=2)
    with pytest.raises(CnnzooError, match="unsupported URI scheme"):
        ingest("s3://bucket/x", tmp_path / "out")


# --- archives and other sources --------------------------------------------------------


def _zip_tree(root: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(root.rglob("*")):
            zf.write(p, prefix + p.relative_to(root).as_posix())
        zf.writestr("__MACOSX/._junk", b"junk")
    return archive


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tgz"])
def test_archives_and_nesting(tmp_path, kind):
    src = write_image_folder(tmp_path / "animals", n_train=2, n_test=1)
    archive = tmp_path / f"data.{kind}"
    if kind == "zip":
        _zip_tree(src, archive, prefix="animals/")  # nested one level down
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(src, arcname="animals")
    m = ingest(str(archive), tmp_path / "out")
    assert m["counts"] == {"train": {"ant": 2, "bee": 2}, "test": {"ant": 1, "bee": 1}}
    assert m["source"] == str(archive)
    assert m["skipped"] == []


def test_zip_path_traversal_rejected(tmp_path):
    archive = _zip_tree(write_image_folder(tmp_path / "d"), tmp_path / "evil.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../escaped.jpg", b"x")
    with pytest.raises(CnnzooError, match="escapes the target"):
        ingest(str(archive), tmp_path / "out")
    assert not (tmp_path / "escaped.jpg").exists()
    assert not (tmp_path / "out").exists()


def test_zip_absolute_path_rejected(tmp_path):
    archive = tmp_path / "abs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(zipfile.ZipInfo("/tmp/abs.jpg"), b"x")
    with pytest.raises(CnnzooError, match="absolute path"):
        sources.extract_archive(archive, tmp_path / "x")


@pytest.mark.parametrize(
    "name, kind, linkname, message",
    [
        ("data/../../escaped.jpg", tarfile.REGTYPE, "", "escapes the target folder"),
        ("/abs/escaped.jpg", tarfile.REGTYPE, "", "absolute path"),
        ("data/train/link", tarfile.SYMTYPE, "/etc/passwd", "link to an absolute path"),
        ("data/train/hard", tarfile.LNKTYPE, "../escaped.jpg", "outside the destination"),
    ],
)
def test_tar_unsafe_members_rejected(tmp_path, name, kind, linkname, message):
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, linkname
    member.size = 1 if kind == tarfile.REGTYPE else 0
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.addfile(member, io.BytesIO(b"x") if member.size else None)
    with pytest.raises(CnnzooError, match=message):
        ingest(str(archive), tmp_path / "out")
    assert not (tmp_path / "escaped.jpg").exists()
    assert not (tmp_path / "out").exists()


def test_declared_size_limit(tmp_path, monkeypatch):
    archive = _zip_tree(write_image_folder(tmp_path / "d"), tmp_path / "d.zip")
    monkeypatch.setattr(sources, "MAX_EXTRACT_BYTES", 100)
    with pytest.raises(CnnzooError, match="decompression bomb"):
        ingest(str(archive), tmp_path / "out")


def test_not_an_archive(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(CnnzooError, match="not a folder or a supported archive"):
        ingest(str(tmp_path / "x.txt"), tmp_path / "out")
    (tmp_path / "x.zip").write_text("hi")
    with pytest.raises(CnnzooError, match="not a readable zip"):
        ingest(str(tmp_path / "x.zip"), tmp_path / "out")


def test_demo_source(tmp_path, monkeypatch):
    import cnnzoo.data.demo as demo_data

    real = demo_data.make_demo_dataset
    monkeypatch.setattr(
        demo_data,
        "make_demo_dataset",
        lambda dest: real(dest, per_class_train=2, per_class_test=1, size=24),
    )
    m = ingest("demo", tmp_path / "out")
    assert m["classes"] == sorted(demo_data.CLASSES)
    assert sum(m["counts"]["train"].values()) == 10


# Cloud Storage sources are tested against the emulator in test_gcs.py.


def test_png_bytes_helper_roundtrip():
    # The helper the odd-format test relies on really writes what it claims.
    data = png16_rgb_bytes(2, 2, value=0xFFFF)
    with Image.open(io.BytesIO(data)) as img:
        assert img.tile[0].args == "RGB;16B"
    assert png_bytes(rgb_image(4))[:8] == b"\x89PNG\r\n\x1a\n"


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but the ownership marker (it records a time), by path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".cnnzoo.json"
    }


@pytest.mark.parametrize(
    ("processes", "start"), [(1, "fork"), (2, "fork"), (2, "spawn"), (None, "fork")]
)
def test_decoding_processes_give_the_same_bytes_as_threads(tmp_path, monkeypatch, processes, start):
    # Chunks of 8 images, so 32 images make four chunks: several per process.
    monkeypatch.setattr("cnnzoo.data.ingest.CHUNK_ITEMS", 8)
    monkeypatch.setattr(
        "cnnzoo.core.workers.pool_context", lambda: multiprocessing.get_context(start)
    )
    monkeypatch.setattr("cnnzoo.core.workers.PROCESS_THRESHOLD", 10)  # None: a pool, as 2 CPUs
    monkeypatch.setattr("cnnzoo.core.workers.usable_cpus", lambda: 2)
    pools = []
    real_pool = cnnzoo.data.ingest.process_pool

    def counted_pool(n, *args, **kwargs):
        pools.append(n)
        return real_pool(n, *args, **kwargs)

    monkeypatch.setattr("cnnzoo.data.ingest.process_pool", counted_pool)
    src = write_image_folder(tmp_path / "src", classes=("ant", "bee", "cow"), n_train=8, n_test=2)
    (src / "train" / "bee" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (src / "train" / "cow" / "grey.png").write_bytes(png_bytes(Image.new("L", (5, 5), 7)))
    threads = ingest(str(src), tmp_path / "threads", max_bad_fraction=0.2, processes=0)
    assert pools == []  # processes=0: threads
    pooled = ingest(str(src), tmp_path / "pool", max_bad_fraction=0.2, processes=processes)
    assert pools == [processes or 2]
    assert pooled == threads
    assert _tree(tmp_path / "pool") == _tree(tmp_path / "threads")
    # One kept-decode file per chunk that holds a copied JPEG, in item order.
    packed = sorted({f["decoded"]["file"] for f in threads["files"] if "decoded" in f})
    assert packed == [f"decoded/pixels-{c:05d}.bin" for c in range(4)]
    assert [s["path"] for s in threads["skipped"]] == ["train/bee/bad.jpg"]


def test_a_chunk_over_the_file_size_limit_continues_in_a_second_file(tmp_path, monkeypatch):
    src = write_image_folder(tmp_path / "src", n_train=3, n_test=0, test_name=None)
    monkeypatch.setattr("cnnzoo.data.ingest.DECODED_FILE_BYTES", 2 * 16 * 16 * 3)  # two images
    m = ingest(str(src), tmp_path / "out", processes=0)
    files = [f["decoded"]["file"] for f in m["files"]]
    assert (
        files
        == ["decoded/pixels-00000.bin"] * 2
        + ["decoded/pixels-00000-1.bin"] * 2
        + ["decoded/pixels-00000-2.bin"] * 2
    )
    assert [f["decoded"]["offset"] for f in m["files"]] == [0, 768] * 3
