/*
 * VMware PVSCSI as an HBA of scsi/hba.h, written against QEMU's model (hw/scsi/vmw_pvscsi.c
 * and vmw_pvscsi.h, QEMU 7.2).
 *
 * The adapter is a set of registers in BAR0 (32 KiB of memory space, 32-bit accesses only)
 * and three structures in guest memory that PVSCSI_CMD_SETUP_RINGS hands it: the rings state
 * page (producer and consumer indices), the request ring (128-byte descriptors) and the
 * completion ring (32-byte descriptors). The message ring (hotplug news) is never set up, so
 * the adapter never has a message to send. A request names its data through a scatter/gather
 * table (16-byte elements; one table per slot, inside one page) and carries the address of a
 * sense buffer the adapter fills on CHECK CONDITION (autosense). Posting a request: fill the
 * descriptor, advance reqProdIdx, write a kick register. QEMU takes every posted descriptor
 * during that register write (reqConsIdx), runs the commands, and writes each completion from
 * a bottom half: the descriptor, then cmpProdIdx, then the completion bit of INTR_STATUS,
 * which interrupts only if INTR_MASK enables it.
 *
 * All of it is preallocated in the kernel image (always pinned; the dumpstate range, since
 * the dump path writes it): per adapter one softc and four pages (rings state and sense
 * buffers, request ring, completion ring, s/g tables). Eight slots per adapter; a request's
 * context names its slot (low byte) and a sequence number, so a completion is matched to the
 * command it belongs to, and a slot is reused only once its completion was seen: a command that
 * timed out keeps its slot (abandoned) until the adapter returns it.
 *
 * FLAG_NOINTR packets are posted and completed by polling cmpProdIdx (guest memory: no VM exit
 * per look) against a TSC deadline; on timeout the command is aborted (ABORT_CMD) and ends
 * CMD_TIMEOUT. tran_quiesce masks the interrupt (INTR_MASK = 0), forgets every command and
 * resets the adapter, which cancels whatever QEMU still held, and sets the rings up afresh.
 *
 * What QEMU's model dictates:
 *  - Targets 0..64 (its bus's max_target, 64, is inclusive), LUN 0 only (max_lun 0); the LUN
 *    travels in lun[1], every other byte 0. A request to a target nobody holds completes at
 *    once with BTSTAT_SELTIMEO; one to another LUN of a present target is answered by QEMU's
 *    SCSI layer (INQUIRY: peripheral qualifier 3; sd reads that as "no disk here").
 *  - The completion's dataLen is never filled (0): a short transfer says BTSTAT_DATARUN but
 *    not how short, and QEMU counts the shortfall against the CDB's transfer length, not the
 *    buffer. A DATARUN packet is therefore reported with everything residual (the spec's
 *    meaning of dataLen 0), which sd treats as a failed READ or a short WRITE; sd's commands
 *    never provoke one (QEMU answers INQUIRY, MODE SENSE, READ CAPACITY up to the allocation
 *    length).
 *  - ADAPTER_RESET cancels every request (their BTSTAT_BUSRESET completions go into the old
 *    completion ring during the register write), forgets the rings, clears INTR_STATUS and
 *    keeps INTR_MASK. RESET_BUS and RESET_DEVICE cancel the requests of the bus or of one
 *    device (completions later, from the bottom half, BTSTAT_BUSRESET); RESET_DEVICE fails for
 *    an address nobody holds. ABORT_CMD cancels one request by its context (completion later,
 *    BTSTAT_ABORTQUEUE) and succeeds also when there is none.
 *  - The completion ring is not checked for overflow: never more commands outstanding than it
 *    has entries (8 slots against 128).
 *  - Scatter/gather: at most 2048 elements, read one after another from dataAddr (the chain
 *    flag is not implemented); element lengths are 32 bits, dataLen 64, addresses 64.
 *  - Interrupt: INTx pin A, or the MSI capability (one vector) when enabled; no MSI-X. The
 *    condition is INTR_STATUS & INTR_MASK, re-evaluated on every write of either register and
 *    on every completion; INTR_STATUS is write-one-to-clear.
 */
#include "drivers/pvscsi.h"
#include "arch/x86/cpu.h"
#include "arch/x86/io.h"
#include "arch/x86/pin.h"
#include "arch/x86/tsc.h"
#include "bus/pci.h"
#include "lib/errno.h"
#include "lib/dumpstate.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/testfault.h"

/* ---- registers (BAR0) ------------------------------------------------------------------ */

#define REG_COMMAND		0x0000
#define REG_COMMAND_DATA	0x0004
#define REG_COMMAND_STATUS	0x0008
#define REG_INTR_STATUS		0x100c
#define REG_INTR_MASK		0x2010
#define REG_KICK_NON_RW_IO	0x3014
#define REG_KICK_RW_IO		0x4018
#define PV_BAR_SIZE		0x8000
#define PV_REG_WINDOW		0x5000	/* pages 0-4: every register above (6-7 are MSI-X, unused) */

#define CMD_ADAPTER_RESET	1
#define CMD_SETUP_RINGS		3
#define CMD_RESET_BUS		4
#define CMD_RESET_DEVICE	5
#define CMD_ABORT_CMD		6

#define INTR_CMPL_MASK		0x3	/* completion ring 0 / 1 */
#define INTR_ALL		0xf	/* ... and the message rings */

/* request flags */
#define REQ_SG_LIST		(1u << 0)
#define REQ_DIR_NONE		(1u << 2)
#define REQ_DIR_TOHOST		(1u << 3)
#define REQ_DIR_TODEVICE	(1u << 4)
#define REQ_TAG_SIMPLE		0x20	/* SIMPLE QUEUE TAG message (QEMU ignores the tag type) */

/* completion hostStatus (BusLogic codes) */
#define BTSTAT_SUCCESS		0x00
#define BTSTAT_LINKED_COMMAND_COMPLETED 0x0a
#define BTSTAT_LINKED_COMMAND_COMPLETED_WITH_FLAG 0x0b
#define BTSTAT_DATA_UNDERRUN	0x0c
#define BTSTAT_SELTIMEO		0x11
#define BTSTAT_DATARUN		0x12
#define BTSTAT_SENTRST		0x22
#define BTSTAT_RECVRST		0x23
#define BTSTAT_BUSRESET		0x25
#define BTSTAT_ABORTQUEUE	0x26

/* ---- memory shared with the adapter ------------------------------------------------------ */

#define PV_PAGE			4096u
#define PV_REQ_ENTRIES		32	/* one page of 128-byte descriptors */
#define PV_CMP_ENTRIES		128	/* one page of 32-byte descriptors */
#define PV_REQ_LOG2		5	/* what QEMU writes into the rings state for one page each */
#define PV_CMP_LOG2		7
#define PV_SLOTS		8
#define PV_MAX_SEGS		SCSI_MAX_SGL	/* 32 elements: a 512-byte table */
#define PV_MAX_HBAS		2
#define PV_MAX_TARGET		65	/* 0..64 */
#define PV_MAX_LUN		256	/* lun[1] is one byte (QEMU's bus: LUN 0 only) */
#define PV_DEFAULT_TIME_MS	30000
#define PV_ABORT_WAIT_MS	2000
#define PV_SETUP_RINGS_PAGES	32	/* PPN slots per ring in the SETUP_RINGS descriptor */
#define PV_SETUP_RINGS_WORDS	(4 + 2 * 2 * PV_SETUP_RINGS_PAGES)	/* 528 bytes */

struct pv_rings_state {
	uint32_t req_prod;
	uint32_t req_cons;
	uint32_t req_log2;
	uint32_t cmp_prod;
	uint32_t cmp_cons;
	uint32_t cmp_log2;
	uint8_t pad[104];
	uint32_t msg_prod;
	uint32_t msg_cons;
	uint32_t msg_log2;
} __attribute__((packed));

struct pv_req_desc {
	uint64_t context;
	uint64_t data_addr;
	uint64_t data_len;
	uint64_t sense_addr;
	uint32_t sense_len;
	uint32_t flags;
	uint8_t cdb[16];
	uint8_t cdb_len;
	uint8_t lun[8];
	uint8_t tag;
	uint8_t bus;
	uint8_t target;
	uint8_t vcpu_hint;
	uint8_t unused[59];
} __attribute__((packed));

struct pv_sg_elem {
	uint64_t addr;
	uint32_t length;
	uint32_t flags;
} __attribute__((packed));

struct pv_cmp_desc {
	uint64_t context;
	uint64_t data_len;
	uint32_t sense_len;
	uint16_t host_status;
	uint16_t scsi_status;
	uint32_t pad[2];
} __attribute__((packed));

_Static_assert(sizeof(struct pv_rings_state) == 140, "rings state layout");
_Static_assert(sizeof(struct pv_req_desc) == 128, "request descriptor layout");
_Static_assert(__builtin_offsetof(struct pv_req_desc, cdb) == 40, "request descriptor layout");
_Static_assert(__builtin_offsetof(struct pv_req_desc, cdb_len) == 56, "request descriptor layout");
_Static_assert(__builtin_offsetof(struct pv_req_desc, tag) == 65, "request descriptor layout");
_Static_assert(__builtin_offsetof(struct pv_req_desc, target) == 67, "request descriptor layout");
_Static_assert(sizeof(struct pv_sg_elem) == 16, "s/g element layout");
_Static_assert(sizeof(struct pv_cmp_desc) == 32, "completion descriptor layout");

/* One adapter's DMA memory: four pages. */
struct pv_dma {
	struct pv_rings_state rs __attribute__((aligned(PV_PAGE)));
	uint8_t sense[PV_SLOTS][SCSI_SENSE_LEN];	/* in the rings state page's rest */
	struct pv_req_desc req[PV_REQ_ENTRIES] __attribute__((aligned(PV_PAGE)));
	struct pv_cmp_desc cmp[PV_CMP_ENTRIES] __attribute__((aligned(PV_PAGE)));
	/* one table per slot, 512-byte aligned: never across a page */
	struct pv_sg_elem sg[PV_SLOTS][PV_MAX_SEGS] __attribute__((aligned(PV_PAGE)));
};

_Static_assert(sizeof(struct pv_rings_state) + sizeof(((struct pv_dma *)0)->sense) <= PV_PAGE,
	       "sense buffers share the rings state page");
_Static_assert(sizeof(struct pv_dma) == 4 * PV_PAGE, "four pages");
_Static_assert(PV_SLOTS <= PV_REQ_ENTRIES && PV_SLOTS < PV_CMP_ENTRIES, "slots fit the rings");

/* ---- the softc ------------------------------------------------------------------------------ */

enum slot_state {
	SLOT_FREE,
	SLOT_INFLIGHT,
	SLOT_DONE,		/* completion seen, not yet handed to the packet */
	SLOT_ABANDONED,		/* timed out or given up: the adapter still owns the request */
};

struct pv_slot {
	volatile uint8_t state;
	bool polled;
	uint16_t target;
	uint32_t context;
	uint64_t deadline;	/* a polled command's: pkt_time from its tran_start */
	struct scsi_pkt *pkt;
	/* the completion, copied out of the ring */
	uint64_t data_len;
	uint32_t sense_len;
	uint16_t host_status;
	uint16_t scsi_status;
};

struct pvscsi_softc {
	struct scsi_hba hba;
	struct pci_dev *pci;
	uintptr_t regs;
	struct pv_dma *dma;
	uint8_t msi_cap;
	bool quiesced;		/* tran_quiesce ran: only polled packets from now on */
	bool broken;		/* the adapter could not be brought back up */
	volatile bool intr_on;	/* runtime interrupts enabled */
	uint8_t intr_vector;
	bool intx_routed;	/* INTx brought to an I/O APIC pin (bus/pci.h) */
	int intx_pin;
	uint32_t req_prod;	/* our reqProdIdx */
	uint32_t cmp_cons;	/* our cmpConsIdx */
	uint32_t seq;
	struct pv_slot slots[PV_SLOTS];
	/* the last completion that was not plain success */
	uint16_t last_host_status, last_scsi_status;
	uint64_t last_data_len;
	/* statistics */
	uint64_t commands, polled_commands, intr_completions, interrupts, stale_completions;
	uint64_t timeouts, aborts, device_resets, bus_resets, adapter_resets, quiesces;
	uint64_t dropped_at_quiesce, dataruns, selection_timeouts;
	char name[32];
};

/* The dump path's state (lib/dumpstate.h): the softcs (slots, indices) and the rings, s/g
 * tables and sense buffers the adapter writes. */
static struct pvscsi_softc pv_softc[PV_MAX_HBAS] __dumpstate;
static struct pv_dma pv_dma[PV_MAX_HBAS] __dumpstate;
static int pv_count;

static const struct scsi_hba_tran pv_tran;

/* ---- register access and adapter commands ------------------------------------------------ */

static uint32_t rd32(struct pvscsi_softc *sc, uint32_t reg)
{
	return mmio_read32(sc->regs + reg);
}

static void wr32(struct pvscsi_softc *sc, uint32_t reg, uint32_t v)
{
	mmio_write32(sc->regs + reg, v);
}

/* An adapter command: the command register, then its descriptor word by word; QEMU runs it
 * on the last word. Returns the command status (0 succeeded, -1 failed, -2 data missing). */
static int32_t pv_command(struct pvscsi_softc *sc, uint32_t cmd, const uint32_t *words, int n)
{
	wr32(sc, REG_COMMAND, cmd);
	for (int i = 0; i < n; i++)
		wr32(sc, REG_COMMAND_DATA, words[i]);
	return (int32_t)rd32(sc, REG_COMMAND_STATUS);
}

static uint32_t phys_lo(const volatile void *p)
{
	return (uint32_t)(uintptr_t)p;
}

static uint32_t phys_hi(const volatile void *p)
{
	return (uint32_t)((uint64_t)(uintptr_t)p >> 32);
}

/* Every interrupt source off: the adapter's mask (QEMU lowers the line at once), INTx, MSI.
 * Register and config-space writes only: safe at the crash, before anything else. */
static void pv_mute(struct scsi_hba *hba)
{
	struct pvscsi_softc *sc = hba->hba_private;

	sc->intr_on = false;
	wr32(sc, REG_INTR_MASK, 0);
	pci_set_command_bits(sc->pci, PCI_COMMAND_INTX_DISABLE, 0);
	pci_msi_disable(sc->pci, sc->msi_cap);
}

/*
 * Adapter reset and fresh rings, interrupt masked: nothing from before survives (QEMU has
 * cancelled every request it held by the time the reset's register write returns). Slots are
 * all FREE afterwards.
 */
static int bring_up(struct pvscsi_softc *sc)
{
	struct pv_dma *d = sc->dma;
	uint32_t w[PV_SETUP_RINGS_WORDS];
	int32_t st;

	wr32(sc, REG_INTR_MASK, 0);
	sc->adapter_resets++;
	st = pv_command(sc, CMD_ADAPTER_RESET, 0, 0);
	if (st != 0)
		return EIO;

	/* The reset's cancelled completions went into the old rings: start from zero indices.
	 * QEMU writes the indices and sizes itself at SETUP_RINGS; the sizes prove it did. */
	d->rs.req_prod = d->rs.req_cons = d->rs.req_log2 = 0;
	d->rs.cmp_prod = d->rs.cmp_cons = d->rs.cmp_log2 = 0;
	for (int i = 0; i < PV_SETUP_RINGS_WORDS; i++)
		w[i] = 0;
	w[0] = 1;					/* reqRingNumPages */
	w[1] = 1;					/* cmpRingNumPages */
	w[2] = phys_lo(&d->rs) >> 12;			/* ringsStatePPN */
	w[3] = phys_hi(&d->rs) >> 12;
	w[4] = phys_lo(d->req) >> 12;			/* reqRingPPNs[0] */
	w[5] = phys_hi(d->req) >> 12;
	w[4 + 2 * PV_SETUP_RINGS_PAGES] = phys_lo(d->cmp) >> 12;	/* cmpRingPPNs[0] */
	w[5 + 2 * PV_SETUP_RINGS_PAGES] = phys_hi(d->cmp) >> 12;
	mb();
	st = pv_command(sc, CMD_SETUP_RINGS, w, PV_SETUP_RINGS_WORDS);
	if (st != 0 || READ_ONCE(d->rs.req_log2) != PV_REQ_LOG2 || READ_ONCE(d->rs.cmp_log2) != PV_CMP_LOG2)
		return EIO;
	sc->req_prod = 0;
	sc->cmp_cons = 0;
	wr32(sc, REG_INTR_STATUS, INTR_ALL);
	for (int i = 0; i < PV_SLOTS; i++) {
		sc->slots[i].state = SLOT_FREE;
		sc->slots[i].pkt = 0;
	}
	return 0;
}

/* ---- the rings ---------------------------------------------------------------------------- */

/* Consume every completion; slots change state and keep the results, nothing else happens. */
static void reap(struct pvscsi_softc *sc)
{
	struct pv_dma *d = sc->dma;
	uint64_t flags = irq_save();
	uint32_t prod = READ_ONCE(d->rs.cmp_prod);

	if (prod - sc->cmp_cons > PV_CMP_ENTRIES) {
		/* Not an index the adapter can have written: skip to it (counted). */
		sc->stale_completions += prod - sc->cmp_cons;
		sc->cmp_cons = prod;
	}
	while (sc->cmp_cons != prod) {
		const struct pv_cmp_desc *e;
		struct pv_slot *s;
		uint64_t ctx;
		uint32_t n;

		rmb();	/* the descriptor is read after the index that published it */
		e = &d->cmp[sc->cmp_cons & (PV_CMP_ENTRIES - 1)];
		sc->cmp_cons++;
		ctx = READ_ONCE(e->context);
		n = (uint32_t)(ctx & 0xff) - 1;
		if (n >= PV_SLOTS || sc->slots[n].context != ctx) {
			sc->stale_completions++;
			continue;
		}
		s = &sc->slots[n];
		if (s->state == SLOT_INFLIGHT) {
			s->data_len = READ_ONCE(e->data_len);
			s->sense_len = READ_ONCE(e->sense_len);
			s->host_status = READ_ONCE(e->host_status);
			s->scsi_status = READ_ONCE(e->scsi_status);
			s->state = SLOT_DONE;
		} else if (s->state == SLOT_ABANDONED) {
			s->state = SLOT_FREE;	/* the late end of a command we gave up on */
		} else {
			sc->stale_completions++;
		}
	}
	WRITE_ONCE(d->rs.cmp_cons, sc->cmp_cons);
	irq_restore(flags);
}

/* Translate a completion into the packet's results. */
static void fill_result(struct pvscsi_softc *sc, struct pv_slot *s, struct scsi_pkt *pkt)
{
	uint8_t reason;

	pkt->pkt_scbp = 0;
	pkt->pkt_resid = pkt->pkt_datalen;
	pkt->pkt_sense_len = 0;
	switch (s->host_status) {
	case BTSTAT_SUCCESS:
	case BTSTAT_LINKED_COMMAND_COMPLETED:
	case BTSTAT_LINKED_COMMAND_COMPLETED_WITH_FLAG:
		reason = CMD_CMPLT;
		pkt->pkt_resid = 0;
		break;
	case BTSTAT_DATARUN:
	case BTSTAT_DATA_UNDERRUN:
		/* dataLen = bytes transferred (QEMU: never filled, so 0: all residual). */
		reason = CMD_CMPLT;
		pkt->pkt_resid = s->data_len < pkt->pkt_datalen ? pkt->pkt_datalen - (uint32_t)s->data_len : 0;
		sc->dataruns++;
		break;
	case BTSTAT_SELTIMEO:
		reason = CMD_INCOMPLETE;	/* nobody at that address */
		sc->selection_timeouts++;
		break;
	case BTSTAT_BUSRESET:
	case BTSTAT_SENTRST:
	case BTSTAT_RECVRST:
		reason = CMD_RESET;
		break;
	case BTSTAT_ABORTQUEUE:
		reason = CMD_ABORTED;
		break;
	default:
		reason = CMD_TRAN_ERR;
		break;
	}
	if (s->host_status != BTSTAT_SUCCESS || s->scsi_status != STATUS_GOOD) {
		sc->last_host_status = s->host_status;
		sc->last_scsi_status = s->scsi_status;
		sc->last_data_len = s->data_len;
	}
	pkt->pkt_reason = reason;
	if (reason == CMD_CMPLT) {
		uint32_t sl = s->sense_len;

		pkt->pkt_scbp = (uint8_t)s->scsi_status;
		if ((pkt->pkt_scbp & 0x3e) == STATUS_CHECK && sl) {
			if (sl > SCSI_SENSE_LEN)
				sl = SCSI_SENSE_LEN;
			rmb();
			memcpy(pkt->pkt_sense, sc->dma->sense[s - sc->slots], sl);
			pkt->pkt_sense_len = sl;
		}
	}
}

static bool is_rw_opcode(uint8_t op)
{
	switch (op) {
	case 0x08: case 0x28: case 0xa8: case 0x88:	/* READ(6/10/12/16) */
	case 0x0a: case 0x2a: case 0xaa: case 0x8a:	/* WRITE(6/10/12/16) */
		return true;
	default:
		return false;
	}
}

/* Eight CDB bytes as a quadword, those past the CDB's length zero. */
static uint64_t cdb_bytes(const uint8_t *p, int n)
{
	uint64_t v = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
		     (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;

	if (n <= 0)
		return 0;
	return n >= 8 ? v : v & ((1ull << (8 * n)) - 1);
}

/*
 * Write the request descriptor and the slot's s/g table, publish it and kick. Stores of whole
 * quadwords (volatile, so the compiler keeps them): no memset/memcpy on the fast path (under
 * kvm-pvm `rep stosb` in ring 0 is emulated byte by byte).
 */
static void post(struct pvscsi_softc *sc, struct pv_slot *s, const struct scsi_address *ap,
		 const struct scsi_pkt *pkt)
{
	struct pv_dma *d = sc->dma;
	int n = (int)(s - sc->slots);
	volatile uint64_t *q = (volatile uint64_t *)&d->req[sc->req_prod & (PV_REQ_ENTRIES - 1)];
	volatile uint64_t *sg = (volatile uint64_t *)d->sg[n];
	uint32_t flags;

	for (int i = 0; i < pkt->pkt_sgl_count; i++) {
		sg[2 * i] = pkt->pkt_sgl[i].addr;
		sg[2 * i + 1] = pkt->pkt_sgl[i].len;	/* flags 0 */
	}
	if (!pkt->pkt_datalen)
		flags = REQ_DIR_NONE;
	else
		flags = REQ_SG_LIST | ((pkt->pkt_flags & FLAG_DATA_IN) ? REQ_DIR_TOHOST : REQ_DIR_TODEVICE);

	q[0] = s->context;
	q[1] = pkt->pkt_datalen ? (uintptr_t)d->sg[n] : 0;	/* the s/g table */
	q[2] = pkt->pkt_datalen;
	q[3] = (uintptr_t)d->sense[n];
	q[4] = SCSI_SENSE_LEN | (uint64_t)flags << 32;
	q[5] = cdb_bytes(pkt->pkt_cdbp, pkt->pkt_cdblen);
	q[6] = cdb_bytes(pkt->pkt_cdbp + 8, pkt->pkt_cdblen - 8);
	/* byte 56 cdbLen, 57..64 lun[8] (LUN in lun[1]), 65 tag, 66 bus, 67 target, 68 vcpuHint */
	q[7] = pkt->pkt_cdblen | (uint64_t)(ap->a_lun & 0xff) << 16;
	q[8] = (uint64_t)REQ_TAG_SIMPLE << 8 | (uint64_t)ap->a_target << 24;
	for (int i = 9; i < 16; i++)
		q[i] = 0;
	wmb();	/* table and descriptor before the index that publishes them */
	sc->req_prod++;
	WRITE_ONCE(d->rs.req_prod, sc->req_prod);
	mb();
	wr32(sc, is_rw_opcode(pkt->pkt_cdbp[0]) ? REG_KICK_RW_IO : REG_KICK_NON_RW_IO, 0);
}

static uint32_t next_context(struct pvscsi_softc *sc, int slot)
{
	sc->seq = (sc->seq + 1) & 0xffffff;
	return sc->seq << 8 | (uint32_t)(slot + 1);	/* never 0, upper 32 bits 0 (the spec's rules) */
}

/* ABORT_CMD for the slot's request; 0 if the adapter took the command. */
static int abort_slot(struct pvscsi_softc *sc, const struct pv_slot *s)
{
	uint32_t w[4] = { s->context, 0, s->target, 0 };

	sc->aborts++;
	return pv_command(sc, CMD_ABORT_CMD, w, 4) == 0 ? 0 : EIO;
}

/* ---- tran_* ----------------------------------------------------------------------------- */

static bool pv_check_pkt(struct pvscsi_softc *sc, const struct scsi_address *ap, const struct scsi_pkt *pkt)
{
	const struct scsi_dma_limits *lim = &sc->hba.limits;
	uint64_t datalen = 0;

	if (pkt->pkt_cdblen == 0 || pkt->pkt_cdblen > SCSI_MAX_CDB || pkt->pkt_sgl_count < 0 ||
	    (uint32_t)pkt->pkt_sgl_count > lim->max_segs || pkt->pkt_datalen > lim->max_xfer ||
	    ap->a_target >= sc->hba.max_target || ap->a_lun >= sc->hba.max_lun ||
	    ((pkt->pkt_flags & FLAG_DATA_IN) && (pkt->pkt_flags & FLAG_DATA_OUT)))
		return false;
	for (int i = 0; i < pkt->pkt_sgl_count; i++) {
		if (pkt->pkt_sgl[i].len == 0 || pkt->pkt_sgl[i].len > lim->max_seg_len)
			return false;
		datalen += pkt->pkt_sgl[i].len;
	}
	return datalen == pkt->pkt_datalen &&
	       (!datalen || (pkt->pkt_flags & (FLAG_DATA_IN | FLAG_DATA_OUT)));
}

static struct pv_slot *slot_of_pkt(struct pvscsi_softc *sc, const struct scsi_pkt *pkt)
{
	for (int i = 0; i < PV_SLOTS; i++)
		if (sc->slots[i].pkt == pkt &&
		    (sc->slots[i].state == SLOT_INFLIGHT || sc->slots[i].state == SLOT_ABANDONED))
			return &sc->slots[i];
	return 0;
}

/* The slot's result goes to its packet; the slot is free again. */
static void finish(struct pvscsi_softc *sc, struct pv_slot *s, struct scsi_pkt *pkt)
{
	fill_result(sc, s, pkt);
	s->pkt = 0;
	pkt->pkt_ha_private = 0;
	s->state = SLOT_FREE;
}

/* Wait for a polled command until its deadline; on timeout abort it, and if even that does not
 * bring it back, leave its slot abandoned. */
static void wait_polled(struct pvscsi_softc *sc, struct pv_slot *s, struct scsi_pkt *pkt)
{
	uint32_t ms = pkt->pkt_time ? pkt->pkt_time : PV_DEFAULT_TIME_MS;
	uint64_t deadline = s->deadline;

	for (;;) {
		reap(sc);
		if (s->state == SLOT_DONE) {
			finish(sc, s, pkt);
			return;
		}
		if (deadline_passed(deadline))
			break;
		cpu_relax();
	}

	sc->timeouts++;
	if (abort_slot(sc, s) == 0) {
		deadline = deadline_after_ms(ms < PV_ABORT_WAIT_MS ? ms : PV_ABORT_WAIT_MS);
		do {
			reap(sc);
			if (s->state != SLOT_INFLIGHT)
				break;
			cpu_relax();
		} while (!deadline_passed(deadline));
	}
	if (s->state == SLOT_DONE)
		s->state = SLOT_FREE;		/* it came back (aborted): the slot is reusable */
	else if (s->state == SLOT_INFLIGHT)
		s->state = SLOT_ABANDONED;
	s->pkt = 0;
	pkt->pkt_ha_private = 0;
	pkt->pkt_reason = CMD_TIMEOUT;
	pkt->pkt_scbp = 0;
	pkt->pkt_resid = pkt->pkt_datalen;
	pkt->pkt_sense_len = 0;
}

static int pv_start(struct scsi_address *ap, struct scsi_pkt *pkt)
{
	struct pvscsi_softc *sc = ap->a_hba->hba_private;
	bool polled = pkt->pkt_flags & FLAG_NOINTR;
	struct pv_slot *s = 0;
	uint64_t flags;
	int i;

	if (sc->broken)
		return TRAN_FATAL_ERROR;
	if (!pv_check_pkt(sc, ap, pkt))
		return TRAN_BADPKT;
	/* After tran_quiesce only the dump's polled commands go out. */
	if (sc->quiesced && !polled)
		return TRAN_FATAL_ERROR;

	reap(sc);
	flags = irq_save();
	for (i = 0; i < PV_SLOTS; i++)
		if (sc->slots[i].state == SLOT_FREE) {
			s = &sc->slots[i];
			break;
		}
	if (!s || sc->req_prod - READ_ONCE(sc->dma->rs.req_cons) >= PV_REQ_ENTRIES) {
		irq_restore(flags);
		return TRAN_BUSY;
	}
	s->context = next_context(sc, i);
	s->polled = polled;
	s->target = ap->a_target;
	s->pkt = pkt;
	pkt->pkt_ha_private = s;
	pkt->pkt_reason = CMD_INCOMPLETE;
	pkt->pkt_scbp = 0;
	pkt->pkt_resid = pkt->pkt_datalen;
	pkt->pkt_sense_len = 0;
	if (polled)
		s->deadline = deadline_after_ms(pkt->pkt_time ? pkt->pkt_time : PV_DEFAULT_TIME_MS);
	s->state = SLOT_INFLIGHT;	/* before the kick: the completion may be written any time after */
	post(sc, s, ap, pkt);
	sc->commands++;
	irq_restore(flags);

	if (!polled)
		return TRAN_ACCEPT;	/* pv_intr completes it */
	sc->polled_commands++;
	if (!(pkt->pkt_flags & FLAG_NOWAIT))
		wait_polled(sc, s, pkt);
	return TRAN_ACCEPT;	/* FLAG_NOWAIT: pv_poll completes it */
}

/* tran_poll: a FLAG_NOWAIT command to completion. Its slot is still its own unless an adapter
 * reset (RESET_ALL for another command) freed every slot: then the command is gone. */
static int pv_poll(struct scsi_address *ap, struct scsi_pkt *pkt)
{
	struct pvscsi_softc *sc = ap->a_hba->hba_private;
	struct pv_slot *s = pkt->pkt_ha_private;

	if (s < sc->slots || s >= sc->slots + PV_SLOTS || s->pkt != pkt ||
	    (s->state != SLOT_INFLIGHT && s->state != SLOT_DONE)) {
		pkt->pkt_ha_private = 0;
		pkt->pkt_reason = CMD_RESET;
		pkt->pkt_resid = pkt->pkt_datalen;
		return TRAN_ACCEPT;
	}
	wait_polled(sc, s, pkt);
	return TRAN_ACCEPT;
}

static int pv_abort(struct scsi_address *ap, struct scsi_pkt *pkt)
{
	struct pvscsi_softc *sc = ap->a_hba->hba_private;
	struct pv_slot *s;
	int ok = 1;

	if (sc->broken)
		return 0;
	reap(sc);
	if (pkt) {
		s = slot_of_pkt(sc, pkt);
		return !s || abort_slot(sc, s) == 0;	/* not (or no longer) ours: nothing to do */
	}
	/* Every command outstanding at that target (the adapter aborts by context only). */
	for (int i = 0; i < PV_SLOTS; i++) {
		s = &sc->slots[i];
		if ((s->state == SLOT_INFLIGHT || s->state == SLOT_ABANDONED) && s->target == ap->a_target &&
		    abort_slot(sc, s) != 0)
			ok = 0;
	}
	return ok;
}

/* Runtime packets lost to an adapter reset: back to their owner as CMD_RESET, so it can retry
 * (never after the quiesce: then they are simply forgotten). */
static int reset_adapter(struct pvscsi_softc *sc)
{
	struct scsi_pkt *lost[PV_SLOTS];
	uint64_t flags = irq_save();
	bool had_intr = sc->intr_on;
	int nlost = 0, err;

	for (int i = 0; i < PV_SLOTS; i++) {
		struct pv_slot *s = &sc->slots[i];

		if ((s->state == SLOT_INFLIGHT || s->state == SLOT_DONE) && !s->polled && s->pkt)
			lost[nlost++] = s->pkt;
	}
	err = bring_up(sc);
	sc->broken = err != 0;
	if (!err && had_intr && !sc->quiesced)
		wr32(sc, REG_INTR_MASK, INTR_CMPL_MASK);	/* the routing (INTx/MSI) is untouched */
	irq_restore(flags);
	if (!sc->quiesced)
		for (int i = 0; i < nlost; i++) {
			lost[i]->pkt_reason = CMD_RESET;
			lost[i]->pkt_resid = lost[i]->pkt_datalen;
			lost[i]->pkt_ha_private = 0;
			if (lost[i]->pkt_comp)
				lost[i]->pkt_comp(lost[i]);
		}
	return err;
}

static int pv_reset(struct scsi_address *ap, int level)
{
	struct pvscsi_softc *sc = ap->a_hba->hba_private;

	switch (level) {
	case RESET_LUN:
	case RESET_TARGET: {
		/* QEMU resets the whole device (a scsi-hd is one LUN); its requests end BUSRESET. */
		uint32_t w[3] = { ap->a_target, (uint32_t)(ap->a_lun & 0xff) << 8, 0 };

		if (sc->broken || ap->a_target >= sc->hba.max_target)
			return 0;
		sc->device_resets++;
		return pv_command(sc, CMD_RESET_DEVICE, w, 3) == 0;
	}
	case RESET_ALL:
		/* The bus: every device resets, every request ends BUSRESET (they report UNIT
		 * ATTENTION next). If the adapter refuses, or is broken, reset the adapter itself. */
		if (!sc->broken) {
			sc->bus_resets++;
			if (pv_command(sc, CMD_RESET_BUS, 0, 0) == 0)
				return 1;
		}
		return reset_adapter(sc) == 0;
	default:
		return 0;
	}
}

static int pv_quiesce(struct scsi_hba *hba)
{
	struct pvscsi_softc *sc = hba->hba_private;
	uint64_t flags = irq_save();
	int err;

	pv_mute(hba);		/* interrupts off for good */
	sc->quiesced = true;	/* runtime commands stop here; what completes is never delivered */
	for (int i = 0; i < PV_SLOTS; i++)
		if (sc->slots[i].state != SLOT_FREE)
			sc->dropped_at_quiesce++;
	sc->quiesces++;
	if (testfault(TF_MASK_ONLY)) {
		/* Deliberately wrong: interrupts masked, runtime commands forgotten, but the adapter
		 * keeps them: nothing is reset or aborted. */
		for (int i = 0; i < PV_SLOTS; i++) {
			sc->slots[i].state = SLOT_FREE;
			sc->slots[i].pkt = 0;
		}
		irq_restore(flags);
		return 0;
	}
	err = bring_up(sc);	/* adapter reset: QEMU cancels what it held; fresh rings */
	sc->broken = err != 0;
	if (!err && (testfault(TF_IRQ_ON) || testfault(TF_INTR_UNMASKED)))
		/* Deliberately wrong: the adapter asks for an interrupt on every completion. */
		wr32(sc, REG_INTR_MASK, INTR_CMPL_MASK);
	if (!err && testfault(TF_INTR_UNMASKED))
		/* ... and its INTx line is on: QEMU raises it (the CPU keeps IF = 0). */
		pci_set_command_bits(sc->pci, 0, PCI_COMMAND_INTX_DISABLE);
	irq_restore(flags);
	return err;
}

static const char *host_status_name(uint16_t st)
{
	switch (st) {
	case BTSTAT_SUCCESS: return "success";
	case BTSTAT_DATA_UNDERRUN: return "underrun";
	case BTSTAT_SELTIMEO: return "selection-timeout";
	case BTSTAT_DATARUN: return "data-run";
	case BTSTAT_BUSRESET: return "bus-reset";
	case BTSTAT_ABORTQUEUE: return "aborted";
	default: return "other";
	}
}

static void pv_print_info(struct scsi_hba *hba)
{
	struct pvscsi_softc *sc = hba->hba_private;
	int busy = 0, abandoned = 0;

	for (int i = 0; i < PV_SLOTS; i++) {
		busy += sc->slots[i].state != SLOT_FREE;
		abandoned += sc->slots[i].state == SLOT_ABANDONED;
	}
	printf("  %s: registers at mmio %#lx, rings state %#lx, request ring %#lx (%u), completion ring "
	       "%#lx (%u), %u slots of %u s/g elements\n",
	       sc->name, (unsigned long)sc->regs, (unsigned long)(uintptr_t)&sc->dma->rs,
	       (unsigned long)(uintptr_t)sc->dma->req, PV_REQ_ENTRIES, (unsigned long)(uintptr_t)sc->dma->cmp,
	       PV_CMP_ENTRIES, PV_SLOTS, PV_MAX_SEGS);
	printf("  req prod %u cons %u, cmp prod %u cons %u; interrupts %s", sc->req_prod,
	       READ_ONCE(sc->dma->rs.req_cons), READ_ONCE(sc->dma->rs.cmp_prod), sc->cmp_cons,
	       sc->intr_on ? "on" : "off (polled)");
	if (sc->intr_on)
		printf(" vector 0x%02x", sc->intr_vector);
	printf("%s%s, %d in flight (%d abandoned)\n", sc->quiesced ? ", quiesced" : "",
	       sc->broken ? ", BROKEN" : "", busy, abandoned);
	printf("  last non-success completion: host %#x (%s), scsi %#x, dataLen %llu\n",
	       sc->last_host_status, host_status_name(sc->last_host_status), sc->last_scsi_status,
	       (unsigned long long)sc->last_data_len);
	printf("  commands %llu (polled %llu, by interrupt %llu), interrupts %llu, timeouts %llu, "
	       "aborts %llu, stale completions %llu, data runs %llu, selection timeouts %llu\n",
	       (unsigned long long)sc->commands, (unsigned long long)sc->polled_commands,
	       (unsigned long long)sc->intr_completions, (unsigned long long)sc->interrupts,
	       (unsigned long long)sc->timeouts, (unsigned long long)sc->aborts,
	       (unsigned long long)sc->stale_completions, (unsigned long long)sc->dataruns,
	       (unsigned long long)sc->selection_timeouts);
	printf("  device resets %llu, bus resets %llu, adapter resets %llu, quiesces %llu (dropped %llu)\n",
	       (unsigned long long)sc->device_resets, (unsigned long long)sc->bus_resets,
	       (unsigned long long)sc->adapter_resets, (unsigned long long)sc->quiesces,
	       (unsigned long long)sc->dropped_at_quiesce);
}

/* DUMPINIT / DUMPTERM: the dump path touches the command, interrupt status, interrupt mask
 * and both kick registers, BAR0 pages 0-4; MSI and INTx are switched in config space (port
 * I/O). The rings and tables are in the kernel image. */
static int pv_dump_pin(struct scsi_hba *hba)
{
	struct pvscsi_softc *sc = hba->hba_private;

	return pin_phys(sc->regs, PV_REG_WINDOW);
}

static void pv_dump_unpin(struct scsi_hba *hba)
{
	struct pvscsi_softc *sc = hba->hba_private;

	unpin_phys(sc->regs, PV_REG_WINDOW);
}

/* ---- runtime interrupts ------------------------------------------------------------------- */

/*
 * INTx (pin A) through the PIIX3's PIRQ routing to a level-triggered I/O APIC pin (bus/pci.h),
 * masked until the adapter's mask is on. INTx rather than the MSI capability: QEMU's pvscsi has
 * MSI (not MSI-X), which the shared routing helpers do not program; the level line is cleared
 * by acknowledging INTR_STATUS.
 */
static int pv_intr_enable(struct scsi_hba *hba, uint8_t vector)
{
	struct pvscsi_softc *sc = hba->hba_private;
	uint64_t flags;
	int pin, err;

	if (sc->broken || sc->quiesced)
		return EIO;
	if (!sc->intx_routed) {
		err = pci_intx_route(sc->pci, vector, &pin);
		if (err)
			return err;
		sc->intx_pin = pin;
		sc->intx_routed = true;
		printf("%s: INTx on ISA IRQ %d, I/O APIC pin %d, vector %#x (level)\n", sc->name, pin,
		       pin, vector);
	}
	flags = irq_save();
	pci_msi_disable(sc->pci, sc->msi_cap);
	sc->intr_vector = vector;
	sc->intr_on = true;
	wr32(sc, REG_INTR_STATUS, INTR_ALL);	/* nothing runtime is outstanding yet */
	pci_set_command_bits(sc->pci, 0, PCI_COMMAND_INTX_DISABLE);
	wr32(sc, REG_INTR_MASK, INTR_CMPL_MASK);
	irq_restore(flags);
	pci_intx_unmask(sc->intx_pin);
	return 0;
}

/* The vector's handler (IF = 0): acknowledge first (the line drops; a completion after this
 * raises it again), then reap and hand runtime completions to pkt_comp, one at a time (pkt_comp
 * may start new commands). */
static void pv_intr(struct scsi_hba *hba)
{
	struct pvscsi_softc *sc = hba->hba_private;

	sc->interrupts++;
	wr32(sc, REG_INTR_STATUS, INTR_ALL);
	if (sc->quiesced)
		return;
	reap(sc);
	for (int i = 0; i < PV_SLOTS; i++) {
		struct pv_slot *s = &sc->slots[i];
		struct scsi_pkt *pkt;
		uint64_t flags = irq_save();

		if (s->state != SLOT_DONE || s->polled || !s->pkt) {
			irq_restore(flags);
			continue;
		}
		pkt = s->pkt;
		finish(sc, s, pkt);
		sc->intr_completions++;
		irq_restore(flags);
		if (pkt->pkt_comp)
			pkt->pkt_comp(pkt);
	}
}

/* Crash time, IF = 0, first thing: the adapter's mask off (QEMU lowers the line at once), INTx
 * and MSI disabled, the I/O APIC pin masked. (tran_quiesce mutes the adapter again but leaves
 * the I/O APIC alone: the dump path must not touch what it has not pinned.) */
static void pv_intr_mute(struct scsi_hba *hba)
{
	struct pvscsi_softc *sc = hba->hba_private;

	pv_mute(hba);
	if (sc->intx_routed)
		pci_intx_mask(sc->intx_pin);
}

static const struct scsi_hba_tran pv_tran = {
	.tran_name = PVSCSI_TRAN_NAME,
	.tran_start = pv_start,
	.tran_reset = pv_reset,
	.tran_abort = pv_abort,
	.tran_poll = pv_poll,
	.tran_quiesce = pv_quiesce,
	.tran_print_info = pv_print_info,
	.tran_dump_pin = pv_dump_pin,
	.tran_dump_unpin = pv_dump_unpin,
	.tran_intr_enable = pv_intr_enable,
	.tran_intr = pv_intr,
	.tran_intr_mute = pv_intr_mute,
};

/* ---- probe ---------------------------------------------------------------------------------- */

static int pv_attach(struct pvscsi_softc *sc, struct pci_dev *pci, struct pv_dma *dma)
{
	const struct pci_bar *bar = &pci->bar[0];
	int err;

	memset(sc, 0, sizeof(*sc));
	sc->pci = pci;
	sc->dma = dma;
	snprintf(sc->name, sizeof(sc->name), "pvscsi %02x:%02x.%x", pci->bus, pci->dev, pci->fn);
	/* BAR0: the registers, 32-bit memory space (inside the identity-mapped PCI hole). */
	if (pci->nbars < 1 || bar->io || !bar->base || bar->size < PV_BAR_SIZE ||
	    bar->base + bar->size > (4ull << 30))
		return ENXIO;
	sc->regs = (uintptr_t)bar->base;
	sc->msi_cap = pci_find_cap(pci, PCI_CAP_ID_MSI, 0);
	pci_msi_disable(sc->pci, sc->msi_cap);
	pci_set_command_bits(pci, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE, 0);
	err = bring_up(sc);
	if (err)
		return err;

	sc->hba.tran = &pv_tran;
	/* 64-bit addresses everywhere; a table of 32 elements (the packet's limit), each up to
	 * the element's 32-bit length (page-rounded); a command's length is a packet's uint32. */
	sc->hba.limits.dma_addr_max = ~0ull;
	sc->hba.limits.max_xfer = 0xfffff000u;
	sc->hba.limits.max_segs = PV_MAX_SEGS;
	sc->hba.limits.max_seg_len = 0xfffff000u;
	sc->hba.max_target = PV_MAX_TARGET;
	sc->hba.max_lun = PV_MAX_LUN;
	sc->hba.initiator_id = 0xffff;	/* no parallel bus of ours: the adapter addresses targets */
	sc->hba.max_polled = PV_SLOTS - 1;	/* one kept for a failed command's retry */
	sc->hba.hba_private = sc;
	sc->hba.name = sc->name;
	return 0;
}

int pvscsi_probe(void)
{
	static const uint16_t ids[] = { PVSCSI_PCI_DEVICE };
	struct pci_dev *pci;
	int registered = 0;

	for (int i = 0; (pci = pci_find(PVSCSI_PCI_VENDOR, ids, 1, i)) != 0; i++) {
		struct pvscsi_softc *sc;
		int err;

		if (pv_count == PV_MAX_HBAS) {
			printf("pvscsi: more than %d HBAs, ignoring %02x:%02x.%x\n", PV_MAX_HBAS, pci->bus,
			       pci->dev, pci->fn);
			break;
		}
		sc = &pv_softc[pv_count];
		err = pv_attach(sc, pci, &pv_dma[pv_count]);
		if (!err)
			err = scsi_hba_register(&sc->hba);
		if (err) {
			printf("pvscsi at %02x:%02x.%x: not attached: %s\n", pci->bus, pci->dev, pci->fn,
			       errno_name(err));
			continue;
		}
		pv_count++;
		registered++;
	}
	return registered;
}
SCSI_HBA_DRIVER(PVSCSI_TRAN_NAME, "pvscsi", pvscsi_probe);
