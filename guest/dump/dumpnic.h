/*
 * NIC drivers that are network dump targets (docs/netdump-protocol.md, section 2). Each declares
 * itself with DUMP_NIC_DRIVER(word, attach), an entry in the linker set
 * [__dump_nic_drivers_start, __dump_nic_drivers_end) (linker.ld); `dumpdev=WORD[:N]` with a
 * NIC's word makes the dump a network dump, driven by dump/netdump.c over the NIC's dddump:
 *
 *   DUMPINIT   arg: struct dumpio_stat *. Set up the dump rings in pinned memory, pin the dump
 *              path; the runtime keeps running.
 *   DUMPQUERY  arg: struct dmp_query *: min_tsize 60, max_tsize 14 + MTU, dumpwrite = the
 *              routine that sends one frame (uio: the whole Ethernet frame, no FCS), returning
 *              once the device has taken it, bounded by the I/O timeout.
 *   DUMPSTART  arg: struct dumpio_stat *. IF = 0: mask the device's interrupts, drop what the
 *              runtime left in its rings, make the dump rings ready.
 *   DUMPREAD   arg: the timeout in ms, (void *)(uintptr_t)ms. The next frame received, copied
 *              into uio (uio_resid: what was left unfilled). 0; ETIMEDOUT when none came in
 *              time; EMSGSIZE when it did not fit (the frame is dropped).
 *   DUMPEND    leave the device quiet.  DUMPTERM  unpin.
 *
 * Every command is polled and bounded, returns 0 or an errno, and fills the dumpio_stat on
 * error where it has one.
 */
#ifndef DUMP_DUMPNIC_H
#define DUMP_DUMPNIC_H

#include <stddef.h>
#include <stdint.h>

#include "dump/dumpdev.h"
#include "net/ether.h"


struct dump_nic;
typedef int (*nic_dddump_fn)(struct dump_nic *nic, struct uio *uio, int cmd, void *arg);

/* One attached NIC. */
struct dump_nic {
	void *softc;
	uint8_t mac[ETHER_ADDR_LEN];
	uint32_t mtu;			/* what the device takes (netmtu=, capped by the device) */
	nic_dddump_fn dddump;
	void (*print_info)(const void *softc);
	const char *where;		/* e.g. "00:04.0", for messages */
};

struct dump_nic_driver {
	const char *word;
	/* Attach the index-th device of this driver with this MTU: 0, ENODEV (no such device) or
	 * the errno of a device that would not start. */
	int (*attach)(int index, uint32_t mtu, uint32_t iotimeout_ms, struct dump_nic *out);
};

#define DUMP_NIC_DRIVER(drv_word, drv_attach)						\
	static const struct dump_nic_driver dump_nic_driver_##drv_attach		\
	__attribute__((used, section(".rodata.dump_nic_drivers"), aligned(8))) = { drv_word, drv_attach }

/* The driver whose word is v[0..len), or NULL. */
const struct dump_nic_driver *dump_nic_driver_find(const char *v, size_t len);

#endif
