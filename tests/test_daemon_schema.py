"""The daemon's pure parts: the schema definitions only use what the validator checks,
error categories map to the documented statuses and back (the client), and the
validator's edge cases."""

from __future__ import annotations

import re

import pytest

from pynetlib import errors
from pynetlib.client import error_from_reply
from pynetlib.daemon import schema
from pynetlib.daemon.openapi import document
from pynetlib.daemon.routes import ROUTES
from pynetlib.daemon.status import status_of
from pynetlib.daemon.validation import MAX_DEPTH, check, decode_body, depth

IMPLEMENTED = {"type", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern",
               "properties", "required", "additionalProperties", "items", "maxItems",
               "maxProperties", "$ref"}


def _walk(s):
    if isinstance(s, dict):
        yield s
        for key in ("items", "additionalProperties"):
            if isinstance(s.get(key), dict):
                yield from _walk(s[key])
        for sub in s.get("properties", {}).values():
            yield from _walk(sub)


def test_every_schema_keyword_is_one_the_validator_checks():
    schemas = list(schema.DEFINITIONS.values())
    for route in ROUTES:
        schemas += list(route.params.values()) + list(route.query.values())
    for s in schemas:
        for sub in _walk(s):
            assert set(sub) <= IMPLEMENTED, sorted(set(sub) - IMPLEMENTED)


def test_the_document_names_only_defined_schemas():
    doc = document()
    text = repr(doc)
    for name in schema.DEFINITIONS:
        assert name in doc["components"]["schemas"]
    for ref in re.findall(r"#/components/schemas/(\w+)", text):
        assert ref in schema.DEFINITIONS


@pytest.mark.parametrize("exc, status, category", [
    (errors.BadRequestError("x"), 400, "BadRequest"),
    (errors.InvalidNameError("x"), 400, "BadRequest"),
    (errors.ForbiddenError("x"), 403, "Forbidden"),
    (errors.IPAlreadyAllocatedError("10.0.0.1"), 403, "Forbidden"),
    (errors.NoSuchNetworkError("n"), 404, "NotFound"),
    (errors.TimeoutError("x"), 408, "Timeout"),
    (errors.NotImplementedByDriverError("x"), 501, "NotImplemented"),
    (errors.NoServiceError("x"), 503, "NoService"),
    (errors.NoAvailableIPsError("p"), 503, "NoService"),
    (errors.InternalError("x"), 500, "Internal"),
    (errors.KernelError(1, "link add", "x"), 500, "Internal"),
    (ValueError("a bug"), 500, "Internal"),
    (TimeoutError("not pynetlib's"), 500, "Internal"),
])
def test_categories_map_to_statuses_and_the_client_maps_them_back(exc, status, category):
    assert status_of(exc) == (status, category)
    back = error_from_reply(status, {"message": str(exc), "category": category})
    expected = {400: errors.BadRequestError, 403: errors.ForbiddenError,
                404: errors.NotFoundError, 408: errors.TimeoutError,
                501: errors.NotImplementedByDriverError, 503: errors.NoServiceError,
                500: errors.InternalError}[status]
    assert type(back) is expected and str(back) == str(exc)


def test_client_maps_a_reply_without_category_by_status():
    assert isinstance(error_from_reply(404, None), errors.NotFoundError)
    assert isinstance(error_from_reply(418, "teapot"), errors.InternalError)


def test_depth_and_decoding_limits():
    assert depth(1) == 0 and depth({}) == 1 and depth({"a": [{"b": []}]}) == 4
    nested = "x"
    for _ in range(MAX_DEPTH):
        nested = [nested]
    assert depth(decode_body(repr(nested).replace("'", '"').encode())) == MAX_DEPTH
    with pytest.raises(errors.BadRequestError, match="nested deeper"):
        decode_body(("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)).encode())
    with pytest.raises(errors.BadRequestError, match="not UTF-8"):
        decode_body(b'{"name": "\xff"}')
    with pytest.raises(errors.BadRequestError, match="Infinity is not JSON"):
        decode_body(b'{"mtu": Infinity}')


def test_patterns_match_the_whole_string():
    name = schema.DEFINITIONS["NetworkCreate"]["properties"]["name"]
    check("web-1", name, "name")
    for bad in ("web\n", "-web", "we b", ""):
        with pytest.raises(errors.BadRequestError):
            check(bad, name, "name")
