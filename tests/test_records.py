"""The evaluation record: one declared layout, checked on reading, versioned."""

from __future__ import annotations

import json

import pytest
from helpers import UNVERSIONED

from cnnzoo.core.errors import CnnzooError
from cnnzoo.evaluation.records import EvaluationRecord, read_evaluation, write_evaluation


def test_a_record_without_schema_version_is_read_as_version_1(tmp_path):
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(UNVERSIONED))
    record = read_evaluation(path)
    assert record.schema_version == 1
    assert (record.model, record.ok, record.test_accuracy) == ("mid", True, 0.75)
    assert record.confusion_matrix == [[1, 1], [0, 2]]
    assert record.to_dict() == {**UNVERSIONED, "schema_version": 1}


def test_written_records_carry_their_version(tmp_path):
    path = tmp_path / "out.json"
    write_evaluation(path, EvaluationRecord.failed("simple", "scratch", None, "NaN loss"))
    assert json.loads(path.read_text()) == {
        "model": "simple",
        "strategy": "scratch",
        "base": None,
        "status": "failed",
        "error": "NaN loss",
        "schema_version": 1,
    }
    assert read_evaluation(path) == EvaluationRecord(
        model="simple", status="failed", strategy="scratch", error="NaN loss"
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"schema_version": 2},
            "schema_version 2 is not one this cnnzoo reads (1); run "
            "'cnnzoo evaluate' again with this version",
        ),
        ({"schema_version": "1"}, "schema_version '1' is not one this cnnzoo reads"),
        ({"test_accuracy": "75%"}, "test_accuracy must be a number in [0, 1] or null, got '75%'"),
        ({"total_params": True}, "total_params must be an integer >= 1 or null, got True"),
        ({"status": "done"}, "status must be 'ok' or 'failed', got 'done'"),
        ({"classes": "circle"}, "classes must be a list of class names, got 'circle'"),
        ({"history": {"epoch": 1}}, "history must be a list of epoch records"),
        ({"per_class": []}, "per_class must be an object (class -> metrics), got []"),
        ({"confusion_matrix": [[1, 1]]}, "confusion_matrix must be 2x2 numbers"),
        ({"confusion_matrix": [[1, "x"], [0, 2]]}, "confusion_matrix must be a list of rows"),
        ({"test_acc": 0.7}, "unknown key 'test_acc'"),
    ],
)
def test_bad_records_name_file_key_and_value(tmp_path, change, message):
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps({**UNVERSIONED, **change}))
    with pytest.raises(CnnzooError) as exc:
        read_evaluation(path)
    assert str(exc.value).startswith(f"{path}: ")
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_required_keys_only_for_ok_records(tmp_path):
    data = {k: v for k, v in UNVERSIONED.items() if k != "gap"}
    with pytest.raises(CnnzooError, match=r"x\.json: missing key 'gap'"):
        EvaluationRecord.from_dict(data, "x.json")
    failed = EvaluationRecord.from_dict({"model": "mid", "status": "failed"}, "x.json")
    assert failed.error is None and failed.test_accuracy is None
    with pytest.raises(CnnzooError, match="x.json: must be a JSON object, got list"):
        EvaluationRecord.from_dict([UNVERSIONED], "x.json")
