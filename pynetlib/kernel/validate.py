"""Input checks for the kernel layer: everything is rejected before any system call."""

from __future__ import annotations

import ipaddress
import re

from pynetlib.errors import BadRequestError, InvalidNameError

IFNAMSIZ = 16
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")
_NS_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}\Z")
MTU_MIN, MTU_MAX = 68, 65535


def ifname(name: object) -> bytes:
    """A Linux interface name: 1 to 15 bytes, no '/', ':', white space or NUL, not . or .."""
    if not isinstance(name, str):
        raise InvalidNameError(name, "an interface name must be a str")
    raw = name.encode("utf-8", "strict")
    if not raw:
        raise InvalidNameError(name, "an interface name cannot be empty")
    if len(raw) >= IFNAMSIZ:
        raise InvalidNameError(name, f"an interface name is at most {IFNAMSIZ - 1} bytes")
    if name in (".", "..") or any(c in name for c in "/:\0") or any(c.isspace() for c in name):
        raise InvalidNameError(name, "an interface name cannot contain '/', ':', NUL or spaces")
    return raw


def netns_name(name: object) -> bytes:
    """A namespace file name: [A-Za-z0-9][A-Za-z0-9_.-]*, at most 255 characters."""
    if not isinstance(name, str) or not _NS_NAME_RE.match(name):
        raise InvalidNameError(name, "a namespace name is [A-Za-z0-9][A-Za-z0-9_.-]*, "
                                     "at most 255 characters")
    return name.encode()


def mac(value: object) -> bytes:
    """A MAC address 'aa:bb:cc:dd:ee:ff' as 6 bytes."""
    if not isinstance(value, str) or not _MAC_RE.match(value):
        raise BadRequestError(f"invalid MAC address {value!r}: expected aa:bb:cc:dd:ee:ff")
    raw = bytes.fromhex(value.replace(":", ""))
    if raw[0] & 1:
        raise BadRequestError(f"invalid MAC address {value!r}: a multicast address")
    if raw == b"\0" * 6:
        raise BadRequestError(f"invalid MAC address {value!r}: all zeros")
    return raw


def mtu(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not MTU_MIN <= value <= MTU_MAX:
        raise BadRequestError(f"invalid MTU {value!r}: an integer from {MTU_MIN} to {MTU_MAX}")
    return value


def alias(value: object) -> bytes:
    if not isinstance(value, str):
        raise BadRequestError(f"invalid interface alias {value!r}: must be a str")
    raw = value.encode()
    if len(raw) > 255 or b"\0" in raw:
        raise BadRequestError("invalid interface alias: at most 255 bytes, no NUL")
    return raw


def u32(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise BadRequestError(f"invalid {what} {value!r}: an integer from 0 to 2**32-1")
    return value


def interface(value: object) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """An address with its prefix: an ipaddress interface, or a string like '10.0.0.2/16'."""
    if isinstance(value, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return value
    if isinstance(value, str) and "/" in value:
        try:
            return ipaddress.ip_interface(value)
        except ValueError as e:
            raise BadRequestError(f"invalid address {value!r}: {e}") from None
    raise BadRequestError(f"invalid address {value!r}: expected an address with its prefix")


def address(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value
    if isinstance(value, str):
        try:
            return ipaddress.ip_address(value)
        except ValueError as e:
            raise BadRequestError(f"invalid address {value!r}: {e}") from None
    raise BadRequestError(f"invalid address {value!r}")


def network(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return value
    if isinstance(value, str):
        try:
            return ipaddress.ip_network(value, strict=True)
        except ValueError as e:
            raise BadRequestError(f"invalid network {value!r}: {e}") from None
    raise BadRequestError(f"invalid network {value!r}")
