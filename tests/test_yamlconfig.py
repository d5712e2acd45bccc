"""cnnzoo.core.yamlconfig: the one YAML reader and the one-line messages of a failed validation."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from cnnzoo.core.errors import CnnzooError
from cnnzoo.core.yamlconfig import Number, deep_merge, invalid, read_yaml, validate


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["a", "b"] = "a"
    token: str = Field("t", pattern=r"^t", json_schema_extra={"secret": True})


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: StrictInt = Field(1, ge=1)
    rate: Number | None = Field(None, gt=0)
    items: list[_Item] = []
    named: dict[str, _Item] = {}


def _message(data, source=None) -> str:
    with pytest.raises(CnnzooError) as err:
        validate(_Doc, data, source)
    return str(err.value)


def test_read_yaml_names_the_file(tmp_path):
    with pytest.raises(CnnzooError, match=r"missing.yaml: placement file not found$"):
        read_yaml(tmp_path / "missing.yaml", what="placement file")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(CnnzooError, match=r"bad.yaml: not valid YAML \("):
        read_yaml(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(CnnzooError, match=r"list.yaml: expected a mapping at the top level"):
        read_yaml(listed)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_yaml(empty) == {}


def test_messages_name_key_and_value():
    assert _message({"count": "ten"}, "f.yaml") == "f.yaml: count must be an integer, got 'ten'"
    assert _message({"count": 0}) == "count must be >= 1, got 0"
    assert _message({"rate": True}) == "rate must be a number or null, got True"
    assert _message({"rate": "0"}) == "rate must be > 0 or null, got '0'"
    assert _message({"items": [{}, {"kind": "c"}]}) == (
        "items[1].kind must be one of a, b, got 'c'"
    )
    assert _message({"named": {"x": {"size": 1}}}) == (
        "unknown key 'named.x.size' (valid: kind, token)"
    )
    assert _message({"named": {"x": 3}}) == "named.x: expected a mapping, got 3"
    assert _message([1]) == "expected a mapping at the top level"


def test_a_secret_or_long_value_is_not_echoed():
    assert _message({"items": [{"token": "LEAK"}]}) == "items[0].token must match ^t"
    long = "x" * 200
    assert _message({"count": long}) == "count must be an integer"


def test_the_source_is_asked_with_the_failing_keys_parts():
    asked = []

    def source(loc):
        asked.append(loc)
        return "--set named.y.kind=z"

    assert _message({"named": {"y": {"kind": "z"}}}, source).startswith("--set named.y.kind=z: ")
    assert asked == [("named", "y", "kind")]


def test_a_models_own_check_names_its_key():
    class Checked(BaseModel):
        pools: dict[str, int] = {}

        def model_post_init(self, _):
            if "gpu" not in self.pools:
                raise invalid("pools.gpu", "missing (the training pool)")

    with pytest.raises(CnnzooError) as err:
        validate(Checked, {"pools": {}}, "c.yaml")
    assert str(err.value) == "c.yaml: pools.gpu: missing (the training pool)"


def test_deep_merge_merges_nested_mappings_without_touching_its_inputs():
    base = {"a": {"b": 1, "c": 2}, "d": [1]}
    over = {"a": {"c": 3}, "d": [2]}
    assert deep_merge(base, over) == {"a": {"b": 1, "c": 3}, "d": [2]}
    assert base == {"a": {"b": 1, "c": 2}, "d": [1]}
