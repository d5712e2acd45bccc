"""Hostile input, round three: what cnnzoo touched, hung on, or answered with a traceback.

Every case here failed on the code before it (a traceback, a hang, a file of the user's
touched, a complete output downgraded) and now ends in one ``error:`` line, a listed
skip or a warning. Everything is tiny: bombs are a few hundred bytes, datasets a handful
of 16-pixel images.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import UNVERSIONED, cli_error, tree_hashes, write_image_folder

from cnnzoo.core.errors import CnnzooError
from cnnzoo.core.yamlconfig import read_yaml
from cnnzoo.storage.local import read_json

# --- one parser: bombs, bytes, nesting ------------------------------------------------

#: A "billion laughs": 9 values, each level 9 aliases of the one above: 9**9 once expanded.
_BOMB = (
    "a: &a ["
    + ",".join(['"lol"'] * 9)
    + "]\n"
    + "".join(
        f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


def test_alias_bomb_is_refused_not_expanded(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_BOMB + "max_epochs: *i\n")
    line = cli_error(capsys, ["train", "simple", "x", "y", "--config", str(bomb)])
    assert line == f"error: {bomb}: expands to more than 1000000 values (YAML aliases?); refused"
    # The same through --set (a value is YAML too) and a profile path.
    line = cli_error(capsys, ["train", "simple", "x", "y", "--profile", str(bomb)])
    assert "expands to more than" in line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"max_epochs: \xff\xfe 3\n", "not UTF-8 text (byte 0xff at offset 12)"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "a binary file (NUL byte at offset 7)"),
        (b"max_epochs: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested deeper than 100 levels"),
    ],
    ids=["not-utf8", "binary", "nested"],
)
@pytest.mark.parametrize("option", ["--config", "--profile"])
def test_unreadable_config_is_one_line(tmp_path, capsys, content, message, option):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    line = cli_error(capsys, ["train", "simple", "x", "y", option, str(path)])
    assert line.startswith(f"error: {path}: {message}"), line


def test_placement_file_goes_through_the_same_parser(tmp_path):
    from cnnzoo.orchestration.placement import load_placement

    path = tmp_path / "cluster.yaml"
    path.write_bytes(b"pools: \xc3\x28\n")
    with pytest.raises(CnnzooError, match="not UTF-8 text"):
        load_placement(path)
    path.write_text(_BOMB + "pools: *i\n")
    with pytest.raises(CnnzooError, match="expands to more than"):
        load_placement(path)


def test_deep_json_artifact_is_one_line(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CnnzooError, match=r"manifest.json: nested deeper than 100 levels"):
        read_json(path)
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(CnnzooError, match=r"manifest.json: not UTF-8 text \(byte 0xff"):
        read_json(path)
    with pytest.raises(CnnzooError, match=r"is a folder"):
        read_yaml(tmp_path)


def test_a_huge_int_in_an_error_is_not_printed(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    big.write_text("seed: " + "9" * 5000 + "\n")
    line = cli_error(capsys, ["train", "simple", "x", "y", "--config", str(big)])
    assert line.startswith(f"error: {big}: not valid YAML (Exceeds the limit"), line
    line = cli_error(capsys, ["train", "simple", "x", "y", "--set", "seed=" + "9" * 4000])
    assert line == f"error: --set seed={'9' * 4000}: seed must be <= 4294967295"
    line = cli_error(capsys, ["train", "simple", "x", "y", "--set", "seed=" + "9" * 5000])
    assert line == f"error: --set seed={'9' * 5000}: seed must be an integer"


# --- seeds and numbers -------------------------------------------------------------------


@pytest.mark.parametrize("seed", [2**32, 10**20])
def test_seed_beyond_numpy_range_is_refused_before_training(capsys, seed):
    line = cli_error(capsys, ["train", "simple", "x", "y", "--set", f"seed={seed}"])
    assert line == f"error: --set seed={seed}: seed must be <= 4294967295, got {seed}"


def test_run_seed_beyond_range_is_refused_before_the_run(tmp_path, capsys):
    line = cli_error(capsys, ["run", "--seed", str(10**20), "--out", str(tmp_path / "runs")])
    assert "seed must be <= 4294967295" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("value", [".inf", ".nan"])
def test_non_finite_profile_numbers_are_refused(capsys, value):
    line = cli_error(capsys, ["train", "simple", "x", "y", "--set", f"min_delta={value}"])
    # NaN fails the bound first (every comparison with NaN is false): one line either way.
    assert line.startswith(f"error: --set min_delta={value}: min_delta must be "), line
    assert line.endswith(("a finite number, got inf", ">= 0, got nan")), line


def test_a_run_whose_every_model_failed_fails(tmp_path, monkeypatch):
    from cnnzoo.orchestration import local_run
    from cnnzoo.orchestration.study import Study
    from cnnzoo.storage.layout import REPORT_FILES, RUN_RECORD

    def fake_pipeline(package, arguments, run_dir, console, runner, threads_per_task=None):
        report = Path(run_dir) / "report"
        report.mkdir()
        failed = [{"model": "simple", "status": "failed", "error": "ValueError: seed"}]
        comparison = {"rows": [], "pipeline_checks": [], "failed": failed}
        (report / REPORT_FILES["json"]).write_text(json.dumps(comparison))
        return report

    monkeypatch.setattr(local_run, "compile_pipeline", lambda *a, **k: None)
    monkeypatch.setattr(local_run, "run_pipeline_locally", fake_pipeline)
    study = Study(data_uri="demo", models=("simple",))
    with pytest.raises(CnnzooError, match=r"every model failed \(first: simple: ValueError"):
        local_run.run_local(study, runs_dir=tmp_path / "runs")
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir() and not p.is_symlink()]
    assert json.loads((run_dir / RUN_RECORD).read_text())["status"] == "failed"


# --- a failed write never downgrades a complete gs:// output ------------------------------


def test_failed_gcs_ingest_leaves_a_complete_output_complete(gcs_emulator, tmp_path, capsys):
    from cnnzoo.data.ingest import ingest
    from cnnzoo.storage.outputs import require_complete

    src = write_image_folder(tmp_path / "src", n_train=2, n_test=1)
    bucket = gcs_emulator.new_bucket()
    dest = f"gs://{bucket}/x"
    ingest(str(src), dest)
    before = gcs_emulator.objects(bucket, "x/")
    line = cli_error(capsys, ["ingest", str(tmp_path / "typo"), dest])
    assert "typo" in line
    assert gcs_emulator.objects(bucket, "x/") == before  # the marker too, byte for byte
    assert require_complete(dest, "ingest")["state"] == "complete"
    # A failure into an empty prefix leaves it empty, not a 'failed' marker of nothing.
    cli_error(capsys, ["ingest", str(tmp_path / "typo"), f"gs://{bucket}/new"])
    assert gcs_emulator.objects(bucket, "new/") == {}


def test_a_write_that_began_and_failed_is_marked_failed(gcs_emulator, tmp_path):
    from cnnzoo.storage.outputs import GcsOutput, require_complete

    bucket = gcs_emulator.new_bucket()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("1")
    with GcsOutput(f"gs://{bucket}/o", "export") as out:
        out.upload(tmp_path / "a")
    with pytest.raises(RuntimeError), GcsOutput(f"gs://{bucket}/o", "export") as out:
        out.upload(tmp_path / "a")
        raise RuntimeError("killed half way")
    with pytest.raises(CnnzooError, match="state 'failed'"):
        require_complete(f"gs://{bucket}/o", "export")


# --- ownership: nothing of the user's is written, replaced or deleted -----------------


def test_dest_reaching_into_the_source_through_a_symlink_is_refused(tmp_path, capsys):
    src = write_image_folder(tmp_path / "src", n_train=2, n_test=1)
    (tmp_path / "link").symlink_to(src)
    before = tree_hashes(src)
    line = cli_error(capsys, ["ingest", str(src), str(tmp_path / "link" / "out")])
    assert (
        line == f"error: {tmp_path / 'link' / 'out'}: the output folder is inside the source {src}"
    )
    # The source through the link, the output inside the real folder.
    line = cli_error(capsys, ["ingest", str(tmp_path / "link"), str(src / "out")])
    assert "the output folder is inside the source" in line
    assert tree_hashes(src) == before and not (src / "out").exists()


def test_a_folder_named_demo_is_not_the_builtin_set(tmp_path, capsys, monkeypatch):
    from cnnzoo.data.sources import DEMO_URI, is_demo

    monkeypatch.chdir(tmp_path)
    assert is_demo("demo") and is_demo(DEMO_URI)
    write_image_folder(tmp_path / "demo", n_train=2, n_test=1)
    line = cli_error(capsys, ["ingest", "demo", str(tmp_path / "out")])
    assert line == (
        f"error: demo: names both the built-in demo dataset and {tmp_path / 'demo'}; "
        "pass ./demo for that path or cnnzoo:demo for the built-in set"
    )
    assert not (tmp_path / "out").exists()
    # The path spelled as a path is that path; the built-in set has its own name.
    from cnnzoo.data.ingest import ingest

    manifest = ingest("./demo", tmp_path / "out")
    assert manifest["classes"] == ["ant", "bee"]
    assert is_demo(DEMO_URI) and not is_demo("./demo")


@pytest.fixture
def user_checkpoint(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "latest.json").write_text('{"my": "own notes"}\n')
    return folder


def test_train_leaves_a_checkpoint_folder_it_did_not_write(
    tiny_split, tmp_path, capsys, user_checkpoint
):
    before = tree_hashes(user_checkpoint)
    argv = ["train", "simple", str(tiny_split), str(tmp_path / "out")]
    line = cli_error(capsys, [*argv, "--profile", "demo", "--checkpoint", str(user_checkpoint)])
    assert line == (
        f"error: {user_checkpoint}: holds 'latest.json', which is not part of a cnnzoo "
        "checkpoint; choose another --checkpoint folder or pass --overwrite"
    )
    assert tree_hashes(user_checkpoint) == before
    (user_checkpoint / "latest.json").unlink()
    (user_checkpoint / "thesis.tex").write_text("x")
    line = cli_error(capsys, [*argv, "--checkpoint", str(user_checkpoint)])
    assert "holds 'thesis.tex'" in line


def test_train_checkpoint_that_is_a_file_fails_before_training(tiny_split, tmp_path, capsys):
    path = tmp_path / "ckpt.txt"
    path.write_text("mine")
    argv = ["train", "simple", str(tiny_split), str(tmp_path / "out"), "--checkpoint", str(path)]
    line = cli_error(capsys, [*argv, "--overwrite"])
    assert line == (
        f"error: {path}: exists and is not a folder; a checkpoint is a folder "
        "(choose another --checkpoint)"
    )
    assert path.read_text() == "mine" and not (tmp_path / "out" / "history.json").exists()


# --- resource limits up front -------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--size", "100000"], "size must be <= 4096 pixels, got 100000"),
        (["--per-class-train", "10000000"], "at most 100000 images per class and split"),
    ],
)
def test_demo_data_refuses_what_would_not_fit(tmp_path, capsys, argv, message):
    line = cli_error(capsys, ["demo-data", str(tmp_path / "d"), *argv])
    assert line == f"error: demo data: {message}" or message in line
    assert not (tmp_path / "d").exists()


def test_placement_numbers_beyond_their_range_are_one_line(tmp_path):
    from cnnzoo.orchestration.placement import load_placement

    path = tmp_path / "cluster.yaml"
    path.write_text("parallelism: 99999999999999999999999\n")
    with pytest.raises(CnnzooError) as err:
        load_placement(path)
    assert str(err.value) == (
        f"{path}: parallelism must be an integer 0..10000 (0: no cap), got 99999999999999999999999"
    )


# --- hand-edited artifacts: the declared schemas --------------------------------------


@pytest.fixture
def ingested_copy(tmp_path):
    from cnnzoo.data.ingest import ingest

    src = write_image_folder(tmp_path / "src", n_train=3, n_test=2)
    ingest(str(src), tmp_path / "ing")
    return tmp_path / "ing"


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(classes="ant"), "manifest.json: classes must be a list, got 'ant'"),
        (lambda m: m.update(files={}), "manifest.json: files must be a list, got {}"),
        (lambda m: m["files"][0].update(width="wide"), ": width must be an integer, got 'wide'"),
        (lambda m: m["files"][0].update(split=1), ": split must be one of train, test, got 1"),
        (lambda m: m["files"][0].update(label=["ant"]), ": label must be a string"),
        (
            lambda m: m["files"][0]["decoded"].update(width=10**9),
            "decoded: 1000000000x16 is larger than the image (16x16)",
        ),
    ],
    ids=["classes", "files", "width", "split", "label", "decoded-width"],
)
def test_hand_edited_manifest_is_one_line(ingested_copy, tmp_path, capsys, edit, message):
    _edit_json(ingested_copy / "manifest.json", edit)
    line = cli_error(capsys, ["split", str(ingested_copy), str(tmp_path / "s")])
    assert line.startswith(f"error: {ingested_copy / 'manifest.json'}"), line
    assert line.endswith(message) or message in line, line
    assert not (tmp_path / "s").exists()


def test_hand_edited_split_info_is_one_line(tiny_split, tmp_path):
    import shutil

    from cnnzoo.data.loader import read_split_info

    split = tmp_path / "split"
    shutil.copytree(tiny_split, split)
    for edit, message in (
        (lambda s: s.update(img_size="72"), "img_size must be an integer, got '72'"),
        (lambda s: s["splits"]["train"].update(count=[3]), "splits.train.count must be an int"),
        (lambda s: s.update(splits=[]), "splits: expected a mapping, got []"),
    ):
        shutil.copy(tiny_split / "split.json", split / "split.json")
        _edit_json(split / "split.json", edit)
        with pytest.raises(CnnzooError) as err:
            read_split_info(split)
        assert str(err.value).startswith(f"{split / 'split.json'}: {message}"), err.value


@pytest.mark.parametrize(
    ("history", "config", "message"),
    [
        ({"model": 7, "status": "ok"}, None, "history.json: model must be a string, got 7"),
        ({"model": "simple", "status": "done"}, None, "status must be one of ok, failed"),
        (
            {"model": "simple", "status": "ok", "best_val_accuracy": 7},
            None,
            "best_val_accuracy must be <= 1 or null, got 7",
        ),
        (
            {"model": "simple", "status": "ok", "pipeline_check": "yes"},
            None,
            "pipeline_check must be true or false, got 'yes'",
        ),
        (
            {"model": "simple", "status": "ok"},
            "model: simple\nsplit: {classes: circle, img_size: 72}\n",
            "config.yaml: split.classes must be a list, got 'circle'",
        ),
        (
            {"model": "simple", "status": "ok"},
            "model: simple\nsplit: {classes: [a, b], img_size: 72}\nprofile: {seed: -1}\n",
            "config.yaml: profile.seed must be >= 0 or null, got -1",
        ),
    ],
    ids=["model", "status", "accuracy", "pipeline_check", "classes", "seed"],
)
def test_hand_edited_train_output_is_one_line(
    tiny_split, tmp_path, capsys, history, config, message
):
    model_dir = tmp_path / "trained"
    model_dir.mkdir()
    (model_dir / "history.json").write_text(json.dumps(history))
    (model_dir / "config.yaml").write_text(config or "model: simple\n")
    line = cli_error(
        capsys, ["evaluate", str(model_dir), str(tiny_split), str(tmp_path / "e.json")]
    )
    assert line.startswith(f"error: {model_dir}/"), line
    assert message in line, line
    assert not (tmp_path / "e.json").exists()


# --- the report over numbers no evaluation writes ----------------------------------------

_RECORD = UNVERSIONED  # an evaluation.json as cnnzoo writes it (tests/helpers.py)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"test_accuracy": float("nan")},
            "test_accuracy must be a number in [0, 1] or null, got nan",
        ),
        ({"test_loss": float("inf")}, "test_loss must be a finite number >= 0 or null, got inf"),
        ({"train_accuracy": -0.5}, "train_accuracy must be a number in [0, 1] or null, got -0.5"),
        ({"val_accuracy": 1.5}, "val_accuracy must be a number in [0, 1] or null, got 1.5"),
        ({"total_params": 0}, "total_params must be an integer >= 1 or null, got 0"),
        ({"images_per_s": -1}, "images_per_s must be a finite number >= 0 or null, got -1"),
        ({"test_accuracy_ci": [0.9, 0.1]}, "test_accuracy_ci must be [low, high] fractions"),
        (
            {"confusion_matrix": [[1, -1], [0, 2]]},
            "confusion_matrix must be a list of rows of counts",
        ),
        (
            {"per_class": {"circle": {"precision": float("nan")}}},
            "per_class.circle.precision must be a number in [0, 1] or null, got nan",
        ),
    ],
    ids=["nan", "inf", "negative", "above-1", "zero-params", "rate", "ci", "matrix", "per-class"],
)
def test_report_over_impossible_numbers_is_one_line(tmp_path, capsys, change, message):
    path = tmp_path / "mid.json"
    path.write_text(json.dumps({**_RECORD, **change}))  # NaN and Infinity as Python writes them
    line = cli_error(capsys, ["report", "--evaluations", str(path), "--out", str(tmp_path / "r")])
    assert line == f"error: {path}: {message}" or line.startswith(f"error: {path}: {message}")
    assert not (tmp_path / "r").exists()


def test_a_full_disk_during_training_is_one_line(tiny_split, tmp_path, capsys, monkeypatch):
    import errno

    from cnnzoo.training.checkpoint import Checkpoint

    def full(self, state, arrays):
        path = f"{self.location}/state-epoch0001.npz"
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(Checkpoint, "save", full)
    out = tmp_path / "out"
    argv = ["train", "simple", str(tiny_split), str(out), "--set", "max_epochs=1"]
    line = cli_error(capsys, [*argv, "--set", "img_size=72"])
    assert line == (
        f"error: {out}/checkpoint/state-epoch0001.npz: No space left on device while training "
        "simple; make room and run it again (it resumes from the last checkpoint)"
    )
    assert not (out / "history.json").exists()  # no record that looks finished


# --- per-image failures stay per-image --------------------------------------------------


def test_a_file_that_cannot_be_written_is_skipped_not_fatal(tmp_path, capsys):
    from helpers import png_bytes, rgb_image

    src = write_image_folder(tmp_path / "src", n_train=3, n_test=1)
    gray = png_bytes(rgb_image().convert("L"))  # converted to RGB PNG on ingest
    long_name = "n" * 255  # no suffix: converted as <name>.png, over the 255-byte limit
    (src / "train" / "ant" / long_name).write_bytes(gray)
    (src / "train" / "bee" / "x.gif").write_bytes(gray)  # converted as x.png ...
    (src / "train" / "bee" / "x.png").mkdir()  # ... where a folder x.png/ is
    (src / "train" / "bee" / "x.png" / "y.jpg").write_bytes(
        (src / "train/bee/bee000.jpg").read_bytes()
    )
    from cnnzoo.cli.main import main

    assert main(["ingest", str(src), str(tmp_path / "out"), "--max-bad-fraction", "0.5"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    skipped = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert skipped[f"train/ant/{long_name}"] == (
        f"cannot be written as {long_name}.png (File name too long)"
    )
    clash = [p for p in skipped if p.startswith("train/bee/x.")]
    assert len(clash) == 1 and "cannot be written as x.png" in skipped[clash[0]]
    assert manifest["counts"]["train"] == {"ant": 3, "bee": 4}
    assert "skipped 2 unreadable file(s)" in capsys.readouterr().err


# --- data-quality warnings: printed, in the manifest and split.json, in the report -------


def test_test_images_copied_from_training_are_a_warning(tmp_path, capsys):
    import shutil

    from cnnzoo.data.ingest import ingest

    src = write_image_folder(tmp_path / "src", n_train=3, n_test=2)
    for label in ("ant", "bee"):
        shutil.rmtree(src / "val" / label)
        shutil.copytree(src / "train" / label, src / "val" / label)  # the test set IS train
    manifest = ingest(str(src), tmp_path / "out")
    (warning,) = manifest["warnings"]
    assert warning == (
        "6 test image(s) are byte-identical to training images (e.g. val/ant/ant000.jpg = "
        "train/ant/ant000.jpg): the test accuracy overstates"
    )
    assert f"warning: ingest: {warning}" in capsys.readouterr().err


def test_a_near_empty_class_is_a_warning(tmp_path, capsys):
    from cnnzoo.data.ingest import ingest

    src = write_image_folder(tmp_path / "src", n_train=30, n_test=1)
    for p in sorted((src / "train" / "bee").iterdir())[2:]:
        p.unlink()
    manifest = ingest(str(src), tmp_path / "out")
    assert manifest["warnings"] == [
        "class bee is near-empty: 2 training image(s) (the largest class has 30)"
    ]
    # A balanced dataset has no warnings key at all (its manifest is as before).
    balanced = ingest(str(write_image_folder(tmp_path / "ok", n_train=3)), tmp_path / "ok-out")
    assert "warnings" not in balanced


def test_exif_rotated_jpeg_is_applied_and_said(tmp_path, capsys):
    from PIL import Image

    from cnnzoo.data.ingest import ingest

    src = write_image_folder(tmp_path / "src", n_train=3, n_test=1)
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    img.save(src / "train" / "ant" / "rotated.jpg", format="JPEG", exif=exif)
    manifest = ingest(str(src), tmp_path / "out")
    entry = next(f for f in manifest["files"] if f["source_path"] == "train/ant/rotated.jpg")
    assert entry["path"] == "images/train/ant/rotated.png"
    assert (entry["width"], entry["height"]) == (20, 40)  # upright
    assert entry["note"] == "EXIF orientation 6 applied (saved upright as PNG)"
    assert Image.open(tmp_path / "out" / entry["path"]).size == (20, 40)
    assert manifest["warnings"] == [
        "1 image(s) carry an EXIF orientation, applied (saved upright as PNG; e.g. "
        "train/ant/rotated.jpg)"
    ]


def test_a_class_without_validation_images_is_a_warning(tmp_path, capsys):
    from cnnzoo.data.ingest import ingest
    from cnnzoo.data.split import split_dataset

    src = write_image_folder(tmp_path / "src", n_train=7, n_test=1)
    for p in sorted((src / "train" / "ant").iterdir())[3:]:
        p.unlink()
    ingest(str(src), tmp_path / "ing")
    capsys.readouterr()
    info = split_dataset(tmp_path / "ing", tmp_path / "s", img_size=16)
    assert info["splits"]["val"]["per_class"] == {"ant": 0, "bee": 1}  # 3 x 0.15 rounds to 0
    assert info["warnings"] == [
        "no val image of class(es) ant: their val figures mean nothing; add images or change "
        "the fractions"
    ]
    assert f"warning: split: {info['warnings'][0]}" in capsys.readouterr().err
    assert json.loads((tmp_path / "s" / "split.json").read_text())["warnings"] == info["warnings"]


def test_report_shows_data_warnings_and_escapes_markdown(tmp_path):
    from cnnzoo.reporting.report import build_report

    hostile = "<img src=x onerror=alert(1)>[x](javascript:alert(1))`"
    failed = {"model": hostile, "status": "failed", "error": "<script>alert(1)</script>"}
    context = {"data": {"warnings": ["class <b>bee</b> is near-empty"]}}
    paths = build_report([{**_RECORD, "model": "mid"}, failed], tmp_path / "r", context)
    md = Path(paths["markdown"]).read_text(encoding="utf-8")
    # The name only inside a code span (shown literally), fenced past its backtick.
    line = f"- `` {hostile} ``: &lt;script>alert(1)&lt;/script>"
    assert line in md.splitlines()
    assert "<script" not in md and "<b>" not in md and md.count("<img") == 1
    assert "## Data warnings\n\n- class &lt;b>bee&lt;/b> is near-empty\n" in md
    html = Path(paths["html"]).read_text(encoding="utf-8")
    assert "<li>warning: class &lt;b&gt;bee&lt;/b&gt; is near-empty</li>" in html


def test_report_over_a_hand_edited_manifest_is_one_line(tmp_path, capsys):
    path = tmp_path / "mid.json"
    path.write_text(json.dumps(_RECORD))
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"classes": "ant", "files": []}))
    argv = ["report", "--evaluations", str(path), "--data", str(data), "--out", str(tmp_path / "r")]
    line = cli_error(capsys, argv)
    assert line == f"error: {data / 'manifest.json'}: classes must be a list, got 'ant'"
    assert not (tmp_path / "r").exists()
