"""Nothing of the user's is ever lost, nothing broken is ever accepted as good.

Every command refuses an existing output location that cnnzoo did not write (unless
``--overwrite``) and replaces its own earlier output atomically; one process at a time
writes an output and the next writer removes what killed ones left; damaged JPEG/PNG
data is skipped with a reason; split checks every file against the ingest manifest; a
diverging training run fails and is never ranked; a ``gs://`` output interrupted in the
middle of its upload is refused by its readers. All on data the tests make.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    cli_error,
    jpeg_bytes,
    notebook_profile,
    png_bytes,
    rgb_image,
    write_image_folder,
)

from cnnzoo.cli.main import main
from cnnzoo.core.errors import CnnzooError
from cnnzoo.data.ingest import ingest
from cnnzoo.data.split import split_dataset
from cnnzoo.storage.local import MARKER, output_kind, output_lock


def _users_folder(path: Path) -> dict[str, bytes]:
    """A folder of the user's own files; returns what must survive."""
    (path / "sub").mkdir(parents=True)
    (path / "thesis.txt").write_text("four years of work")
    (path / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return _snapshot(path)


def _snapshot(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.fixture
def raw(tmp_path):
    return write_image_folder(tmp_path / "raw", n_train=8, n_test=1)


@pytest.fixture
def ingested(tmp_path, raw):
    ingest(str(raw), tmp_path / "ingested")
    return tmp_path / "ingested"


# --- never delete what cnnzoo did not write --------------------------------------------


@pytest.mark.parametrize("command", ["ingest", "split", "demo-data"])
def test_a_folder_of_the_users_is_refused_then_replaced_only_with_overwrite(
    tmp_path, capsys, ingested, raw, command
):
    dest = tmp_path / "dest"
    before = _users_folder(dest)
    argv = {
        "ingest": ["ingest", str(raw), str(dest)],
        "split": ["split", str(ingested), str(dest), "--set", "img_size=32"],
        "demo-data": ["demo-data", str(dest), "--per-class-train", "2", "--per-class-test", "0"],
    }[command]
    kind = command
    line = cli_error(capsys, argv)
    assert line == (
        f"error: {dest}: exists and is not a cnnzoo {kind} output; "
        "choose another folder or pass --overwrite"
    )
    assert _snapshot(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    # An earlier output of the same command is replaced, atomically, without asking.
    assert main([*argv, "--overwrite"]) == 0
    assert output_kind(dest) == kind and not (dest / "thesis.txt").exists()
    assert main(argv) == 0
    assert output_kind(dest) == kind
    # ... but not an output of another kind.
    if command != "ingest":
        line = cli_error(capsys, ["ingest", str(raw), str(dest)])
        assert f"(it holds a cnnzoo {kind} output)" in line


def test_empty_folder_is_fine_file_and_dot_are_refused(tmp_path, capsys, raw, monkeypatch):
    (tmp_path / "empty").mkdir()
    assert main(["ingest", str(raw), str(tmp_path / "empty")]) == 0
    (tmp_path / "afile").write_text("mine")
    line = cli_error(capsys, ["ingest", str(raw), str(tmp_path / "afile")])
    assert line == f"error: {tmp_path / 'afile'}: exists and is not a folder; choose another folder"
    assert (tmp_path / "afile").read_text() == "mine"
    work = tmp_path / "work"
    before = _users_folder(work)
    monkeypatch.chdir(work)
    line = cli_error(capsys, ["ingest", str(raw), "."])
    assert "exists and is not a cnnzoo ingest output" in line
    assert _snapshot(work) == before
    line = cli_error(capsys, ["demo-data", "/"])
    assert "filesystem root" in line


def test_train_and_evaluate_outputs_of_the_user_are_refused(tmp_path, capsys, tiny_split):
    out = tmp_path / "out"
    before = _users_folder(out)
    line = cli_error(capsys, ["train", "simple", str(tiny_split), str(out)])
    assert line == (
        f"error: {out}: exists and is not a cnnzoo train output; "
        "choose another folder or pass --overwrite"
    )
    assert _snapshot(out) == before
    (tmp_path / "notes.json").write_text('{"mine": true}')
    line = cli_error(capsys, ["evaluate", str(out), str(tiny_split), str(tmp_path / "notes.json")])
    assert "notes.json: exists and is not a cnnzoo evaluation record" in line
    assert (tmp_path / "notes.json").read_text() == '{"mine": true}'


# --- one writer, and the leftovers of killed ones --------------------------------------

_HOLD = """
import sys, time
from cnnzoo.storage.local import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _hold_lock(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_first(tmp_path, capsys, raw, tiny_split):
    dest = tmp_path / "dest"
    holder = _hold_lock(dest)
    try:
        line = cli_error(capsys, ["ingest", str(raw), str(dest)])
        assert f"error: {dest}: another cnnzoo process is writing it (pid {holder.pid}" in line
        assert not dest.exists()
        out = tmp_path / "model"
        train_holder = _hold_lock(out)
        try:
            line = cli_error(capsys, ["train", "simple", str(tiny_split), str(out)])
            assert f"another cnnzoo process is writing it (pid {train_holder.pid}" in line
        finally:
            train_holder.kill()
            train_holder.wait()
        # A shared --logs folder: another OUT, the same model's logs, one writer.
        logs = tmp_path / "tb"
        logs_holder = _hold_lock(logs / "simple")
        try:
            other = tmp_path / "other-model"
            argv = ["train", "simple", str(tiny_split), str(other), "--logs", str(logs)]
            line = cli_error(capsys, argv)
            assert line.startswith(f"error: {logs / 'simple'}: another cnnzoo process is writing")
            assert f"(pid {logs_holder.pid}" in line
            assert not other.exists()
        finally:
            logs_holder.kill()
            logs_holder.wait()
    finally:
        holder.kill()  # SIGKILL: the kernel releases the flock
        holder.wait()
    assert main(["ingest", str(raw), str(dest)]) == 0
    assert not list(tmp_path.glob(".dest*"))  # the lock file goes with its last holder


def test_lock_is_reentrant_and_released(tmp_path):
    with output_lock(tmp_path / "x"):
        with output_lock(tmp_path / "x"):
            pass
        assert (tmp_path / ".x.cnnzoo-lock").exists()
    assert not (tmp_path / ".x.cnnzoo-lock").exists()


def test_killed_ingest_leftovers_are_removed_by_the_next_ingest(tmp_path):
    # Enough images that a kill lands while the step is decoding into its .partial folder.
    src = write_image_folder(tmp_path / "src", n_train=400, test_name=None, size=64)
    dest = tmp_path / "dest"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnzoo", "ingest", str(src), str(dest)],
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stderr:
        if line.startswith("ingest: train"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".dest."))
    assert any(n.endswith(".partial") for n in left), left
    assert not dest.exists()
    # Someone else's hidden folders beside DEST are none of cnnzoo's business.
    (tmp_path / ".dest.backup").mkdir()
    (tmp_path / ".destiny.abcd1234.partial").mkdir()
    ingest(str(src), dest)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".dest"))
    assert left == [".dest.backup", ".destiny.abcd1234.partial"]


# --- strict decoding -------------------------------------------------------------------


def _png_with_bad_crc() -> bytes:
    data = bytearray(png_bytes(rgb_image(24, seed=5)))
    i = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[i - 4 : i])
    data[i + 4 + length] ^= 0xFF
    return bytes(data)


def test_truncated_and_tolerated_corruption_is_skipped_with_a_reason(tmp_path):
    src = write_image_folder(tmp_path / "src", n_train=4, test_name=None, size=64)
    whole = jpeg_bytes(rgb_image(200, seed=9))
    png = png_bytes(rgb_image(24, seed=6))
    bad = {
        "half.jpg": whole[: len(whole) // 2] + b"\xff\xd9",  # cut, end-of-image appended
        "badcrc.png": _png_with_bad_crc(),
        "noiend.png": png[: png.rindex(b"IEND") - 4],
    }
    for name, data in bad.items():
        (src / "train" / "ant" / name).write_bytes(data)
    # Pillow alone accepts all three:
    from PIL import Image

    for data in bad.values():
        Image.open(io.BytesIO(data)).load()
    m = ingest(str(src), tmp_path / "out", max_bad_fraction=0.5)
    reasons = {s["path"]: s["reason"] for s in m["skipped"]}
    assert sorted(reasons) == [f"train/ant/{n}" for n in sorted(bad)]
    assert reasons["train/ant/half.jpg"].startswith("corrupt or truncated JPEG (libjpeg: ")
    assert reasons["train/ant/badcrc.png"].startswith("corrupt or truncated PNG")
    assert reasons["train/ant/noiend.png"].startswith("corrupt or truncated PNG")
    assert len(m["files"]) == 8


# --- readers verify what they read -----------------------------------------------------


def test_split_refuses_an_ingested_file_that_changed(tmp_path, capsys, ingested):
    manifest = json.loads((ingested / "manifest.json").read_text())
    victim = ingested / manifest["files"][3]["path"]
    victim.write_bytes(jpeg_bytes(rgb_image(16, seed=99)))  # a valid image, other bytes
    line = cli_error(capsys, ["split", str(ingested), str(tmp_path / "s"), "--set", "img_size=32"])
    assert line.startswith(f"error: {victim}: sha256 differs from {ingested / 'manifest.json'}")
    assert not (tmp_path / "s").exists()
    # Without the check (the benchmark's baseline) the same data splits.
    split_dataset(ingested, tmp_path / "s", img_size=16, verify=False)


# --- failure is failure ----------------------------------------------------------------


def test_diverging_training_fails_and_is_never_ranked(tiny_split, tmp_path, capsys):
    from cnnzoo.evaluation.evaluate import evaluate_model
    from cnnzoo.reporting.report import split_evaluations
    from cnnzoo.training.train import train_model

    profile = notebook_profile(["max_epochs=2", "models.simple.learning_rate=1e30"])
    hist = train_model("simple", tiny_split, tmp_path / "m", profile)
    assert hist["status"] == "failed", hist
    assert re.match(r"NonFiniteLoss: (val_)?loss is (nan|inf|-inf) after epoch 1: ", hist["error"])
    assert "training diverged" in hist["error"]
    assert not (tmp_path / "m" / "model.keras").exists()
    assert "Traceback" not in capsys.readouterr().err
    ev = evaluate_model(tmp_path / "m", tiny_split, tmp_path / "ev.json")
    assert ev["status"] == "failed" and "diverged" in ev["error"]
    rows, failed = split_evaluations([ev])
    assert rows == [] and [f["model"] for f in failed] == ["simple"]
    line = cli_error(
        capsys,
        ["train", "simple", str(tiny_split), str(tmp_path / "m"), "--profile", "full"]
        + sum((["--set", s] for s in ["img_size=72", "weights=null", "max_epochs=1"]), [])
        + ["--set", "models.simple.learning_rate=1e30"],
    )
    assert line.startswith("error: training simple failed: NonFiniteLoss: "), line


# --- Cloud Storage: commit markers, preemption, foreign prefixes -----------------------


def _marker(emulator, bucket: str, prefix: str) -> dict:
    return json.loads(emulator.objects(bucket, prefix)[f"{prefix}/{MARKER}"])


def test_gcs_rewrite_killed_mid_upload_is_refused_by_split(gcs_emulator, tmp_path, capsys):
    bucket = gcs_emulator.new_bucket()
    uri = f"gs://{bucket}/data"
    small = write_image_folder(tmp_path / "small", n_train=8, n_test=1)
    ingest(str(small), uri)
    assert _marker(gcs_emulator, bucket, "data")["state"] == "complete"
    split_dataset(uri, tmp_path / "s1", img_size=32)  # a complete output reads fine

    big = write_image_folder(tmp_path / "big", n_train=150, n_test=10)
    env = {**os.environ, "CNNZOO_GCS_WORKERS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnzoo", "ingest", str(big), uri],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    for line in proc.stderr:
        if line.startswith("gcs: uploaded"):  # the first 10% of the objects are up
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    objects = gcs_emulator.objects(bucket, "data/")
    assert "data/manifest.json" not in objects  # the old manifest went first
    assert json.loads(objects[f"data/{MARKER}"])["state"] == "writing"
    line = cli_error(capsys, ["split", uri, str(tmp_path / "s2"), "--set", "img_size=32"])
    assert line.startswith(f"error: {uri}: incomplete cnnzoo ingest output (state 'writing'")
    assert not (tmp_path / "s2").exists()

    # The writer is dead (same host, no such pid): the next ingest takes over and commits.
    m = ingest(str(big), uri)
    assert _marker(gcs_emulator, bucket, "data")["state"] == "complete"
    names = set(gcs_emulator.objects(bucket, "data/"))
    kept = {f"data/{f['decoded']['file']}" for f in m["files"] if "decoded" in f}
    # 320 images: two chunks of kept decodes (cnnzoo.data.ingest.CHUNK_ITEMS is 256)
    assert kept == {"data/decoded/pixels-00000.bin", "data/decoded/pixels-00001.bin"}
    assert names == {f"data/{f['path']}" for f in m["files"]} | kept | {
        "data/manifest.json",
        f"data/{MARKER}",
    }  # nothing of the first, smaller dataset is left
    info = split_dataset(uri, tmp_path / "s2", img_size=32)
    assert sum(v["count"] for v in info["splits"].values()) == len(m["files"])


def test_gcs_prefix_of_the_user_is_refused_and_live_writer_blocks(
    gcs_emulator, tmp_path, capsys, monkeypatch
):
    bucket = gcs_emulator.new_bucket()
    b = gcs_emulator.client().bucket(bucket)
    b.blob("mine/thesis.txt").upload_from_string(b"four years")
    src = write_image_folder(tmp_path / "src", n_train=2, n_test=1)
    line = cli_error(capsys, ["ingest", str(src), f"gs://{bucket}/mine"])
    assert line == (
        f"error: gs://{bucket}/mine: exists and is not a cnnzoo ingest output; "
        "choose another prefix or pass --overwrite"
    )
    assert gcs_emulator.objects(bucket, "mine/") == {"mine/thesis.txt": b"four years"}

    # A writer on another host that refreshed its marker a moment ago holds the prefix.
    marker = {"kind": "ingest", "state": "writing", "written": "now"}
    marker["writer"] = {"host": "some-other-pod", "pid": 1}
    b.blob(f"busy/{MARKER}").upload_from_string(json.dumps(marker))
    line = cli_error(capsys, ["ingest", str(src), f"gs://{bucket}/busy"])
    assert "another cnnzoo process is writing it (pid 1 on some-other-pod" in line
    # Once it has not refreshed it for longer than the stale limit, it is presumed dead.
    monkeypatch.setenv("CNNZOO_GCS_LOCK_STALE_S", "0.5")
    time.sleep(1.0)
    assert main(["ingest", str(src), f"gs://{bucket}/busy"]) == 0
    assert _marker(gcs_emulator, bucket, "busy")["state"] == "complete"

    # An export of a folder the user put there is refused the same way.
    from cnnzoo.storage.outputs import export_folder

    with pytest.raises(CnnzooError, match="mine: exists and is not a cnnzoo export output"):
        export_folder(src, f"gs://{bucket}", "mine")


def test_gcs_missing_object_is_named_not_the_bucket(gcs_emulator, tmp_path, capsys):
    bucket = gcs_emulator.new_bucket()
    gcs_emulator.client().bucket(bucket).blob("other.txt").upload_from_string(b"x")
    line = cli_error(capsys, ["ingest", f"gs://{bucket}/nope.tar.gz", str(tmp_path / "o")])
    assert line == f"error: gs://{bucket}/nope.tar.gz: no such object"
    line = cli_error(capsys, ["split", f"gs://{bucket}/nothing", str(tmp_path / "s")])
    assert line.startswith(f"error: gs://{bucket}/nothing: not a complete cnnzoo ingest output")


def test_gcs_output_generation_preconditions_refuse_a_racing_writer(
    gcs_emulator, tmp_path, monkeypatch
):
    """The two races the `writing` check cannot see, settled by if_generation_match:
    two writers that read "no marker" at the same moment, and a writer whose marker was
    taken over while it wrote (its `complete` must not land)."""
    from gcs_fixtures import precondition_client

    import cnnzoo.storage.outputs
    from cnnzoo.storage.outputs import GcsOutput

    bucket = gcs_emulator.new_bucket("race")
    client = precondition_client(gcs_emulator, bucket)
    uri = f"gs://{bucket}/data"
    files = tmp_path / "files"
    files.mkdir()
    (files / "manifest.json").write_text("{}\n")

    # Writer B reads the (absent) marker; before it writes its own, writer A takes the prefix.
    real_read = cnnzoo.storage.outputs._read_marker
    first = GcsOutput(uri, "ingest", client=client)

    def read_then_race(*args, **kwargs):
        found = real_read(*args, **kwargs)
        monkeypatch.setattr(cnnzoo.storage.outputs, "_read_marker", real_read)
        first.__enter__()
        return found

    monkeypatch.setattr(cnnzoo.storage.outputs, "_read_marker", read_then_race)
    second = GcsOutput(uri, "ingest", client=client)
    with pytest.raises(CnnzooError) as e:
        second.__enter__()
    assert str(e.value) == (
        f"{uri}: another cnnzoo process started writing it at the same moment; "
        "wait for it to finish"
    )
    # A goes on: its output commits, and B left nothing behind.
    first.upload(files)
    first.__exit__(None, None, None)
    assert _marker(gcs_emulator, bucket, "data")["state"] == "complete"
    assert set(gcs_emulator.objects(bucket, "data/")) == {"data/manifest.json", f"data/{MARKER}"}

    # A writer whose marker is rewritten by another process while it writes never commits.
    with pytest.raises(CnnzooError) as e:
        with GcsOutput(uri, "ingest", overwrite=True, client=client) as out:
            out.upload(files)
            gcs_emulator.client().bucket(bucket).blob(f"data/{MARKER}").upload_from_string(
                json.dumps({"kind": "ingest", "state": "writing", "written": "now"})
            )
    assert str(e.value) == (
        f"{uri}: another process took the commit marker over while this one was writing; "
        "write it again"
    )
    assert _marker(gcs_emulator, bucket, "data")["state"] == "writing"
