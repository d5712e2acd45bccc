"""Every command, every bad argument, every ``CNNZOO_*`` variable: one ``error:`` line.

Errors caused by input exit 1 with exactly one line ``error: <what and where>`` on
stderr and no traceback; argparse usage errors (a missing or ill-typed argument) exit 2
with the usage and one ``error:`` line. Each case is built here, in a few bytes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import cli_error, write_image_folder

from cnnzoo.cli.main import build_parser, main


def _usage_error(capsys, argv: list[str]) -> str:
    """Like ``cli_error`` for argparse's usage errors: exit 2, one ``error:`` line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert "Traceback" not in "\n".join(lines)
    return errors[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_split, trained_simple):
    """Paths every case may need: good inputs and broken ones."""
    base = tmp_path_factory.mktemp("world")
    w = {"base": base, "split": tiny_split}
    w["raw"] = write_image_folder(base / "raw", n_train=8, n_test=1)
    (base / "afile").write_text("not a folder")
    (base / "empty").mkdir()
    (base / "notjson" / "x").mkdir(parents=True)
    (base / "notjson" / "manifest.json").write_text("{nope")
    (base / "garbage.zip").write_bytes(b"PK\x03\x04 this is no zip")
    (base / "empty.tar.gz").write_bytes(b"")
    (base / "good.tar.gz").write_bytes(_archive_bytes(w["raw"]))
    (base / "cut.tar.gz").write_bytes(_archive_bytes(w["raw"])[:300])
    (base / "bad.yaml").write_text("img_size: [1, 2\n")
    with zipfile.ZipFile(base / "clash.zip", "w") as zf:  # 'a' both a file and a folder
        zf.writestr("data/train/ant/a", b"x")
        zf.writestr("data/train/ant/a/b.jpg", b"y")
    model = trained_simple  # read only: the broken copies below are copies
    w["model"] = model
    cut_model = base / "cut_model"
    shutil.copytree(model, cut_model)
    data = (cut_model / "model.keras").read_bytes()
    (cut_model / "model.keras").write_bytes(data[: len(data) // 2])
    w["cut_model"] = cut_model
    cut_split = base / "cut_split"
    shutil.copytree(tiny_split, cut_split)
    info = json.loads((cut_split / "split.json").read_text())
    for part in ("train", "test"):
        shard = cut_split / info["splits"][part]["shards"][0]
        shard.write_bytes(shard.read_bytes()[:-100])
    w["cut_split"] = cut_split
    return w


def _archive_bytes(folder: Path) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(folder, arcname="data")
    return buf.getvalue()


# (argv with {placeholders}, expected text in the one error line)
CASES = [
    # profile
    (["profile", "--profile", "nope"], "unknown profile 'nope'"),
    (["profile", "--set", "img_size"], "img_size"),
    (["profile", "--set", "img_size=-4"], "img_size must be >= "),
    (["profile", "--set", "val_fraction=7"], "val_fraction"),
    (["profile", "--set", "seed=-1"], "seed must be >= 0, got -1"),
    (["profile", "--set", "img_size=100000"], "img_size must be <= 4096"),
    (["profile", "--config", "{base}/missing.yaml"], "missing.yaml: file not found"),
    (["profile", "--config", "{base}/bad.yaml"], "bad.yaml: not valid YAML"),
    # demo-data
    (["demo-data", "{base}/d1", "--size", "3"], "size must be >= 16"),
    (["demo-data", "{base}/d2", "--per-class-train", "0"], "per_class_train must be >= 1"),
    (["demo-data", "{base}/afile"], "afile: exists and is not a folder"),
    (["demo-data", "{base}/afile/sub"], "afile"),
    (["demo-data", "{raw}"], "exists and is not a cnnzoo demo-data output"),
    (["demo-data", "gs://bkt/demo"], "DEST must be a local path"),
    # ingest
    (["ingest", "{base}/missing", "{base}/o1"], "missing: no such file or folder"),
    (["ingest", "{base}/afile", "{base}/o2"], "not a folder or a supported archive"),
    (["ingest", "{base}/empty", "{base}/o3"], "no train/ folder"),
    (["ingest", "{base}/garbage.zip", "{base}/o4"], "garbage.zip: not a readable zip archive"),
    (["ingest", "{base}/empty.tar.gz", "{base}/o5"], "empty.tar.gz: "),
    (["ingest", "{base}/cut.tar.gz", "{base}/o6"], "cut.tar.gz: "),
    (["ingest", "{base}/clash.zip", "{base}/o10"], "clash.zip"),
    (["ingest", "{raw}", "{base}/afile"], "afile: exists and is not a folder"),
    (["ingest", "{raw}", "{raw}/train"], "the output folder is inside the source"),
    (["ingest", "{raw}/train/ant", "{raw}"], "would replace the source"),
    (["ingest", "{raw}", "{base}/o7", "--max-bad-fraction", "2"], "max_bad_fraction must be"),
    (["ingest", "ftp://x/y", "{base}/o8"], "unsupported URI scheme 'ftp'"),
    (["ingest", "gs://", "{base}/o9"], "no bucket name"),
    # split
    (["split", "{base}/missing", "{base}/s1"], "manifest.json: file not found"),
    (["split", "{base}/notjson", "{base}/s2"], "manifest.json: not valid JSON"),
    (["split", "{split}", "{base}/s3"], "not an ingest output"),
    (["split", "{base}/notjson", "{base}/s4", "--set", "img_size=0"], "img_size must be >= "),
    # train
    (["train", "nope", "{split}", "{base}/t1"], "unknown model configuration 'nope'"),
    (["train", "simple", "{base}/missing", "{base}/t2"], "split.json: file not found"),
    (["train", "simple", "{split}", "{base}/afile"], "afile: exists and is not a folder"),
    (["train", "simple", "{split}", "{raw}"], "exists and is not a cnnzoo train output"),
    (["train", "simple", "{split}", "{base}/t3", "--set", "max_epochs=-1"], "max_epochs"),
    (["train", "simple", "{split}", "gs://bkt/out"], "OUT must be a local path"),
    (
        ["train", "simple", "{cut_split}", "{base}/t4", "--profile", "full"]
        + ["--set", "img_size=72", "--set", "weights=null", "--set", "max_epochs=1"],
        "a TFRecord shard is corrupt or truncated",
    ),  # fmt: skip
    # evaluate
    (["evaluate", "{base}/missing", "{split}", "{base}/e1.json"], "history.json: file not found"),
    (["evaluate", "{model}", "{split}", "{base}/e2.json", "--batch-size", "0"], "batch_size"),
    (["evaluate", "{cut_model}", "{split}", "{base}/e3.json"], "cannot load the model"),
    (["evaluate", "{model}", "{cut_split}", "{base}/e4.json"], "cannot read the test shards"),
    (["evaluate", "{model}", "{split}", "{base}/empty"], "empty: is a folder"),
    (["evaluate", "{model}", "{base}/missing", "{base}/e5.json"], "split.json: file not found"),
    (["evaluate", "{model}", "gs://bkt/split", "{base}/e6.json"], "SPLIT must be a local path"),
    # report and tensorboard
    (["report", "{base}/missing"], "missing"),
    (["report", "{base}/empty"], "empty"),
    (["tensorboard", "{base}/missing"], "missing"),
    # run, compile (the pipeline's own checks happen before any task runs)
    (["run", "--models", "nope"], "nope"),
    (["run", "--profile", "nope"], "unknown profile 'nope'"),
    (["compile", "--out", "{base}/afile/x.yaml"], "afile"),
    # upload, status (KFP API): checked before any request
    (["upload", "--host", "ftp://x"], "--host 'ftp://x': expected an http"),
    (["status", "r1", "--host", "localhost:8080"], "--host 'localhost:8080': expected an http"),
    (["status", "r1", "--host", "http://127.0.0.1:9", "--wait", "--poll", "0"], "--poll"),
    (["status", "r1", "--host", "http://127.0.0.1:9", "--ca-cert", "{base}/none"], "--ca-cert"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_arguments_give_one_error_line(world, capsys, argv, message):
    argv = [a.format(**world) for a in argv]
    line = cli_error(capsys, argv)
    assert message.format(**world) in line, line


USAGE = [
    ["models", "extra"],
    ["demo-data"],
    ["demo-data", "x", "--size", "big"],
    ["ingest", "only-one"],
    ["ingest", "a", "b", "--max-bad-fraction", "lots"],
    ["split", "a"],
    ["train", "simple"],
    ["evaluate", "a", "b"],
    ["evaluate", "a", "b", "c", "--batch-size", "x"],
    ["tensorboard", "--port", "x"],
    ["run", "--seed", "x"],
    ["nope"],
    [],
]


@pytest.mark.parametrize("argv", USAGE, ids=[" ".join(a) or "(none)" for a in USAGE])
def test_usage_errors_exit_2_with_one_error_line(capsys, argv):
    line = _usage_error(capsys, argv)
    assert len(line) > len("error: ")


def test_every_command_is_swept():
    """A new subcommand must get its bad-argument cases here."""
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)
    covered = {c[0][0] for c in CASES} | {u[0] for u in USAGE if u}
    assert commands - covered <= {"submit"}, commands - covered  # submit: tests/test_submit.py


ENV_CASES = [
    ("CNNZOO_MAX_EXTRACT_BYTES", "lots", ["ingest", "{base}/good.tar.gz", "{base}/v1"]),
    ("CNNZOO_MAX_EXTRACT_BYTES", "-1", ["ingest", "{base}/good.tar.gz", "{base}/v2"]),
    ("CNNZOO_GCS_WORKERS", "many", ["ingest", "gs://bkt/x", "{base}/v3"]),
    ("CNNZOO_GCS_WORKERS", "0.5", ["ingest", "gs://bkt/x", "{base}/v4"]),
    ("CNNZOO_GCS_RETRY_S", "-3", ["ingest", "gs://bkt/x", "{base}/v5"]),
    ("CNNZOO_GCS_RETRY_S", "nan", ["ingest", "gs://bkt/x", "{base}/v6"]),
    ("CNNZOO_GCS_LOCK_STALE_S", "soon", ["ingest", "{raw}", "gs://bkt/x"]),
    ("CNNZOO_CONFIG_DIR", "{base}/missing", ["profile"]),
    ("CNNZOO_CONFIG_DIR", "{base}/afile", ["profile"]),
    ("CNNZOO_KFP_TOKEN", "two words", ["status", "r1", "--host", "http://127.0.0.1:9"]),
    ("CNNZOO_KFP_COOKIES", "a=b\nc=d", ["status", "r1", "--host", "http://127.0.0.1:9"]),
    ("CNNZOO_IMAGE", "reg/x:1 extra", ["compile", "--out", "{base}/c1.yaml"]),
    ("CNNZOO_GPU_IMAGE", " ", ["compile", "--out", "{base}/c2.yaml"]),
]


@pytest.mark.parametrize("name, value, argv", ENV_CASES, ids=[f"{n}={v}" for n, v, _ in ENV_CASES])
def test_malformed_environment_variables(world, capsys, monkeypatch, name, value, argv):
    monkeypatch.setenv(name, value.format(**world))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # never reached
    if name != "CNNZOO_GCS_RETRY_S":
        monkeypatch.setenv("CNNZOO_GCS_RETRY_S", "1")  # were it reached, fail fast
    line = cli_error(capsys, [a.format(**world) for a in argv])
    assert line.startswith(f"error: {name}: "), line


def test_every_environment_variable_is_swept():
    names = set()
    for path in Path(__file__).resolve().parent.parent.joinpath("cnnzoo").rglob("*.py"):
        import re

        names |= set(re.findall(r"CNNZOO_[A-Z_]+[A-Z]", path.read_text()))
    assert names == {n for n, _, _ in ENV_CASES}


@pytest.mark.serial  # the signal's moment is read from the output: alone, not beside a worker
def test_interrupt_is_one_line_in_a_real_process(world, tmp_path):
    """SIGINT while a step works: exit 130, one ``error: interrupted`` line."""
    import signal

    # 12 chunks of work: the first progress line comes with most of them still to do, so
    # the signal lands mid-work even on a loaded machine (300 a class raced there).
    src = write_image_folder(tmp_path / "src", n_train=1500, test_name=None, size=64)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnzoo", "ingest", str(src), str(tmp_path / "out")],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("ingest: train"):
            proc.send_signal(signal.SIGINT)
            break
    lines += proc.stderr.readlines()
    assert proc.wait() == 130
    assert "Traceback" not in "".join(lines)
    assert [x for x in lines if x.startswith("error:")] == ["error: interrupted\n"], lines
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
