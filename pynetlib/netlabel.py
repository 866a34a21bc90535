"""Well-known option keys (libnetwork's ``netlabel``).

pynetlib uses the ``com.docker.network`` prefix that libnetwork settled on (and that the
Docker plugin protocol carries on the wire), so options passed through a Docker engine
or a remote plugin mean the same thing here.
"""

PREFIX = "com.docker.network"
DRIVER_PREFIX = PREFIX + ".driver"
DRIVER_PRIVATE_PREFIX = DRIVER_PREFIX + ".private"

GENERIC_DATA = PREFIX + ".generic"
PORT_MAP = PREFIX + ".portmap"
MAC_ADDRESS = PREFIX + ".endpoint.macaddress"
EXPOSED_PORTS = PREFIX + ".endpoint.exposedports"
DNS_SERVERS = PREFIX + ".endpoint.dnsservers"
ENABLE_IPV6 = PREFIX + ".enable_ipv6"
DRIVER_MTU = DRIVER_PREFIX + ".mtu"
GATEWAY = PREFIX + ".gateway"
INTERNAL = PREFIX + ".internal"
CONTAINER_IFACE_PREFIX = PREFIX + ".container_iface_prefix"
HOST_IP = PREFIX + ".host_ipv4"


def key(label: str) -> str:
    """The key of a ``key=value`` label (the whole label when it has no '=')."""
    return label.split("=", 1)[0]


def value(label: str) -> str:
    """The value of a ``key=value`` label ('' when it has no '=')."""
    parts = label.split("=", 1)
    return parts[1] if len(parts) == 2 else ""


def key_value(label: str) -> tuple[str, str]:
    return key(label), value(label)
