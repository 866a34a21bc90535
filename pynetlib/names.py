"""Validation of the names and ids that callers give the CNM layer."""

from __future__ import annotations

import re

from pynetlib.errors import InvalidContainerIDError, InvalidIDError, InvalidNameError

NAME_MAX = 64
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_ID_RE = re.compile(r"^[0-9a-f]{64}\Z")
_CID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
CONTAINER_ID_MAX = 128


def check_name(name: object, what: str = "name") -> str:
    """Network and endpoint names: 1..64 of [A-Za-z0-9_.-], starting alphanumeric."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidNameError(name, f"a {what} cannot be empty or blank")
    if len(name) > NAME_MAX:
        raise InvalidNameError(name, f"a {what} is at most {NAME_MAX} characters")
    if not _NAME_RE.fullmatch(name):
        raise InvalidNameError(name, f"a {what} is [A-Za-z0-9][A-Za-z0-9_.-]*")
    return name


def check_id(ident: object) -> str:
    if not isinstance(ident, str) or not ident:
        raise InvalidIDError(ident, "an id cannot be empty")
    return ident


def is_id(ident: str) -> bool:
    return bool(_ID_RE.fullmatch(ident))


def check_container_id(cid: object) -> str:
    """Container ids as CNI restricts them: [A-Za-z0-9][A-Za-z0-9_.-]*, at most 128."""
    if not isinstance(cid, str) or not cid:
        raise InvalidContainerIDError(cid, "a container id cannot be empty")
    if len(cid) > CONTAINER_ID_MAX or not _CID_RE.fullmatch(cid):
        raise InvalidContainerIDError(cid, "a container id is [A-Za-z0-9][A-Za-z0-9_.-]*, "
                                           f"at most {CONTAINER_ID_MAX} characters")
    return cid
