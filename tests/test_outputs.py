"""``cnnzoo.storage.outputs.claim_folder`` on local folders: what it takes, deletes and refuses."""

from __future__ import annotations

import errno
import shutil

import pytest

from cnnzoo.core.errors import CnnzooError
from cnnzoo.storage.local import output_kind, write_marker
from cnnzoo.storage.outputs import claim_folder


def test_replace_deletes_an_earlier_cnnzoo_folders_content(tmp_path):
    logs = tmp_path / "logs"
    claim_folder(str(logs), "tensorboard")
    (logs / "old.tfevents").write_bytes(b"old")
    claim_folder(str(logs), "tensorboard", replace=True, what="TensorBoard logs")
    assert not (logs / "old.tfevents").exists()
    assert output_kind(logs) == "tensorboard"


def test_a_missing_folder_is_created_and_marked(tmp_path):
    claim_folder(str(tmp_path / "a" / "b"), "tensorboard", replace=True)
    assert output_kind(tmp_path / "a" / "b") == "tensorboard"


def test_a_folder_of_another_kind_is_refused_and_kept(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("user's")
    with pytest.raises(CnnzooError, match="--overwrite"):
        claim_folder(str(other), "tensorboard", replace=True)
    assert (other / "mine.txt").read_text() == "user's"


def test_a_failed_delete_is_one_error_line_not_a_mix(tmp_path, monkeypatch):
    logs = tmp_path / "logs"
    logs.mkdir()
    write_marker(logs, "tensorboard")
    stuck = logs / "train" / "events.out.tfevents.1"
    stuck.parent.mkdir()
    stuck.write_bytes(b"old")
    real_rmtree = shutil.rmtree

    def rmtree_failing_on_one_file(path, *args, **kwargs):
        # Root may delete anything here, so the file system's refusal is simulated at the
        # one call the code makes; ignore_errors=True would swallow it.
        if kwargs.get("ignore_errors"):
            return real_rmtree(path, *args, **kwargs)
        raise PermissionError(errno.EACCES, "Permission denied", str(stuck))

    monkeypatch.setattr(shutil, "rmtree", rmtree_failing_on_one_file)
    with pytest.raises(CnnzooError) as e:
        claim_folder(str(logs), "tensorboard", replace=True, what="TensorBoard logs")
    message = str(e.value)
    assert "\n" not in message
    assert str(stuck) in message
    assert "cannot delete the old TensorBoard logs" in message
    assert "Permission denied" in message
