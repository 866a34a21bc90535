"""The pinned exception tree of API.md section 5."""

import builtins
import errno
import pickle

import pytest

from pynetlib import errors as E

CATEGORY = {
    E.InvalidNameError: E.BadRequestError,
    E.InvalidIDError: E.BadRequestError,
    E.InvalidContainerIDError: E.BadRequestError,
    E.UnknownDriverError: E.NotFoundError,
    E.NoSuchNetworkError: E.NotFoundError,
    E.NoSuchEndpointError: E.NotFoundError,
    E.NetworkNameError: E.ForbiddenError,
    E.EndpointNameError: E.ForbiddenError,
    E.ActiveEndpointsError: E.ForbiddenError,
    E.ActiveContainerError: E.ForbiddenError,
    E.InvalidJoinError: E.ForbiddenError,
    E.NoContainerError: E.ForbiddenError,
    E.ActiveRegistrationError: E.ForbiddenError,
    E.KernelError: E.InternalError,
}


@pytest.mark.parametrize("cls,category", sorted(CATEGORY.items(), key=lambda kv: kv[0].__name__))
def test_category(cls, category):
    assert issubclass(cls, category)
    assert issubclass(cls, E.NetworkError)


def test_timeout_is_builtin_timeout_too():
    assert issubclass(E.TimeoutError, builtins.TimeoutError)
    assert issubclass(E.TimeoutError, E.NetworkError)


def test_kernel_error_carries_errno_op_obj_and_message():
    e = E.kernel_error(-errno.EEXIST, "link add", "veth0", "File exists in kernel")
    assert isinstance(e, E.KernelError) and isinstance(e, OSError)
    assert isinstance(e, FileExistsError)
    assert e.errno == errno.EEXIST
    assert (e.op, e.obj, e.kernel_msg) == ("link add", "veth0", "File exists in kernel")
    assert "veth0" in str(e) and "File exists in kernel" in str(e)
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is type(e) and again.errno == e.errno and again.obj == "veth0"


def test_kernel_error_unknown_errno_is_plain_kernel_error():
    e = E.kernel_error(errno.EBUSY, "link del", "br0")
    assert type(e) is E.KernelError
    assert e.errno == errno.EBUSY


@pytest.mark.parametrize("bad", ["abc\n", "abc\r", "a\nb"])
def test_names_with_a_trailing_newline_are_refused(bad):
    from pynetlib.names import check_container_id, check_name
    from pynetlib.kernel import validate

    with pytest.raises(E.BadRequestError):
        check_name(bad)
    with pytest.raises(E.BadRequestError):
        check_container_id(bad)
    with pytest.raises(E.BadRequestError):
        validate.netns_name(bad)
    with pytest.raises(E.BadRequestError):
        validate.mac("02:42:ac:11:00:02\n")
