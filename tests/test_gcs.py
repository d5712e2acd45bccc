"""Google Cloud Storage end to end, against a real GCS JSON API server (the emulator).

Ingest from a ``gs://`` folder or archive object, error lines for a missing bucket, an
empty prefix, permission denied and an unreachable server, tree copies both ways, and
the live TensorBoard log sync. Nothing here mocks the client: it speaks HTTP to
``gcp-storage-emulator`` (``gcs_emulator`` fixture) or, for failures the emulator cannot
produce, to a tiny loopback server that answers every request with one status code.
"""

from __future__ import annotations

import json
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import cli_error, jpeg_bytes, rgb_image, tree_hashes, write_image_folder
from PIL import Image

from cnnzoo.cli.main import main
from cnnzoo.core.errors import CnnzooError
from cnnzoo.data.ingest import ingest
from cnnzoo.storage import gcs, outputs
from cnnzoo.storage.logsync import LogSync


def _comparable(manifest: dict) -> dict:
    """The parts of a manifest that must not depend on where the data was read from."""
    files = sorted(
        (f["source_path"], f["path"], f["label"], f["split"], f["sha256"], f["width"])
        for f in manifest["files"]
    )
    return {
        "classes": manifest["classes"],
        "test_source": manifest["test_source"],
        "counts": manifest["counts"],
        "files": files,
        "skipped": manifest["skipped"],
    }


def test_ingest_gcs_folder_matches_local(gcs_emulator, tmp_path, capsys):
    src = write_image_folder(tmp_path / "animals", classes=("ant", "bee", "cow"), n_train=5)
    # Converted to RGB PNG on the way; a space in the name survives the object round trip.
    Image.new("L", (9, 7), 120).save(src / "train" / "ant" / "gray pic.png")
    (src / "train" / "bee" / ".DS_Store").write_bytes(b"junk")
    local = ingest(str(src), tmp_path / "local")

    bucket = gcs_emulator.new_bucket()
    gcs_emulator.upload_folder(src, bucket, "datasets/v1/animals")  # nested one level down
    b = gcs_emulator.client().bucket(bucket)
    b.blob("datasets/v1/animals/train/").upload_from_string(b"")  # a folder placeholder
    b.blob("datasets/v1/__MACOSX/._x.jpg").upload_from_string(b"junk")
    uri = f"gs://{bucket}/datasets/v1"
    capsys.readouterr()
    assert main(["ingest", uri, str(tmp_path / "remote")]) == 0
    out = capsys.readouterr()
    assert "3 classes, train 16, test 6, 0 skipped" in out.out
    assert f"downloaded 22/22 objects, {uri}" in out.err  # progress, junk left out
    remote = json.loads((tmp_path / "remote" / "manifest.json").read_text())
    assert remote["source"] == uri
    assert _comparable(remote) == _comparable(local)
    assert tree_hashes(tmp_path / "remote" / "images") == tree_hashes(tmp_path / "local" / "images")
    # The scratch download is gone: only what the test made is left beside DEST.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["animals", "local", "remote"]


@pytest.mark.parametrize("suffix", ["tar.gz", "zip"])
def test_ingest_gcs_archive_object(gcs_emulator, tmp_path, suffix):
    import shutil

    src = write_image_folder(tmp_path / "animals", n_train=3, n_test=2)
    if suffix == "zip":
        archive = Path(shutil.make_archive(str(tmp_path / "data"), "zip", tmp_path, "animals"))
    else:
        archive = tmp_path / "data.tar.gz"
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(src, arcname="animals")
    bucket = gcs_emulator.new_bucket()
    gcs_emulator.client().bucket(bucket).blob(f"raw/data.{suffix}").upload_from_filename(archive)
    m = ingest(f"gs://{bucket}/raw/data.{suffix}", tmp_path / "out")
    assert m["counts"] == {"train": {"ant": 3, "bee": 3}, "test": {"ant": 2, "bee": 2}}
    assert _comparable(m) == _comparable(ingest(str(src), tmp_path / "out_local"))


def test_ingest_to_gcs_dest(gcs_emulator, tmp_path):
    src = write_image_folder(tmp_path / "src", n_train=2, n_test=1)
    bucket = gcs_emulator.new_bucket()
    m = ingest(str(src), f"gs://{bucket}/ingested")
    objects = gcs_emulator.objects(bucket, "ingested/")
    assert json.loads(objects["ingested/manifest.json"]) == m
    assert sorted(objects) == sorted(
        ["ingested/manifest.json", "ingested/.cnnzoo.json"]
        + [f"ingested/{f['path']}" for f in m["files"]]
        + sorted({f"ingested/{f['decoded']['file']}" for f in m["files"] if "decoded" in f})
    )
    marker = json.loads(objects["ingested/.cnnzoo.json"])  # the commit marker, written last
    assert (marker["kind"], marker["state"]) == ("ingest", "complete")
    for f in m["files"]:
        assert objects[f"ingested/{f['path']}"] == (src / f["source_path"]).read_bytes()


def test_gcs_errors_name_the_uri(gcs_emulator, tmp_path, capsys):
    bucket = gcs_emulator.new_bucket()
    gcs_emulator.client().bucket(bucket).blob("data/train/ant/a.jpg").upload_from_string(
        jpeg_bytes(rgb_image())
    )
    dest = str(tmp_path / "out")
    cases = {
        "gs://no-such-bucket/d": "gs://no-such-bucket/d: bucket 'no-such-bucket' does not exist",
        f"gs://{bucket}/empty": f"gs://{bucket}/empty: no objects under this prefix",
        f"gs://{bucket}/dat": f"gs://{bucket}/dat: no objects under this prefix",  # not a folder
        f"gs://{bucket}/data/x.tar.gz": f"gs://{bucket}/data/x.tar.gz: no such object",
        "gs://no-such-bucket/x.zip": "gs://no-such-bucket/x.zip: bucket 'no-such-bucket' does not",
        "gs:///data": "no bucket name",
    }
    for uri, message in cases.items():
        assert message in cli_error(capsys, ["ingest", uri, dest]), uri
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no DEST, no scratch left


class _StatusServer:
    """A loopback HTTP server that answers every request with one status and JSON error."""

    def __init__(self, status: int, message: str) -> None:
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.requests += 1
                body = json.dumps({"error": {"code": status, "message": message}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _StatusServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def test_permission_denied(monkeypatch, tmp_path, capsys):
    # What GCS answers a caller without storage.objects.list / get (the emulator has no IAM).
    msg = "sa@p.iam.gserviceaccount.com does not have storage.objects.list access"
    with _StatusServer(403, msg) as server:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
        for uri in ("gs://locked/data", "gs://locked/data.tar.gz"):
            line = cli_error(capsys, ["ingest", uri, str(tmp_path / "out")])
            assert line.startswith(f"error: {uri}: permission denied"), line
            assert "bucket 'locked'" in line
        with pytest.raises(
            CnnzooError, match="gs://locked/out: permission denied while trying to upload"
        ):
            gcs.upload_tree(write_image_folder(tmp_path / "d", n_train=1), "gs://locked/out")
    assert not (tmp_path / "out").exists()


def test_server_errors_are_retried_then_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNZOO_GCS_RETRY_S", "2.5")
    with _StatusServer(503, "backend unavailable") as server:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
        start = time.monotonic()
        with pytest.raises(CnnzooError, match=r"gs://flaky/data: cannot list objects \(RetryError"):
            gcs.list_objects("gs://flaky/data")
        assert time.monotonic() - start < 30
        assert server.requests >= 2  # google-cloud-storage's retry policy is in use


def test_tree_round_trips(gcs_emulator, tmp_path, monkeypatch):
    tree = tmp_path / "run"
    (tree / "logs" / "resnet" / "train").mkdir(parents=True)
    (tree / "logs" / "resnet" / "train" / "events.out.tfevents.1").write_bytes(
        bytes(range(256)) * 9
    )
    (tree / "report").mkdir()
    (tree / "report" / "index.html").write_text("<html>ok</html>")
    (tree / "report" / "a figure.png").write_bytes(b"\x89PNG fake")
    (tree / "empty.txt").write_bytes(b"")
    (tree / "history.json").write_text('{"status": "ok"}')
    bucket = gcs_emulator.new_bucket()
    uri = f"gs://{bucket}/runs/r1"

    names = gcs.upload_tree(tree, uri + "/")
    assert names == sorted(f"runs/r1/{rel}" for rel in tree_hashes(tree))
    blob = gcs_emulator.client().bucket(bucket).get_blob("runs/r1/report/index.html")
    assert blob.content_type == "text/html"  # a report viewable straight from the bucket

    assert gcs.download_tree(uri, tmp_path / "back") == tmp_path / "back"
    assert tree_hashes(tmp_path / "back") == tree_hashes(tree)

    # copy_tree: gs -> gs, gs -> local (a folder of the user's only with overwrite; an
    # earlier copy is replaced), local -> local.
    with monkeypatch.context() as m:  # gs -> gs is copied server side, never downloaded
        m.setattr(outputs, "download_tree", lambda *a, **k: pytest.fail("downloaded"))
        outputs.copy_tree(uri, f"gs://{bucket}/runs/r2")
    r2 = gcs_emulator.objects(bucket, "runs/r2/")
    assert r2.pop("runs/r2/.cnnzoo.json") and r2 == {
        f"runs/r2/{k[len('runs/r1/') :]}": v
        for k, v in gcs_emulator.objects(bucket, "runs/r1/").items()
    }
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "stale.txt").write_text("old")
    with pytest.raises(CnnzooError, match="copy: exists and is not a cnnzoo export output"):
        outputs.copy_tree(f"gs://{bucket}/runs/r2", tmp_path / "copy")
    assert (tmp_path / "copy" / "stale.txt").read_text() == "old"
    outputs.copy_tree(f"gs://{bucket}/runs/r2", tmp_path / "copy", overwrite=True)
    assert tree_hashes(tmp_path / "copy") == tree_hashes(tree)
    outputs.copy_tree(f"gs://{bucket}/runs/r2", tmp_path / "copy")  # its own copy: replaced
    assert tree_hashes(tmp_path / "copy") == tree_hashes(tree)
    outputs.copy_tree(tree, tmp_path / "copy2")
    assert tree_hashes(tmp_path / "copy2") == tree_hashes(tree)

    with pytest.raises(CnnzooError, match=f"gs://{bucket}/nothing: no objects"):
        gcs.download_tree(f"gs://{bucket}/nothing", tmp_path / "none")
    with pytest.raises(CnnzooError, match="no such folder"):
        outputs.copy_tree(tmp_path / "missing", uri)
    with pytest.raises(CnnzooError, match="into a folder inside itself"):
        outputs.copy_tree(tree, tree / "report" / "copy")
    assert not (tmp_path / "none").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no partial folders


def test_download_file_is_atomic_and_names_missing_objects(gcs_emulator, tmp_path):
    bucket = gcs_emulator.new_bucket()
    gcs_emulator.client().bucket(bucket).blob("w/model.weights.h5").upload_from_string(b"w" * 1000)
    out = gcs.download_file(f"gs://{bucket}/w/model.weights.h5", tmp_path / "m.weights.h5")
    assert out.read_bytes() == b"w" * 1000
    with pytest.raises(CnnzooError, match=f"gs://{bucket}/w/nope.h5: no such object"):
        gcs.download_file(f"gs://{bucket}/w/nope.h5", tmp_path / "nope.h5")
    with pytest.raises(CnnzooError, match="not an object URI"):
        gcs.download_file(f"gs://{bucket}/w/", tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.weights.h5"]


def _wait_for(predicate, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_log_sync_uploads_while_running_and_flushes_at_exit(gcs_emulator, tmp_path):
    bucket = gcs_emulator.new_bucket()
    logs = tmp_path / "logs"  # does not exist yet: training creates it later
    events = logs / "m" / "train" / "events.out.tfevents.1"

    def remote() -> dict[str, bytes]:
        return gcs_emulator.objects(bucket, "tb/run/")

    with LogSync(logs, f"gs://{bucket}/tb/run", interval_s=0.2) as sync:
        events.parent.mkdir(parents=True)
        events.write_bytes(b"epoch1")
        assert _wait_for(lambda: remote().get("tb/run/m/train/events.out.tfevents.1") == b"epoch1")
        with events.open("ab") as f:  # TensorBoard appends to the same event file
            f.write(b"epoch2")
        assert _wait_for(
            lambda: remote()["tb/run/m/train/events.out.tfevents.1"] == b"epoch1epoch2"
        )
        # A sync that read the file while it grew uploads it once more (its stat was
        # taken before the append): let that one pass before counting.
        time.sleep(0.5)
        uploaded = sync.transferred
        time.sleep(0.6)  # several intervals with nothing new: nothing re-uploaded
        assert sync.transferred == uploaded
        # Written just before the block ends: only the final flush can carry it.
        (logs / "m" / "validation").mkdir()
        (logs / "m" / "validation" / "events.out.tfevents.2").write_bytes(b"last")
    assert remote() == {
        "tb/run/m/train/events.out.tfevents.1": b"epoch1epoch2",
        "tb/run/m/validation/events.out.tfevents.2": b"last",
    }
    assert sync.failures == 0


def test_log_sync_final_flush_and_failures(gcs_emulator, tmp_path, monkeypatch, capsys):
    bucket = gcs_emulator.new_bucket()
    logs = tmp_path / "logs"
    logs.mkdir()
    with LogSync(logs, f"gs://{bucket}/tb", interval_s=3600):
        (logs / "a.txt").write_text("a")
        time.sleep(0.2)
        assert gcs_emulator.objects(bucket) == {}  # the interval has not come round yet
    assert gcs_emulator.objects(bucket) == {"tb/a.txt": b"a"}

    # Background failures are warnings; a failed final flush raises naming the URI...
    sync = LogSync(logs, "gs://no-such-bucket/tb", interval_s=0.1).start()
    assert _wait_for(lambda: sync.failures >= 1)
    with pytest.raises(
        CnnzooError, match="gs://no-such-bucket/tb: bucket 'no-such-bucket' does not exist"
    ):
        sync.stop()
    assert "warning: log sync: gs://no-such-bucket/tb" in capsys.readouterr().err
    # ...unless the block is already failing: then the original exception wins.
    with pytest.raises(RuntimeError, match="training crashed"):
        with LogSync(logs, "gs://no-such-bucket/tb", interval_s=3600):
            raise RuntimeError("training crashed")
    assert "final flush failed" in capsys.readouterr().err
    with pytest.raises(CnnzooError, match="interval_s must be positive"):
        LogSync(logs, f"gs://{bucket}/tb", interval_s=0)
    with pytest.raises(CnnzooError, match="exactly one side must be gs://"):
        LogSync(logs, str(tmp_path / "x"))


def test_credentials_never_in_messages(monkeypatch, tmp_path):
    # A broken service-account key: the error names the problem, never the key material.
    key = tmp_path / "key.json"
    secret = "-----BEGIN PRIVATE KEY-----SECRETSECRET-----END PRIVATE KEY-----"
    key.write_text(json.dumps({"type": "service_account", "private_key": secret}))
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    with pytest.raises(CnnzooError, match="gs://b/data: no usable Google Cloud credentials") as e:
        gcs.gcs_client("gs://b/data")
    assert "SECRET" not in str(e.value)
    assert "\n" not in str(e.value)


def test_is_gcs_and_parse():
    assert gcs.is_gcs("gs://b/p") and not gcs.is_gcs("/data/gs://x")
    assert gcs.parse_gs_uri("gs://b/a/b/") == ("b", "a/b/")
    assert gcs.parse_gs_uri("gs://b") == ("b", "")


def test_log_sync_streams_real_tensorboard_events(gcs_emulator, tmp_path):
    # Event files as TensorBoard writes them (appended record by record): after each
    # "epoch" the copy in the bucket parses and holds that epoch, while training goes on.
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    bucket = gcs_emulator.new_bucket()
    logs = tmp_path / "logs" / "simple" / "train"
    logs.mkdir(parents=True)

    def remote_steps() -> dict[int, float]:
        copy = tmp_path / "copy.tfevents"
        objects = gcs_emulator.objects(bucket, "tb/")
        if len(objects) != 1:
            return {}
        copy.write_bytes(next(iter(objects.values())))
        return {
            e.step: e.summary.value[0].simple_value
            for e in LegacyEventFileLoader(str(copy)).Load()
            if e.summary.value
        }

    writer = EventFileWriter(str(logs))
    with LogSync(tmp_path / "logs", f"gs://{bucket}/tb", interval_s=0.1):
        for epoch in range(1, 4):
            value = summary_pb2.Summary.Value(tag="epoch_loss", simple_value=1.0 / epoch)
            writer.add_event(
                event_pb2.Event(step=epoch, summary=summary_pb2.Summary(value=[value]))
            )
            writer.flush()
            assert _wait_for(lambda e=epoch: e in remote_steps()), f"epoch {epoch} not synced"
        writer.close()
    assert remote_steps() == {1: 1.0, 2: 0.5, 3: pytest.approx(1 / 3)}
    (name,) = gcs_emulator.objects(bucket, "tb/")
    assert name.startswith("tb/simple/train/events.out.tfevents.")
