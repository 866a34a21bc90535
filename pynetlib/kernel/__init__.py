"""The kernel layer: typed Python wrappers over pynetlib's C netlink library.

- :class:`NetlinkSocket`: an rtnetlink socket bound to one namespace; links (veth,
  bridge, dummy, vxlan, macvlan), addresses and routes.
- :class:`Netns`: network namespaces (create, open, delete, enter).
- :func:`attach_veth`: a container's whole veth attach in three round trips.
- :class:`NftSetSocket`: the elements of an nftables set (interface indexes, say), one
  nftables transaction per change, without the RTNL lock.
"""

from pynetlib.kernel.attach import attach_veth, attach_veth_pair
from pynetlib.kernel.netlink import LinkInfo, NetlinkSocket
from pynetlib.kernel.netns import DEFAULT_RUNDIR, Netns, current_inode, delete as delete_netns
from pynetlib.kernel.netns import enter as enter_netns, prepare_rundir
from pynetlib.kernel.nftset import NftSetSocket

__all__ = [
    "attach_veth", "attach_veth_pair", "LinkInfo", "NetlinkSocket", "Netns", "DEFAULT_RUNDIR",
    "current_inode", "delete_netns", "enter_netns", "prepare_rundir", "NftSetSocket",
]
