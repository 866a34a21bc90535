"""Exit codes and one-line error messages (docs/http-api.md, "CLI exit codes").

0 ok, 2 bad input (usage errors and BadRequest), 3 not found, 4 conflict (Forbidden),
5 the daemon cannot be reached or refuses (NoService, connection errors, Timeout),
1 anything else.
"""

from __future__ import annotations

from pynetlib import errors

OK, OTHER, BAD_INPUT, NOT_FOUND, CONFLICT, UNAVAILABLE = 0, 1, 2, 3, 4, 5


class UsageError(Exception):
    """A command line that cannot mean anything (exit 2)."""


class DaemonUnreachable(Exception):
    """The daemon's socket cannot be connected to (exit 5)."""

    def __init__(self, socket_path: str, why: str) -> None:
        self.socket_path = socket_path
        super().__init__(f"cannot reach the pynetlib daemon at {socket_path} ({why}): start "
                         "it with `pynetlib daemon`, or work on a state directory with "
                         "--state-dir DIR")


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, (UsageError, errors.BadRequestError)):
        return BAD_INPUT
    if isinstance(exc, errors.NotFoundError):
        return NOT_FOUND
    if isinstance(exc, errors.ForbiddenError):
        return CONFLICT
    if isinstance(exc, (DaemonUnreachable, errors.NoServiceError, errors.TimeoutError)):
        return UNAVAILABLE
    return OTHER


def _hint(exc: BaseException, command: str) -> str:
    """What to do about it (empty when the message says enough)."""
    if isinstance(exc, errors.NoSuchNetworkError):
        return "list the networks with `pynetlib network ls`"
    if isinstance(exc, errors.NoSuchEndpointError):
        return "list a network's endpoints with `pynetlib endpoint ls NET`"
    if isinstance(exc, errors.UnknownDriverError):
        return "the drivers are bridge, host and null"
    if isinstance(exc, errors.NotFoundError) and command.startswith("sandbox"):
        return "list the sandboxes with `pynetlib sandbox ls`"
    if isinstance(exc, errors.NetworkNameError):
        return "choose another name, or remove the old network with `pynetlib network rm`"
    if isinstance(exc, errors.EndpointNameError):
        return "choose another endpoint name"
    if isinstance(exc, errors.ActiveEndpointsError):
        return "remove its endpoints first (`pynetlib endpoint ls NET`, " \
               "`pynetlib endpoint rm NET EP`)"
    if isinstance(exc, errors.ActiveContainerError):
        return "leave first with `pynetlib leave NET EP CONTAINER_ID`"
    if isinstance(exc, (errors.BadRequestError, UsageError)) and command:
        return f"see `pynetlib {command} --help`"
    if isinstance(exc, PermissionError):
        return "pynetlib changes the kernel's network: run it as root"
    return ""


def message(exc: BaseException, command: str = "") -> str:
    """The one line for stderr, starting with ``pynetlib: error:``."""
    if isinstance(exc, (errors.NetworkError, UsageError, DaemonUnreachable)):
        text = str(exc) or type(exc).__name__
    elif isinstance(exc, OSError):
        text = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    else:
        text = f"internal error ({type(exc).__name__}: {exc}); run again with --debug " \
               "for the traceback"
    hint = _hint(exc, command)
    return f"pynetlib: error: {text}" + (f"; {hint}" if hint else "")
