"""The exception tree of pynetlib.

One root, :class:`NetworkError`. Under it the behavioural categories of libnetwork
(bad request, not found, forbidden, no service, not implemented, timeout, internal),
and under those the specific errors that callers catch. Kernel failures are
:class:`KernelError`, which is also an :class:`OSError` carrying the errno.
"""

from __future__ import annotations

import builtins
import errno as _errno
import os


class NetworkError(Exception):
    """Root of every error pynetlib raises on purpose."""


# --- categories ------------------------------------------------------------------------

class BadRequestError(NetworkError):
    """The caller's input is invalid; nothing was changed."""


class NotFoundError(NetworkError):
    """The named object does not exist."""


class ForbiddenError(NetworkError):
    """The request is valid but not allowed in the object's current state."""


class NoServiceError(NetworkError):
    """A service the request needs is not available."""


class NotImplementedByDriverError(NetworkError):
    """The driver does not implement the requested operation."""


class TimeoutError(NetworkError, builtins.TimeoutError):  # noqa: A001 - pinned name
    """An operation did not complete in its time limit."""


class InternalError(NetworkError):
    """An unexpected failure inside pynetlib or the kernel."""


# --- bad request -----------------------------------------------------------------------

class InvalidNameError(BadRequestError):
    def __init__(self, name: object, why: str = "") -> None:
        self.name = name
        super().__init__(f"invalid name {name!r}" + (f": {why}" if why else ""))


class InvalidIDError(BadRequestError):
    def __init__(self, ident: object = "", why: str = "") -> None:
        self.id = ident
        super().__init__(f"invalid id {ident!r}" + (f": {why}" if why else ""))


class InvalidContainerIDError(BadRequestError):
    def __init__(self, container_id: object = "", why: str = "") -> None:
        self.container_id = container_id
        super().__init__(f"invalid container id {container_id!r}" + (f": {why}" if why else ""))


# --- not found -------------------------------------------------------------------------

class UnknownDriverError(NotFoundError):
    def __init__(self, network_type: str) -> None:
        self.network_type = network_type
        super().__init__(f"could not find a network driver for type {network_type!r}")


class NoSuchNetworkError(NotFoundError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"network {key} not found")


class NoSuchEndpointError(NotFoundError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"endpoint {key} not found")


# --- forbidden -------------------------------------------------------------------------

class NetworkNameError(ForbiddenError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"network with name {name} already exists")


class EndpointNameError(ForbiddenError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"endpoint with name {name} already exists in network")


class ActiveEndpointsError(ForbiddenError):
    def __init__(self, name: str, nid: str = "") -> None:
        self.name = name
        self.id = nid
        super().__init__(f"network {name} id {nid} has active endpoints")


class ActiveContainerError(ForbiddenError):
    def __init__(self, name: str, container_id: str = "") -> None:
        self.name = name
        self.container_id = container_id
        super().__init__(f"endpoint {name} has an active container {container_id}")


class InvalidJoinError(ForbiddenError):
    def __init__(self, msg: str = "a container has already joined the endpoint") -> None:
        super().__init__(msg)


class NoContainerError(ForbiddenError):
    def __init__(self, msg: str = "no container is attached to the endpoint") -> None:
        super().__init__(msg)


class ActiveRegistrationError(ForbiddenError):
    def __init__(self, network_type: str) -> None:
        self.network_type = network_type
        super().__init__(f"a driver for network type {network_type!r} is already registered")


# --- IPAM (categories as libnetwork's ipamapi) -------------------------------------------

class NoAvailableIPsError(NoServiceError):
    def __init__(self, pool: str = "", msg: str = "") -> None:
        self.pool = pool
        super().__init__(msg or f"no available addresses in pool {pool}")


class IPAlreadyAllocatedError(ForbiddenError):
    def __init__(self, address: object = "", pool: str = "", msg: str = "") -> None:
        self.address = address
        self.pool = pool
        super().__init__(msg or f"address {address} is already allocated in pool {pool}")


class IPOutOfRangeError(BadRequestError):
    def __init__(self, address: object = "", pool: str = "", msg: str = "") -> None:
        self.address = address
        self.pool = pool
        super().__init__(msg or f"address {address} is out of the range of pool {pool}")


class PoolOverlapError(ForbiddenError):
    def __init__(self, pool: object = "", other: object = "", msg: str = "") -> None:
        self.pool = pool
        self.other = other
        super().__init__(msg or f"pool {pool} overlaps with existing pool {other}")


class InvalidPoolError(BadRequestError):
    def __init__(self, pool: object = "", why: str = "", msg: str = "") -> None:
        self.pool = pool
        super().__init__(msg or f"invalid pool {pool!r}" + (f": {why}" if why else ""))


class NoAvailablePoolError(NoServiceError):
    def __init__(self, address_space: str = "", msg: str = "") -> None:
        self.address_space = address_space
        super().__init__(msg or f"no available pool in address space {address_space}")


# --- kernel ----------------------------------------------------------------------------

class KernelError(InternalError, OSError):
    """A netlink or system call failed.

    ``errno`` is the error number, ``op`` what pynetlib was doing (``"link add"``),
    ``obj`` the object it was doing it to (an interface name, a path), and
    ``kernel_msg`` the kernel's extended-ack text, empty when the kernel gave none.
    """

    def __init__(self, err: int, op: str, obj: str = "", kernel_msg: str = "") -> None:
        err = abs(err)
        text = os.strerror(err)
        detail = f"{op} {obj}".strip() + f": {text}"
        if kernel_msg:
            detail += f" ({kernel_msg})"
        OSError.__init__(self, err, detail)
        self.op = op
        self.obj = obj
        self.kernel_msg = kernel_msg

    def __str__(self) -> str:
        return self.strerror or ""

    def __reduce__(self):
        return (type(self), (self.errno, self.op, self.obj, self.kernel_msg))


class ObjectExistsError(KernelError, FileExistsError):
    """The kernel already has an object with that name or address (EEXIST)."""


class ObjectNotFoundError(KernelError, FileNotFoundError):
    """The kernel has no such device, address, route or namespace (ENODEV, ENOENT, ESRCH)."""


class DumpInterruptedError(KernelError):
    """A netlink dump was interrupted by a concurrent change (NLM_F_DUMP_INTR); retry it."""


_KERNEL_CLASSES = {
    _errno.EEXIST: ObjectExistsError,
    _errno.ENODEV: ObjectNotFoundError,
    _errno.ENOENT: ObjectNotFoundError,
    _errno.ESRCH: ObjectNotFoundError,
    _errno.EADDRNOTAVAIL: ObjectNotFoundError,
}


def kernel_error(err: int, op: str, obj: str = "", kernel_msg: str = "") -> KernelError:
    """The most specific :class:`KernelError` subclass for ``err`` (positive or negative)."""
    cls = _KERNEL_CLASSES.get(abs(err), KernelError)
    return cls(err, op, obj, kernel_msg)


class NoSuchNamespaceError(NotFoundError):
    """A network namespace path or name that does not exist (checked before any netlink)."""

    def __init__(self, path: str, why: str = "") -> None:
        self.path = path
        super().__init__(f"network namespace {path} not found" + (f": {why}" if why else ""))
