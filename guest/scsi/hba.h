/*
 * The host bus adapter interface of the SCSI layer, shaped after illumos' scsi_hba_tran(9S).
 *
 * The target driver (sd) builds a scsi_pkt with scsi_init_pkt()/scsi_setup_cdb() and hands it
 * to the HBA through tran_start. With FLAG_NOINTR set (the dump path and scsi_poll()), the HBA
 * runs the command to completion by polling its own registers, interrupts left off, bounded by
 * pkt_time, and tran_start returns only once pkt_reason/pkt_scbp are final. Without it (runtime
 * I/O), the HBA may return at once and later call pkt_comp from its interrupt handler.
 * With FLAG_NOINTR | FLAG_NOWAIT (an HBA with tran_poll only), tran_start returns once the HBA
 * has the command (TRAN_ACCEPT), still polled and interrupts off; tran_poll later runs it to
 * completion. That is how a dump keeps several writes in flight (scsi_poll_post/_wait).
 * With FLAG_NOINTR | FLAG_NOWAIT | FLAG_NOKICK (an HBA with tran_kick only), tran_start does
 * everything but tell the device: it only computes on memory (the request built and put where
 * the device will find it; no register touched, no privileged instruction, nothing printed), so
 * the caller may run it in ring 3 (arch/x86/usermode.h) once interrupts are off for good, and
 * tran_kick later tells the device of every packet so started.
 *
 * Memory is identity-mapped: a pointer is its physical address.
 */
#ifndef SCSI_HBA_H
#define SCSI_HBA_H

#include <stddef.h>
#include <stdint.h>

struct scsi_hba;
struct scsi_pkt;

struct scsi_address {
	struct scsi_hba *a_hba;
	uint16_t a_target;
	uint16_t a_lun;
};

/* tran_start return values */
#define TRAN_ACCEPT		0
#define TRAN_BUSY		1	/* no resources now: try again */
#define TRAN_BADPKT		2	/* the packet is malformed or exceeds the HBA's limits */
#define TRAN_FATAL_ERROR	3	/* the HBA or the bus is gone */

/* pkt_flags */
#define FLAG_NOINTR		0x0001	/* complete before returning, by polling */
#define FLAG_DATA_OUT		0x0002	/* host to device (a write) */
#define FLAG_DATA_IN		0x0004	/* device to host (a read) */
#define FLAG_NOWAIT		0x0008	/* with FLAG_NOINTR: tran_start only issues; tran_poll completes */
#define FLAG_NOKICK		0x0010	/* with FLAG_NOWAIT: tran_start leaves the device untold; tran_kick tells it */

/* pkt_reason: how the transport ended the command (independent of the SCSI status) */
#define CMD_CMPLT		0	/* the target returned a status byte in pkt_scbp */
#define CMD_INCOMPLETE		1	/* selection failed / the target did not answer */
#define CMD_TRAN_ERR		2	/* transport or DMA error */
#define CMD_RESET		3	/* the command was lost to a reset */
#define CMD_ABORTED		4
#define CMD_TIMEOUT		5	/* pkt_time elapsed; the HBA has aborted or reset */
#define CMD_DEV_GONE		6

/* SCSI status byte values (pkt_scbp) */
#define STATUS_GOOD		0x00
#define STATUS_CHECK		0x02
#define STATUS_BUSY		0x08
#define STATUS_RESERVATION	0x18
#define STATUS_QFULL		0x28

/* tran_reset levels */
#define RESET_LUN		0
#define RESET_TARGET		1
#define RESET_ALL		2	/* the whole bus */

#define SCSI_MAX_CDB		16
#define SCSI_SENSE_LEN		96
#define SCSI_MAX_SGL		32

struct scsi_sgl {
	uint64_t addr;			/* physical */
	uint32_t len;
};

struct scsi_pkt {
	struct scsi_address pkt_address;
	uint8_t pkt_cdbp[SCSI_MAX_CDB];
	uint8_t pkt_cdblen;
	uint32_t pkt_flags;
	uint32_t pkt_time;		/* milliseconds the command may take */
	struct scsi_sgl pkt_sgl[SCSI_MAX_SGL];	/* data, already within the HBA's dma limits */
	int pkt_sgl_count;
	uint32_t pkt_datalen;		/* sum of the sgl lengths */
	/* results, filled by the HBA */
	uint8_t pkt_reason;
	uint8_t pkt_scbp;		/* SCSI status byte */
	uint32_t pkt_resid;		/* bytes not transferred */
	uint8_t pkt_sense[SCSI_SENSE_LEN];	/* autosense data, if the HBA got it */
	uint32_t pkt_sense_len;		/* 0 when the HBA has no autosense */
	void (*pkt_comp)(struct scsi_pkt *pkt);	/* runtime completion callback, or NULL */
	void *pkt_private;		/* for the target driver */
	void *pkt_ha_private;		/* for the HBA: its preallocated per-packet state */
};

/* What the HBA can do with DMA: the packet layer bounces data that lies outside it. */
struct scsi_dma_limits {
	uint64_t dma_addr_max;		/* highest physical address the HBA can reach (e.g. 4 GiB - 1) */
	uint32_t max_xfer;		/* bytes per command */
	uint32_t max_segs;		/* sgl entries per command (<= SCSI_MAX_SGL) */
	uint32_t max_seg_len;		/* bytes per sgl entry */
};

struct scsi_hba_tran {
	const char *tran_name;
	int (*tran_start)(struct scsi_address *ap, struct scsi_pkt *pkt);
	int (*tran_reset)(struct scsi_address *ap, int level);		/* 1 on success */
	int (*tran_abort)(struct scsi_address *ap, struct scsi_pkt *pkt);	/* 1 on success */
	/* Optional (NULL: one polled command at a time). A FLAG_NOWAIT packet tran_start
	 * accepted: poll it to completion as tran_start does for a FLAG_NOINTR one, by the same
	 * deadline (pkt_time from its tran_start: the same timeout handling), results in the
	 * packet. The HBA may complete its commands in any order and keeps what came back for
	 * another packet until that one is polled. A packet the HBA no longer holds (a reset
	 * since its tran_start dropped it) comes back CMD_RESET at once. At most max_polled
	 * FLAG_NOWAIT packets are in flight, and each is polled once. Returns as tran_start
	 * would have for the packet (TRAN_ACCEPT: the results are final). */
	int (*tran_poll)(struct scsi_address *ap, struct scsi_pkt *pkt);
	/* Optional (NULL: FLAG_NOKICK is not for this HBA), with tran_poll and tran_poll_done.
	 * Tell the device of every FLAG_NOKICK packet tran_start accepted since the last kick (a
	 * doorbell). */
	void (*tran_kick)(struct scsi_hba *hba);
	/* Optional (NULL: tran_poll only), with tran_kick. Whether a FLAG_NOWAIT packet is back
	 * from the device, taking its results as tran_poll would if so (1), or leaving everything
	 * as it was (0: tran_poll completes it, or finds it dropped). Only computes on memory
	 * (ring 3, as a FLAG_NOKICK tran_start); never waits. */
	int (*tran_poll_done)(struct scsi_address *ap, struct scsi_pkt *pkt);
	/* Dump time: stop runtime I/O and interrupts, forget in-flight commands (never complete
	 * or requeue them), make the HBA ready for polled FLAG_NOINTR commands. 0 or errno. */
	int (*tran_quiesce)(struct scsi_hba *hba);
	void (*tran_print_info)(struct scsi_hba *hba);
	/* DUMPINIT / DUMPTERM of a disk on this HBA: pin (unpin) the HBA's registers that the
	 * dump path touches (arch/x86/pin.h; its static state is in the always pinned kernel
	 * image). Once per DUMPINIT, reference counted. NULL: nothing pinned - then the dump
	 * faults on the first register access. 0 or errno; on error nothing stays pinned. */
	int (*tran_dump_pin)(struct scsi_hba *hba);
	void (*tran_dump_unpin)(struct scsi_hba *hba);
	/*
	 * Runtime interrupts (for interrupt-driven runtime I/O, e.g. the test workload); all three
	 * NULL when the HBA has none.
	 * tran_intr_enable: route the HBA's interrupt to `vector` (its MSI-X message, or INTx through
	 *   the I/O APIC: bus/pci.h) and turn it on; from then on a command without FLAG_NOINTR may
	 *   return TRAN_ACCEPT at once and complete later through pkt_comp, called from tran_intr.
	 *   0 or errno.
	 * tran_intr: the vector's handler (interrupt context, IF = 0).
	 * tran_intr_mute: at a crash, first thing, IF = 0: stop the HBA interrupting, at once (no
	 *   waiting, no allocation, no pkt_comp). DUMPSTART's tran_quiesce does the rest.
	 */
	int (*tran_intr_enable)(struct scsi_hba *hba, uint8_t vector);
	void (*tran_intr)(struct scsi_hba *hba);
	void (*tran_intr_mute)(struct scsi_hba *hba);
};

struct scsi_hba {
	const struct scsi_hba_tran *tran;
	struct scsi_dma_limits limits;
	uint16_t max_target;		/* targets 0 .. max_target-1 */
	uint16_t max_lun;
	uint16_t initiator_id;		/* the HBA's own SCSI ID on a parallel bus */
	uint16_t max_polled;		/* FLAG_NOWAIT packets in flight at once (with tran_poll) */
	void *hba_private;
	const char *name;		/* e.g. "virtio-scsi 00:03.0" */
};

/* Each HBA driver probes the PCI functions it knows and registers what it finds. */
int scsi_hba_register(struct scsi_hba *hba);
struct scsi_hba *scsi_hba_find(const char *driver_name, int index);

/*
 * HBA drivers: each declares itself with SCSI_HBA_DRIVER(name, word, probe), which puts an
 * entry in the linker set [__hba_drivers_start, __hba_drivers_end) (linker.ld); its probe finds
 * the adapters it knows and registers each (scsi_hba_register) under `name` (its tran_name).
 * `word` is the dumpdev= word of a disk on such an HBA (word[:N[:T[:L]]]). The SCSI layer never
 * names a driver: a driver left out of the Makefile is simply not in the set.
 */
struct scsi_hba_driver {
	const char *name;
	const char *dumpdev_word;
	int (*probe)(void);
};
#define SCSI_HBA_DRIVER(drv_name, drv_word, drv_probe)					\
	static const struct scsi_hba_driver hba_driver_##drv_probe			\
	__attribute__((used, section(".rodata.hba_drivers"), aligned(8))) = { drv_name, drv_word, drv_probe }

/* The HBA driver whose dumpdev word is v[0..len), or NULL. */
const struct scsi_hba_driver *scsi_hba_driver_by_word(const char *v, size_t len);

#endif
