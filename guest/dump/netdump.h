/*
 * The network dump client (docs/netdump-protocol.md): a dump device whose partition is on a
 * dump server, reached over a NIC's dddump (dump/dumpnic.h). It is a struct dumpdev_ops under
 * dumpdev_dddump (dump/dumpdev.c), so the writer and the crash sequence see a disk: the
 * partition comes from the server's answer to QUERY at DUMPINIT, each DUMPWRITE is sent as
 * DATA messages (a window of them in flight, retransmitted with backoff), DUMP_FSYNC as a
 * FLUSH, and DUMPEND ends with a FINISH.
 */
#ifndef DUMP_NETDUMP_H
#define DUMP_NETDUMP_H

#include <stdint.h>

#include "dump/dumpdev.h"
#include "dump/dumpnic.h"

#define NETDUMP_MTU_MIN		576
#define NETDUMP_MTU_MAX		9000
#define NETDUMP_MTU_DEFAULT	1500
#define NETDUMP_WINDOW_MAX	64
#define NETDUMP_WINDOW_DEFAULT	32
#define NETDUMP_GUEST_PORT	20024

/* The network dump's words of the command line (docs/netdump-protocol.md, section 3), as
 * struct boot_config holds them (kern/cmdline.h). IPv4 addresses in host order. */
struct netdump_config {
	uint32_t ip;			/* netaddr=A.B.C.D */
	uint32_t server_ip;		/* netserver=A.B.C.D:PORT */
	uint16_t server_port;
	uint32_t mtu;			/* netmtu=, NETDUMP_MTU_MIN..NETDUMP_MTU_MAX (the NIC's attach) */
	uint32_t window;		/* netwindow=, 1..NETDUMP_WINDOW_MAX */
};

/*
 * Make `dev` the network dump device over the attached `nic`: its dddump, softc and
 * print_info. Its partition fields are filled by DUMPINIT (the server's answer to QUERY). Every
 * message is acknowledged within iotimeout_ms; dump_id (16 bytes, dumpid=) names the dump.
 * 0, or EBUSY when the one instance is taken.
 */
int netdump_setup(struct dumpdev *dev, const struct dump_nic *nic, const struct netdump_config *cfg,
		  uint32_t iotimeout_ms, const uint8_t *dump_id);

#endif
