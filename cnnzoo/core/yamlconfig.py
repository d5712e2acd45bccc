"""Reading cnnzoo's YAML config files, merging them, and one-line messages for bad values.

Profiles (:mod:`cnnzoo.config.profile`) and placements (:mod:`cnnzoo.orchestration.placement`) are
pydantic
models with ``extra="forbid"``; this module is what they share:

- :func:`read_yaml`: a YAML mapping from a file, or a :class:`~cnnzoo.core.errors.CnnzooError`
  naming the file (missing, not YAML, not a mapping);
- :func:`read_json` and :func:`parse_json`: the same for JSON (the artifacts the steps
  exchange). Every file cnnzoo reads goes through :func:`read_text` and
  :func:`check_shape`: at most ``max_bytes`` (:data:`MAX_CONFIG_BYTES` for a config,
  :data:`MAX_ARTIFACT_BYTES` for an artifact), UTF-8, no NUL byte, nested at most
  :data:`MAX_DEPTH` levels and at most :data:`MAX_VALUES` values once YAML aliases are
  expanded (a "billion laughs" file is one line, not a hang);
- :func:`deep_merge` and :func:`parse_override` (``a.b=value`` from ``--set``);
- :func:`validate`: ``model.model_validate(data)`` whose ``ValidationError`` becomes one
  ``CnnzooError`` line naming the source, the dotted key and the value, e.g.
  ``configs/profiles/x.yaml: epochs must be an integer, got 'ten'``;
- :func:`invalid`: the error a model's own validator raises about a dotted key;
- :data:`Number`: a float field that takes numbers and numeric strings, not bools.

A field's ``json_schema_extra={"expected": ...}`` is what the message says it must be,
where the constraint alone would not tell a reader (``"a Kubernetes quantity like 500m"``);
its ``description`` says what the field means (the generated reference pages show it).
"""

from __future__ import annotations

import copy
import json
import os
import reprlib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AllowInfNan, BaseModel, BeforeValidator, ValidationError
from pydantic_core import PydanticCustomError

from cnnzoo.core.errors import CnnzooError, one_line

M = TypeVar("M", bound=BaseModel)
#: A value whose repr is longer is not echoed (a pasted key file must not reach a log).
_SHOWN_MAX = 70


def _not_bool(value: Any) -> Any:
    # pydantic's lax float takes True as 1.0; a float field here takes numbers and the
    # strings YAML 1.1 leaves unparsed ("1e-3"), never a bool.
    if isinstance(value, bool):
        raise PydanticCustomError("float_type", "Input should be a valid number")
    return value


#: A float field: a finite number or a numeric string, not a bool, NaN or infinity.
Number = Annotated[float, BeforeValidator(_not_bool), AllowInfNan(False)]


#: The largest config file (profile, override file, placement) cnnzoo reads.
MAX_CONFIG_BYTES = 4 * 1024**2
#: The largest JSON artifact (a manifest of a million images is about 400 MiB).
MAX_ARTIFACT_BYTES = 2 * 1024**3
#: The deepest nesting of mappings and lists in any file cnnzoo reads.
MAX_DEPTH = 100
#: The most values (mappings, lists and scalars, aliases expanded) in a config file.
MAX_VALUES = 1_000_000


def read_text(
    path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_CONFIG_BYTES
) -> str:
    """The text of ``path``: at most ``max_bytes``, UTF-8, no NUL byte.

    Raises:
        CnnzooError: missing, unreadable, a folder, too large, binary or not UTF-8
            (names the file and, for a bad byte, its offset).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise CnnzooError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise CnnzooError(f"{path}: is a folder, expected a {what}") from None
    except OSError as e:
        raise CnnzooError(f"{path}: cannot read ({e.strerror or one_line(e)})") from None
    if len(data) > max_bytes:
        raise CnnzooError(f"{path}: larger than {max_bytes} bytes; not a {what} cnnzoo reads")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CnnzooError(
            f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from None
    nul = text.find("\0")
    if nul >= 0:
        raise CnnzooError(f"{path}: a binary file (NUL byte at offset {nul}), expected a {what}")
    return text


def check_shape(data: Any, where: str, max_values: int = MAX_VALUES) -> Any:
    """``data`` if it nests at most :data:`MAX_DEPTH` levels and holds at most
    ``max_values`` values counted as a reader would walk them (a YAML alias counts again
    wherever it is used); walks no further than the limits.

    Raises:
        CnnzooError: ``<where>: nested deeper than ...`` or ``<where>: expands to more
            than ... values``.
    """
    stack: list[tuple[Any, int]] = [(data, 0)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > max_values:
            raise CnnzooError(
                f"{where}: expands to more than {max_values} values (YAML aliases?); refused"
            )
        if isinstance(value, dict):
            children: Any = [*value.keys(), *value.values()]
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth >= MAX_DEPTH:
            raise CnnzooError(f"{where}: nested deeper than {MAX_DEPTH} levels; refused")
        stack.extend((c, depth + 1) for c in children)
    return data


def _safe_yaml(text: str, where: str) -> Any:
    try:
        return check_shape(yaml.safe_load(text), where)
    except (yaml.YAMLError, ValueError) as e:  # ValueError: an int of over 4,300 digits
        raise CnnzooError(f"{where}: not valid YAML ({one_line(e, first=True)})") from None
    except RecursionError:
        raise CnnzooError(f"{where}: nested deeper than {MAX_DEPTH} levels; refused") from None


def read_yaml(path: str | os.PathLike, what: str = "file") -> dict[str, Any]:
    """Read a YAML mapping (an empty file is ``{}``), through :func:`read_text` and
    :func:`check_shape`.

    Args:
        path: the file.
        what: what the file is, for the not-found message (``"placement file"``).

    Raises:
        CnnzooError: missing file, not UTF-8 text, too large or too deep, malformed YAML,
            or not a mapping (names the file).
    """
    path = Path(path)
    data = _safe_yaml(read_text(path, what), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CnnzooError(f"{path}: expected a mapping at the top level")
    return data


def parse_json(text: str, where: str, max_values: int | None = None) -> Any:
    """``json.loads(text)`` nested at most :data:`MAX_DEPTH` levels (and, with
    ``max_values``, at most that many values), or one :class:`CnnzooError` line naming
    ``where``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CnnzooError(f"{where}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise CnnzooError(f"{where}: nested deeper than {MAX_DEPTH} levels; refused") from None
    # JSON has no aliases: every value takes at least a byte of the bounded text.
    return check_shape(data, where, max_values if max_values is not None else MAX_ARTIFACT_BYTES)


def read_json(
    path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_ARTIFACT_BYTES
) -> Any:
    """A JSON file through :func:`read_text` and :func:`parse_json`.

    Raises:
        CnnzooError: missing, unreadable, not UTF-8, too large, too deep or not JSON
            (names the file).
    """
    return parse_json(read_text(path, what, max_bytes), str(path))


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``over`` merged in, recursively for nested mappings."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(item: str) -> dict[str, Any]:
    """Turn ``a.b.c=value`` into ``{"a": {"b": {"c": value}}}`` (value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CnnzooError(f"override {item!r}: expected key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError):  # ValueError: an int of over 4,300 digits
        value = raw
    except RecursionError:
        raise CnnzooError(f"override {key!r}: nested deeper than {MAX_DEPTH} levels") from None
    check_shape(value, f"override {key!r}")
    out: dict[str, Any] = {}
    cur = out
    parts = key.split(".")
    for part in parts[:-1]:
        cur[part] = {}
        cur = cur[part]
    cur[parts[-1]] = value
    return out


def invalid(key: str, problem: str) -> PydanticCustomError:
    """The error a model validator raises about ``key`` (dotted, relative to the model).

    :func:`validate` prints it as ``<key>: <problem>`` (or ``<problem>`` for ``key=""``).
    """
    return PydanticCustomError("cnnzoo_invalid", "{problem}", {"key": key, "problem": problem})


def validate(
    model: type[M],
    data: Any,
    source: str | Callable[[tuple[str, ...]], str] | None = None,
) -> M:
    """``model.model_validate(data)``; its first error as one :class:`CnnzooError` line.

    Args:
        model: the pydantic model.
        data: plain data (parsed YAML or JSON).
        source: what to name before the key: a file name, or a function of the dotted
            key's parts giving the file or ``--set`` item that set it; None for none.

    Raises:
        CnnzooError: ``[<source>: ]<message>`` naming the key and the value.
    """
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        loc, message = describe(model, first)
        where = source(loc) if callable(source) else source
        raise CnnzooError(f"{where}: {message}" if where else message) from None


def describe(model: type[BaseModel], error: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """One pydantic error as (the dotted key's parts, a message naming key and value)."""
    loc = tuple(str(p) for p in error["loc"])
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "cnnzoo_invalid":
        loc = loc + tuple(p for p in ctx["key"].split(".") if p)
        key = _dotted(loc)
        return loc, f"{key}: {ctx['problem']}" if key else ctx["problem"]
    key = _dotted(loc)
    if kind == "extra_forbidden":
        valid = ", ".join(_fields_at(model, loc[:-1]))
        return loc, f"unknown key '{key}' (valid: {valid})"
    if kind == "missing":
        return loc, f"{key}: missing"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        if not key:
            return loc, "expected a mapping at the top level"
        return loc, f"{key}: expected a mapping, got {_shown(value)}"
    annotation, info = _walk(model, loc)
    extra = (info.json_schema_extra or {}) if info is not None else {}
    description = extra.get("expected")
    secret = extra.get("secret")
    nullable = " or null" if _nullable(annotation) else ""
    type_error = kind.split("_")[0] in ("int", "float", "bool")
    if description and not type_error:
        expected = f"must be {description}"
    elif kind in ("literal_error", "enum"):
        choices = typing.get_args(_strip_optional(annotation))
        expected = f"must be one of {', '.join(map(str, choices))}"
    elif kind in _BOUNDS:
        op, name = _BOUNDS[kind]
        bound = ctx[name]
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        expected = f"must be {op} {bound}{nullable}"
    elif kind in ("string_too_short", "too_short"):
        expected = "must not be empty"
    elif kind == "string_pattern_mismatch":
        expected = f"must match {ctx['pattern']}"
    else:
        expected = f"must be {_TYPES.get(kind.split('_')[0], kind.replace('_', ' '))}{nullable}"
    text = None if secret else _short_repr(value)
    return loc, f"{key} {expected}" + (f", got {text}" if text is not None else "")


def _dotted(loc: tuple[str, ...]) -> str:
    """``("pools", "gpu", "tolerations", "0")`` as ``pools.gpu.tolerations[0]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if part.isdigit() and out else (f".{part}" if out else part)
    return out


_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}
_TYPES = {
    "int": "an integer",
    "float": "a number",
    "finite": "a finite number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "tuple": "a list",
}


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 3, 8, 8, 8
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = _SHOWN_MAX


def _short_repr(value: Any) -> str | None:
    """``repr(value)`` where it is at most :data:`_SHOWN_MAX` characters, else None;
    never builds the repr of a whole large value (an expanded alias bomb, a huge int)."""
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int too long to print
        return None
    if "..." in text and "..." not in (value if isinstance(value, str) else ""):
        return None
    return text if len(text) <= _SHOWN_MAX else None


def _shown(value: Any) -> str:
    text = _short_repr(value)
    return text if text is not None else "a long value"


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _strip_annotated(args[0])
    return _strip_annotated(annotation)


def _strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _nullable(annotation: Any) -> bool:
    return type(None) in typing.get_args(_strip_annotated(annotation))


def _walk(model: type[BaseModel], loc: tuple[str, ...]) -> tuple[Any, Any]:
    """The annotation at ``loc`` below ``model``, and its FieldInfo where ``loc`` ends at a
    model's field (None where not found)."""
    annotation: Any = model
    info = None
    for part in loc:
        annotation = _strip_optional(annotation)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(part)
            if info is None:
                return None, None
            annotation = info.annotation
        elif origin is dict:
            annotation, info = typing.get_args(annotation)[1], None
        elif origin in (list, tuple):
            annotation, info = typing.get_args(annotation)[0], None
        else:
            return None, None
    return annotation, info


def _fields_at(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """The keys a mapping at ``loc`` may hold (the fields of the model found there)."""
    annotation, _ = _walk(model, loc)
    annotation = _strip_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [
            f.alias or name
            for name, f in annotation.model_fields.items()
            if not (f.json_schema_extra or {}).get("internal")
        ]
    return []
