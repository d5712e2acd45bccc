"""Hostile and broken input: every case ends in one clear ``error:`` line or a listed skip.

Complements ``test_ingest.py`` (which covers ``../`` and absolute members, tar links,
corrupt/truncated/zero-byte/non-image files, odd image modes, junk, the layout errors
and the bad-fraction default) with what it does not: links and bombs at the default
limits, lying and truncated archives, images with wrong extensions, animated and pixel
bombs, non-UTF-8 names, pipes, one-class datasets, the configurable bad fraction, and
configuration errors through ``cnnzoo train``. Every archive and image here is crafted
in a few bytes: nothing declares gigabytes and then writes them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest
from helpers import cli_error, jpeg_bytes, png_bytes, rgb_image, write_image_folder
from PIL import Image

from cnnzoo.cli.main import main
from cnnzoo.data.ingest import ingest


def _assert_ingest_fails(capsys, tmp_path: Path, source: Path, message: str) -> None:
    """``cnnzoo ingest`` fails naming ``source`` and ``message``, leaving nothing behind."""
    before = sorted(p.name for p in tmp_path.iterdir())
    line = cli_error(capsys, ["ingest", str(source), str(tmp_path / "out")])
    assert line.startswith(f"error: {source}: "), line
    assert message in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no DEST, no scratch
    assert not (tmp_path.parent / "outside.jpg").exists()


# --- archives --------------------------------------------------------------------------


def _zip_with(tmp_path: Path, name: str, members: dict[str, bytes | zipfile.ZipInfo]) -> Path:
    archive = tmp_path / name
    with zipfile.ZipFile(archive, "w") as zf:
        for arcname, data in members.items():
            zf.writestr(arcname, data)
    return archive


def _tar_link(tmp_path: Path, name: str, kind: bytes, target: str) -> Path:
    archive = tmp_path / name
    with tarfile.open(archive, "w") as tf:
        for label in ("ant", "bee"):
            data = jpeg_bytes(rgb_image())
            info = tarfile.TarInfo(f"data/train/{label}/a.jpg")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("data/train/ant/link.jpg")
        link.type, link.linkname = kind, target
        tf.addfile(link)
    return archive


def test_links_pointing_outside(tmp_path, capsys):
    # A zip symlink member (mode bits in external_attr) pointing at a system file.
    info = zipfile.ZipInfo("data/train/ant/link.jpg")
    info.external_attr = 0o120777 << 16
    archive = tmp_path / "symlink.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/train/bee/a.jpg", jpeg_bytes(rgb_image()))
        zf.writestr(info, "/etc/passwd")
    _assert_ingest_fails(capsys, tmp_path, archive, "'data/train/ant/link.jpg' is a symlink")
    # tar: a relative symlink climbing out, and a hard link to an absolute path.
    rel = _tar_link(tmp_path, "relsym.tar", tarfile.SYMTYPE, "../../../../outside.jpg")
    _assert_ingest_fails(capsys, tmp_path, rel, "outside the destination")
    hard = _tar_link(tmp_path, "hard.tar", tarfile.LNKTYPE, "/etc/passwd")
    _assert_ingest_fails(capsys, tmp_path, hard, "unsafe member refused")


def _patch_zip_sizes(archive: Path, size: int, local_too: bool = False) -> None:
    """Rewrite every member's declared uncompressed size (central directory, local header)."""
    data = bytearray(archive.read_bytes())
    headers = [(b"PK\x01\x02", 24)] + ([(b"PK\x03\x04", 22)] if local_too else [])
    for signature, offset in headers:
        i = data.find(signature)
        while i >= 0:
            data[i + offset : i + offset + 4] = struct.pack("<I", size)
            i = data.find(signature, i + 4)
    archive.write_bytes(bytes(data))


def _sparse_tar(path: Path, real_size: int) -> Path:
    """A GNU sparse member declaring ``real_size`` bytes while storing 512."""
    info = tarfile.TarInfo("data/train/ant/sparse.jpg")
    info.size, info.type = 512, tarfile.GNUTYPE_SPARSE
    hdr = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    hdr[386:398] = b"%011o\0" % 0  # sparse map: one 512-byte chunk at offset 0
    hdr[398:410] = b"%011o\0" % 512
    hdr[483:495] = b"\x80" + real_size.to_bytes(11, "big")  # base-256: sizes over 8 GiB
    hdr[148:156] = b" " * 8
    hdr[148:156] = b"%06o\0 " % sum(hdr[:512])
    path.write_bytes(bytes(hdr) + b"x" * 512 + b"\0" * 1024)
    return path


def test_decompression_bombs_at_the_default_limit(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CNNZOO_MAX_EXTRACT_BYTES", raising=False)
    # 17 one-byte members each declaring ~4 GiB: 68 GiB in all, over the 64 GiB limit.
    many = _zip_with(tmp_path, "many.zip", {f"d/train/ant/{i}.jpg": b"x" for i in range(17)})
    _patch_zip_sizes(many, 0xFFFFFFFE)
    _assert_ingest_fails(capsys, tmp_path, many, "possible decompression bomb")
    # A sparse tar member declaring 20 GiB: under the total limit, refused for being sparse
    # (extracted, it would be a 20 GiB "image" that ingest reads into memory).
    sparse = _sparse_tar(tmp_path / "sparse.tar", 20 * 1024**3)
    assert tarfile.open(sparse).getmembers()[0].size == 20 * 1024**3  # the header is real
    _assert_ingest_fails(capsys, tmp_path, sparse, "is a sparse file")
    # A tar header declaring 100 GiB of data that is not there: corrupt, not a long read.
    info = tarfile.TarInfo("d/train/ant/big.jpg")
    info.size = 100 * 1024**3
    huge = tmp_path / "huge.tar"
    huge.write_bytes(info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024)
    _assert_ingest_fails(capsys, tmp_path, huge, "corrupt tar archive")


def test_zip_member_larger_than_declared(tmp_path, capsys):
    # 10 MB of zeros deflate to ~10 kB; the headers claim 10 bytes. Extraction stops at
    # the declared size and the CRC check fails: nothing is inflated past the claim.
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("d/train/ant/x.jpg", b"\0" * 10_000_000)
        zf.writestr("d/train/bee/y.jpg", jpeg_bytes(rgb_image()))
    _patch_zip_sizes(archive, 10, local_too=True)
    assert archive.stat().st_size < 50_000
    _assert_ingest_fails(capsys, tmp_path, archive, "Bad CRC-32 for file 'd/train/ant/x.jpg'")


def test_truncated_and_corrupt_archives(tmp_path, capsys):
    src = write_image_folder(tmp_path / "animals", n_train=6, n_test=2, size=48)
    good_tgz = tmp_path / "good.tgz"
    with tarfile.open(good_tgz, "w:gz") as tf:
        tf.add(src, arcname="animals")
    good_zip = Path(shutil.make_archive(str(tmp_path / "good"), "zip", tmp_path, "animals"))
    shutil.rmtree(src)
    tgz, zipped = good_tgz.read_bytes(), good_zip.read_bytes()
    cases = {
        "cut.tar.gz": (tgz[: len(tgz) // 2], "corrupt tar archive"),
        "cut.zip": (zipped[: len(zipped) // 2], "not a readable zip archive"),
        "noise.tar.gz": (os.urandom(4096), "not a readable tar archive"),
        "empty.zip": (b"", "not a readable zip archive"),
        # Overwriting the middle of the first member's data breaks its CRC.
        "flipped.zip": (zipped[:200] + b"\0" * 400 + zipped[600:], "cannot extract member"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        _assert_ingest_fails(capsys, tmp_path, tmp_path / name, message)


# --- images ----------------------------------------------------------------------------


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring ``width`` x ``height`` pixels, with one tiny IDAT: a pixel bomb."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_odd_images_accepted_or_skipped(tmp_path):
    src = write_image_folder(tmp_path / "src", n_train=12, n_test=2)
    ant, bee = src / "train" / "ant", src / "train" / "bee"
    (ant / "png_named.jpg").write_bytes(png_bytes(rgb_image(10, 1)))  # wrong extension
    (ant / "jpeg_named.png").write_bytes(jpeg_bytes(rgb_image(10, 2)))
    rgb_image(6, 3).save(ant / "bitmap.bmp")
    rgb_image(6, 4).save(ant / "photo.webp")
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(bee / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    (bee / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))  # 10^10 pixels
    (bee / "big.png").write_bytes(_png_header_only(10_000, 10_000))  # 10^8: Pillow only warns
    with open(bee / "sparse.jpg", "wb") as f:  # 1 GiB of holes: must not be read
        f.truncate(1024**3)
    os.mkfifo(bee / "pipe.jpg")  # reading it would block forever
    (bee / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")

    m = ingest(str(src), tmp_path / "out", max_bad_fraction=0.5)
    out = tmp_path / "out"
    skipped = {s["path"]: s["reason"] for s in m["skipped"]}
    assert set(skipped) == {
        f"train/bee/{n}" for n in ("bomb.png", "big.png", "sparse.jpg", "pipe.jpg", "dangling.jpg")
    }
    assert "decompression bomb" in skipped["train/bee/bomb.png"]
    assert "decompression bomb" in skipped["train/bee/big.png"]
    assert "file too large" in skipped["train/bee/sparse.jpg"]
    assert "not a regular file" in skipped["train/bee/pipe.jpg"]
    assert "cannot read file" in skipped["train/bee/dangling.jpg"]
    files = {f["source_path"]: f for f in m["files"]}
    # RGB PNG/JPEG bytes are kept as they are, whatever the extension says.
    for name in ("png_named.jpg", "jpeg_named.png"):
        f = files[f"train/ant/{name}"]
        assert f["path"] == f"images/train/ant/{name}"
        assert (out / f["path"]).read_bytes() == (ant / name).read_bytes()
    for name, png in (("bitmap.bmp", "bitmap.png"), ("photo.webp", "photo.png")):
        assert files[f"train/ant/{name}"]["path"] == f"images/train/ant/{png}"
        assert Image.open(out / "images/train/ant" / png).format == "PNG"
    gif = files["train/bee/anim.gif"]
    assert gif["note"] == "animated GIF with 3 frames: first frame used"
    assert Image.open(out / gif["path"]).convert("RGB").getpixel((4, 4)) == (255, 0, 0)
    assert "note" not in files["train/ant/png_named.jpg"]


def test_names_not_utf8_with_spaces_and_junk(tmp_path):
    src = write_image_folder(tmp_path / "src", classes=("ant", "bee"), n_train=2, n_test=1)
    raw = os.fsencode(src)
    for split in (b"train", b"val"):  # a class folder named in Latin-1: b"caf\xe9 au lait"
        os.makedirs(raw + b"/" + split + b"/caf\xe9 au lait")
        with open(raw + b"/" + split + b"/caf\xe9 au lait/\xff photo 1.jpg", "wb") as f:
            f.write(jpeg_bytes(rgb_image(16, 7)))
    ant = src / "train" / "ant"
    (ant / "._ant000.jpg").write_bytes(b"AppleDouble")
    (ant / "Thumbs.db").write_bytes(b"junk")
    (ant / ".ipynb_checkpoints").mkdir()
    (ant / ".ipynb_checkpoints" / "x.jpg").write_bytes(jpeg_bytes(rgb_image()))
    (src / "train" / ".hidden_class").mkdir()
    (src / "__MACOSX" / "train").mkdir(parents=True)
    (src / "__MACOSX" / "train" / "._x").write_bytes(b"junk")

    m = ingest(str(src), tmp_path / "out")
    assert m["classes"] == ["ant", "bee", "caf%E9 au lait"]
    assert m["counts"]["train"] == {"ant": 2, "bee": 2, "caf%E9 au lait": 1}
    files = {f["source_path"]: f["path"] for f in m["files"]}
    assert files["train/caf%E9 au lait/%FF photo 1.jpg"] == (
        "images/train/caf%E9 au lait/%FF photo 1.jpg"
    )
    assert (tmp_path / "out" / "images/train/caf%E9 au lait/%FF photo 1.jpg").is_file()
    # The manifest is strict UTF-8 JSON: no lone surrogates a stricter reader would reject.
    text = (tmp_path / "out" / "manifest.json").read_bytes().decode("utf-8")
    assert "\\udc" not in text
    assert json.loads(text)["classes"] == m["classes"]
    assert not any("._" in p or "Thumbs" in p or "ipynb" in p for p in files)


def test_one_class_only_is_fatal(tmp_path, capsys):
    src = write_image_folder(tmp_path / "src", classes=("ant",), n_train=3, n_test=1)
    (src / "train" / ".DS_Store").write_bytes(b"junk")  # junk is not a second class
    _assert_ingest_fails(capsys, tmp_path, src, "only one class folder in train/ ('ant')")
    (src / "train" / "bee").mkdir()
    (src / "train" / "bee" / ".DS_Store").write_bytes(b"junk")  # a class of junk only
    (src / "val" / "bee").mkdir()
    _assert_ingest_fails(capsys, tmp_path, src, "class folder train/bee/ has no images")


def test_bad_fraction_is_configurable(tmp_path, capsys):
    src = write_image_folder(tmp_path / "src", n_train=20, n_test=2)
    for i in range(2):  # 2 of 40 train files (5%) are broken
        (src / "train" / "bee" / f"bee{i:03d}.jpg").write_bytes(b"broken")
    dest = tmp_path / "out"
    line = cli_error(capsys, ["ingest", str(src), str(dest)])
    assert "2 of 40 files in train/ are unreadable (5.0% > max_bad_fraction 0.01)" in line
    assert not dest.exists()
    assert main(["ingest", str(src), str(dest), "--max-bad-fraction", "0.05"]) == 0
    assert "2 skipped" in capsys.readouterr().out
    m = json.loads((dest / "manifest.json").read_text())
    assert [s["path"] for s in m["skipped"]] == ["train/bee/bee000.jpg", "train/bee/bee001.jpg"]
    assert m["counts"]["train"] == {"ant": 20, "bee": 18}
    line = cli_error(capsys, ["ingest", str(src), str(tmp_path / "x"), "--max-bad-fraction", "2"])
    assert "max_bad_fraction must be in [0, 1], got 2" in line


# --- configuration, through `cnnzoo train` ---------------------------------------------


@pytest.fixture(scope="module")
def split64(tmp_path_factory):
    """A tiny two-class split at 64 px: valid for MobileNetV2 (32+), too small for Xception."""
    from cnnzoo.data.split import split_dataset

    base = tmp_path_factory.mktemp("split64")
    write_image_folder(base / "raw", n_train=6, n_test=2)
    ingest(str(base / "raw"), base / "ingested")
    split_dataset(base / "ingested", base / "split", img_size=64, seed=1)
    return base / "split"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nope"], "unknown model configuration 'nope'"),
        (["simple", "--profile", "nope"], "unknown profile 'nope'"),
        (["simple", "--set", "nope=1"], "unknown key 'nope'"),
        (["simple", "--set", "models.simple.nope=1"], "unknown key 'models.simple.nope'"),
        (["simple", "--set", "batch_size=abc"], "batch_size must be an integer, got 'abc'"),
        (["simple", "--set", "img_size=1.5"], "img_size must be an integer, got 1.5"),
        (["simple", "--set", "jit_compile=maybe"], "jit_compile must be true or false"),
        (["simple", "--set", "max_epochs=0"], "max_epochs must be >= 1 or null, got 0"),
        (["simple", "--set", "max_epochs=-3"], "max_epochs must be >= 1 or null, got -3"),
        (["simple", "--set", "batch_size=0"], "batch_size must be >= 1, got 0"),
        (["simple", "--set", "batch_size=-1"], "batch_size must be >= 1, got -1"),
        (["simple", "--set", "models.simple.epochs=0"], "models.simple.epochs must be >= 1"),
        (["xception_transfer", "--set", "img_size=64"], "xception_transfer needs img_size >= 71"),
        (["simple", "--set", "img_size=72"], "img_size is 64 but profile"),
    ],
)
def test_bad_configuration(split64, tmp_path, capsys, argv, message):
    out = tmp_path / "model"
    model, *flags = argv
    line = cli_error(capsys, ["train", model, str(split64), str(out), *flags])
    assert message in line, line
    assert not (out / "history.json").exists() and not (out / "model.keras").exists()


def test_wrong_types_in_a_config_file(split64, tmp_path, capsys):
    cfg = tmp_path / "over.yaml"
    cfg.write_text("img_size: 64\nbatch_size: [8, 16]\n")
    line = cli_error(
        capsys, ["train", "simple", str(split64), str(tmp_path / "m"), "--config", str(cfg)]
    )
    assert f"{cfg}: batch_size must be an integer, got [8, 16]" in line


@pytest.mark.parametrize("where", ["local", "gs"])
def test_unreachable_weights_file(split64, tmp_path, capsys, where, request):
    if where == "gs":
        emulator = request.getfixturevalue("gcs_emulator")
        bucket = emulator.new_bucket()
        weights = f"gs://{bucket}/weights/mobilenet_v2.weights.h5"
    else:
        weights = str(tmp_path / "no" / "mobilenet_v2.weights.h5")
    out = tmp_path / "model"
    argv = ["train", "mobilenetv2_transfer", str(split64), str(out)]
    line = cli_error(capsys, [*argv, "--set", "img_size=64", "--set", f"weights={weights}"])
    assert line.startswith(f"error: {weights}: ") and "not found" in line, line
    assert not (out / "history.json").exists() and not (out / "model.keras").exists()
