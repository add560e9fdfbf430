"""Network dumps on the host (docs/netdump-protocol.md): the message codec (protocol), the dump
server `dumpbed netdumpd` (server), and the link between QEMU's NIC and the server, where the
network faults happen (link)."""
