"""Strict checks of what a client sends: the body's size, its JSON, its nesting, and its
shape against the definitions in ``pynetlib.daemon.schema``.

Every refusal is a :class:`~pynetlib.errors.BadRequestError` whose message names the
field (``body.port_mapping[0].port: ...``), so the daemon answers 400 with it.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from pynetlib.daemon.schema import DEFINITIONS, REF_PREFIX, Schema
from pynetlib.errors import BadRequestError

MAX_BODY = 64 * 1024
MAX_DEPTH = 8

_JSON_TYPES = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def type_name(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _JSON_TYPES[name](value):
            return name
    return type(value).__name__


# -- decoding -------------------------------------------------------------------------------

def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise BadRequestError(f"body: duplicate field {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise BadRequestError(f"body: {name} is not JSON")


def depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            children = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        deepest = max(deepest, d)
        stack.extend((c, d + 1) for c in children)
    return deepest


def decode_body(raw: bytes) -> Any:
    """The JSON value of a request body, refused when too big, malformed or too deep."""
    if len(raw) > MAX_BODY:
        raise BadRequestError(f"body: larger than {MAX_BODY} bytes")
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates,
                           parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise BadRequestError("body: not UTF-8") from None
    except RecursionError:
        raise BadRequestError(f"body: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:
        raise BadRequestError(f"body: not valid JSON ({e})") from None
    if depth(value) > MAX_DEPTH:
        raise BadRequestError(f"body: nested deeper than {MAX_DEPTH} levels")
    return value


# -- schema checks ------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _pattern(text: str) -> re.Pattern:
    # JSON Schema's "$" is the end of the string; Python's also matches before a final
    # newline, so anchor with \Z instead.
    if text.endswith("$") and not text.endswith("\\$"):
        text = text[:-1] + r"\Z"
    return re.compile(text)


def resolve(schema: Schema) -> Schema:
    while "$ref" in schema:
        target = schema["$ref"]
        if not target.startswith(REF_PREFIX):
            raise ValueError(f"unsupported reference {target!r}")
        schema = DEFINITIONS[target[len(REF_PREFIX):]]
    return schema


def check(value: Any, schema: Schema, where: str) -> None:
    """Raise BadRequestError naming ``where`` (and the field) if ``value`` does not fit."""
    schema = resolve(schema)
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        if not any(_JSON_TYPES[t](value) for t in allowed):
            raise BadRequestError(f"{where}: expected {' or '.join(allowed)}, "
                                  f"got {type_name(value)}")
    if "enum" in schema and value not in schema["enum"]:
        raise BadRequestError(f"{where}: must be one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        _check_string(value, schema, where)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, schema, where)
    elif isinstance(value, list):
        _check_array(value, schema, where)
    elif isinstance(value, dict):
        _check_object(value, schema, where)


def _check_string(value: str, schema: Schema, where: str) -> None:
    if len(value) < schema.get("minLength", 0):
        raise BadRequestError(f"{where}: must not be empty" if schema["minLength"] == 1
                              else f"{where}: shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise BadRequestError(f"{where}: longer than {schema['maxLength']} characters")
    if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
        raise BadRequestError(f"{where}: {value!r} does not match {schema['pattern']}")


def _check_number(value: float, schema: Schema, where: str) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        raise BadRequestError(f"{where}: less than {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise BadRequestError(f"{where}: more than {schema['maximum']}")


def _check_array(value: list, schema: Schema, where: str) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise BadRequestError(f"{where}: more than {schema['maxItems']} items")
    if "items" in schema:
        for i, item in enumerate(value):
            check(item, schema["items"], f"{where}[{i}]")


def _check_object(value: dict, schema: Schema, where: str) -> None:
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        raise BadRequestError(f"{where}: more than {schema['maxProperties']} fields")
    props = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            raise BadRequestError(f"{where}: missing required field {name!r}")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in props:
            check(item, props[name], f"{where}.{name}")
        elif extra is False:
            known = ", ".join(sorted(props)) or "none"
            raise BadRequestError(f"{where}: unknown field {name!r} (known fields: {known})")
        elif isinstance(extra, dict):
            check(item, extra, f"{where}.{name}")
