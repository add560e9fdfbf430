/*
 * Intel 82574L (QEMU's -device e1000e, PCI 8086:10d3) as a network dump NIC
 * (dump/dumpnic.h, docs/netdump-protocol.md section 2), written against the 82574 datasheet
 * and QEMU's model (hw/net/e1000e_core.c, QEMU 7.2).
 *
 * One receive and one transmit queue (queue 0 of each), **legacy descriptors** (16 bytes, no
 * RFCTL.EXTEN, DTYP 0): they carry all a polled driver needs (buffer, length, DD/EOP, errors)
 * and need neither packet split nor the write-back format of extended descriptors. No offload
 * (RXCSUM 0, no context descriptors), no VLAN, no multicast: the dump link is one Ethernet
 * segment with the server on it.
 *
 *  - Receive: one ring of 2048-byte buffers (16 descriptors), or at an MTU above 1500 of
 *    4096-byte buffers (RCTL.BSEX, 8 descriptors) with RCTL.LPE: the same 32 KiB either way
 *    (RX_BUF_BYTES: ACKs and ARP are small). A jumbo frame spans up to 3 descriptors (EOP on
 *    the last) and is put back together in DUMPREAD's uio. Descriptors go back to the device
 *    a quarter of the ring at a time (rx_give_back). BAM (the server may ARP for us), SECRC
 *    (no FCS in the buffer).
 *  - Transmit: a ring of 16 descriptors pointing straight at the caller's iovecs (identity
 *    mapped: no copy, no bounce buffer), IFCS, RS on each, EOP on the last. QEMU sends during
 *    the TDT write; dumpwrite polls the last descriptor's DD against a TSC deadline.
 *  - Interrupts: INTx only (MSI and MSI-X stay off). From DUMPINIT the runtime keeps the
 *    receive interrupts on (IMS = RXT0 | RXDMT0 | RXO | LSC, INTx enabled in the command
 *    register), as an OS would; nothing of this kernel services them (no I/O APIC pin is
 *    routed for the NIC), but QEMU's e1000e_irq_legacy_notify trace shows every one. DUMPSTART
 *    masks them all (IMC = ~0), sets INTx disable and clears ICR.
 *  - DUMPSTART drops what the runtime left: receive and transmit stopped, both rings rebuilt
 *    empty (head and tail 0), then enabled again. Not a device reset: QEMU 7.2's CTRL.RST only
 *    reloads the MAC address (e1000e_set_ctrl), and on real silicon a reset would restart
 *    autonegotiation (seconds without a link). A ring reset drops the same things: descriptors
 *    the device had not filled or sent are gone, and frames it still holds go into fresh rings.
 *
 * Everything the device and the dump path write (softc, rings, receive buffers) is static and
 * `__dumpstate`; DUMPINIT pins it and the register pages the dump path touches. Every wait has
 * a TSC deadline.
 */
#include "arch/x86/cpu.h"
#include "arch/x86/io.h"
#include "arch/x86/pin.h"
#include "arch/x86/tsc.h"
#include "bus/pci.h"
#include "dump/dumpnic.h"
#include "lib/dumpstate.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/testfault.h"

#define E1000E_VENDOR		0x8086
#define E1000E_DEVICE		0x10d3	/* 82574L */

/* ---- registers (BAR0, 128 KiB; 32-bit accesses) ------------------------------------------ */

#define REG_CTRL		0x0000
#define REG_STATUS		0x0008
#define REG_EECD		0x0010
#define REG_EERD		0x0014
#define REG_ICR			0x00c0
#define REG_ITR			0x00c4
#define REG_IMS			0x00d0
#define REG_IMC			0x00d8
#define REG_RCTL		0x0100
#define REG_TCTL		0x0400
#define REG_TIPG		0x0410
#define REG_RDBAL		0x2800
#define REG_RDBAH		0x2804
#define REG_RDLEN		0x2808
#define REG_RDH			0x2810
#define REG_RDT			0x2818
#define REG_RDTR		0x2820
#define REG_RADV		0x282c
#define REG_TDBAL		0x3800
#define REG_TDBAH		0x3804
#define REG_TDLEN		0x3808
#define REG_TDH			0x3810
#define REG_TDT			0x3818
#define REG_TARC0		0x3840
#define REG_RXCSUM		0x5000
#define REG_RFCTL		0x5008
#define REG_MTA			0x5200	/* 128 words */
#define REG_RAL0		0x5400
#define REG_RAH0		0x5404
#define E1000E_BAR_SIZE		0x20000
#define E1000E_DUMP_REGS	0x4000	/* pages 0-3: every register DUMPSTART..DUMPTERM touches */

#define CTRL_GIO_MASTER_DISABLE	(1u << 2)
#define CTRL_SLU		(1u << 6)
#define CTRL_FRCSPD		(1u << 11)
#define CTRL_FRCDPLX		(1u << 12)
#define CTRL_RST		(1u << 26)
#define CTRL_VME		(1u << 30)
#define CTRL_PHY_RST		(1u << 31)
#define STATUS_LU		(1u << 1)
#define STATUS_GIO_MASTER_EN	(1u << 19)
#define EECD_AUTO_RD		(1u << 9)
#define EERD_START		(1u << 0)
#define EERD_DONE		(1u << 1)

#define ICR_LSC			(1u << 2)
#define ICR_RXDMT0		(1u << 4)
#define ICR_RXO			(1u << 6)
#define ICR_RXT0		(1u << 7)
#define IMS_RUNTIME		(ICR_RXT0 | ICR_RXDMT0 | ICR_RXO | ICR_LSC)	/* receive, link */

#define RCTL_EN			(1u << 1)
#define RCTL_LPE		(1u << 5)
#define RCTL_BAM		(1u << 15)
#define RCTL_BSIZE_4096		(3u << 16)	/* with BSEX; 0 without it is 2048 */
#define RCTL_BSEX		(1u << 25)
#define RCTL_SECRC		(1u << 26)

#define TCTL_EN			(1u << 1)
#define TCTL_PSP		(1u << 3)	/* pad short frames to 64 bytes */
#define TCTL_CT			(0x0fu << 4)
#define TCTL_COLD		(0x3fu << 12)	/* full duplex */
#define TCTL_RTLC		(1u << 24)
#define TCTL_MULR		(1u << 28)	/* 82574: reserved, set */
#define TCTL_BASE		(TCTL_PSP | TCTL_CT | TCTL_COLD | TCTL_RTLC | TCTL_MULR)	/* without EN */
#define TIPG_DEFAULT		(8u | 8u << 10 | 6u << 20)
#define TARC0_ENABLE		(1u << 10)	/* QEMU sends nothing from queue 0 without it */

#define RFCTL_ISCSI_DIS		(1u << 0)
#define RFCTL_NFSW_DIS		(1u << 6)
#define RFCTL_NFSR_DIS		(1u << 7)	/* EXTEN (bit 15) clear: legacy descriptors */

#define RAH_AV			(1u << 31)

/* ---- descriptors ------------------------------------------------------------------------- */

struct e1000e_rx_desc {
	uint64_t addr;
	uint16_t length;
	uint16_t csum;
	uint8_t status;
	uint8_t errors;
	uint16_t special;
};

struct e1000e_tx_desc {
	uint64_t addr;
	uint16_t length;
	uint8_t cso;
	uint8_t cmd;
	uint8_t status;
	uint8_t css;
	uint16_t special;
};

_Static_assert(sizeof(struct e1000e_rx_desc) == 16, "legacy receive descriptor");
_Static_assert(sizeof(struct e1000e_tx_desc) == 16, "legacy transmit descriptor");

#define RXD_STAT_DD		0x01
#define RXD_STAT_EOP		0x02
#define RXD_ERR_FRAME		0x97	/* CE, SE, SEQ, CXE, RXE: the frame itself is bad */
#define TXD_CMD_EOP		0x01
#define TXD_CMD_IFCS		0x02
#define TXD_CMD_RS		0x08
#define TXD_STAT_DD		0x01

#define PAGE			4096u
#define RX_BUF_BYTES		(32u * 1024)	/* all receive buffers of one NIC: ACKs and ARP are small */
#define RX_BUF_SMALL		2048u		/* MTU <= 1500: one frame, one buffer */
#define RX_BUF_JUMBO		4096u		/* MTU > 1500: a 9014-byte frame in 3 */
#define RX_DESC_MAX		(RX_BUF_BYTES / RX_BUF_SMALL)	/* 16 */
#define TX_DESC			16		/* a multiple of 8: RDLEN/TDLEN are 128-byte units */
#define TX_MAX_SEGS		(TX_DESC - 1)
#define TX_SEG_MAX		16288u		/* a legacy descriptor's largest buffer */
#define MTU_SMALL		1500u		/* the largest MTU of RX_BUF_SMALL buffers */
#define MTU_MAX			9000u		/* the 82574's jumbo limit (9018-byte frames) */
#define E1000E_MAX_NICS		2
#define RESET_WAIT_MS		100
#define LINK_WAIT_MS		2000
#define EERD_WAIT_MS		10

/* One NIC's DMA memory: the rings in one page, then the receive buffers. */
struct e1000e_dma {
	struct e1000e_rx_desc rx[RX_DESC_MAX] __attribute__((aligned(PAGE)));
	struct e1000e_tx_desc tx[TX_DESC] __attribute__((aligned(128)));
	uint8_t rxbuf[RX_BUF_BYTES] __attribute__((aligned(PAGE)));
};

_Static_assert(sizeof(((struct e1000e_dma *)0)->rx) + sizeof(((struct e1000e_dma *)0)->tx) <= PAGE,
	       "both rings in one page");

enum nic_state {
	NIC_FREE,
	NIC_ATTACHED,		/* reset, quiet: no rings */
	NIC_READY,		/* DUMPINIT: rings up, runtime interrupts on */
	NIC_DUMPING,		/* DUMPSTART: interrupts masked, fresh rings */
	NIC_ENDED,		/* DUMPEND: quiet again */
};

struct e1000e_softc {
	struct pci_dev *pci;
	uintptr_t regs;
	enum nic_state state;
	struct e1000e_dma *dma;
	uint32_t mtu;
	uint32_t iotimeout_ms;
	uint32_t rx_buf;	/* bytes per receive buffer */
	uint32_t nrx;		/* receive descriptors in use */
	uint32_t rctl;		/* RCTL without EN */
	uint32_t rx_next;	/* next receive descriptor to look at */
	uint32_t rx_unreturned;	/* read, not yet given back (RDT) */
	uint32_t tx_tail;	/* our TDT */
	uint8_t mac[ETHER_ADDR_LEN];
	char where[16];
	/* statistics */
	uint64_t tx_frames, tx_bytes, tx_timeouts, rx_frames, rx_bytes, rx_errors, rx_too_big;
	uint64_t rx_dropped_at_start, ring_resets;
};

static struct e1000e_softc nics[E1000E_MAX_NICS] __dumpstate;
static struct e1000e_dma nic_dma[E1000E_MAX_NICS] __dumpstate;

static uint32_t rd32(const struct e1000e_softc *sc, uint32_t reg) { return mmio_read32(sc->regs + reg); }
static void wr32(const struct e1000e_softc *sc, uint32_t reg, uint32_t v) { mmio_write32(sc->regs + reg, v); }

/* Every interrupt cause masked, INTx disabled, what ICR held cleared (with IMS 0 the read clears
 * it and QEMU lowers the line). Register and config-space accesses only. */
static void intr_mask_all(struct e1000e_softc *sc)
{
	wr32(sc, REG_IMC, 0xffffffffu);
	pci_set_command_bits(sc->pci, PCI_COMMAND_INTX_DISABLE, 0);
	(void)rd32(sc, REG_ICR);
}

/* Poll until (reg & mask) == want, or the deadline: true if it got there. */
static bool wait_reg(struct e1000e_softc *sc, uint32_t reg, uint32_t mask, uint32_t want, uint32_t ms)
{
	uint64_t deadline = deadline_after_ms(ms);

	for (;;) {
		if ((rd32(sc, reg) & mask) == want)
			return true;
		if (deadline_passed(deadline))
			return false;
		cpu_relax();
	}
}

/* ---- rings ----------------------------------------------------------------------------------- */

static void rx_stop(struct e1000e_softc *sc)
{
	wr32(sc, REG_RCTL, sc->rctl);
}

static void tx_stop(struct e1000e_softc *sc)
{
	wr32(sc, REG_TCTL, TCTL_BASE);
}

/*
 * A fresh, empty receive ring: receive off first (QEMU writes nothing into a ring of a receiver
 * that is off), every descriptor back to its buffer with its status clear, head = tail = 0, on
 * again, then the tail that hands all but one descriptor to the device (the one at RDT is the
 * gap that tells a full ring from an empty one).
 */
static void rx_ring_reset(struct e1000e_softc *sc)
{
	struct e1000e_dma *d = sc->dma;
	uintptr_t base = (uintptr_t)d->rx;

	rx_stop(sc);
	memset(d->rx, 0, sizeof(d->rx));
	for (uint32_t i = 0; i < sc->nrx; i++)
		d->rx[i].addr = (uintptr_t)&d->rxbuf[i * sc->rx_buf];
	wr32(sc, REG_RDBAL, (uint32_t)base);
	wr32(sc, REG_RDBAH, (uint32_t)((uint64_t)base >> 32));
	wr32(sc, REG_RDLEN, sc->nrx * (uint32_t)sizeof(struct e1000e_rx_desc));
	wr32(sc, REG_RDH, 0);
	wr32(sc, REG_RDT, 0);
	sc->rx_next = 0;
	sc->rx_unreturned = 0;
	mb();
	wr32(sc, REG_RCTL, sc->rctl | RCTL_EN);
	wr32(sc, REG_RDT, sc->nrx - 1);
}

/* A fresh, empty transmit ring: whatever was not sent is forgotten. */
static void tx_ring_reset(struct e1000e_softc *sc)
{
	struct e1000e_dma *d = sc->dma;
	uintptr_t base = (uintptr_t)d->tx;

	tx_stop(sc);
	memset(d->tx, 0, sizeof(d->tx));
	wr32(sc, REG_TDBAL, (uint32_t)base);
	wr32(sc, REG_TDBAH, (uint32_t)((uint64_t)base >> 32));
	wr32(sc, REG_TDLEN, (uint32_t)sizeof(d->tx));
	wr32(sc, REG_TDH, 0);
	wr32(sc, REG_TDT, 0);
	sc->tx_tail = 0;
	mb();
	wr32(sc, REG_TCTL, TCTL_BASE | TCTL_EN);
}

/* Descriptors the device has filled and we have not looked at (for DUMPSTART's count). */
static uint32_t rx_pending(struct e1000e_softc *sc)
{
	uint32_t n = 0;

	for (uint32_t i = sc->rx_next; n < sc->nrx; i = (i + 1) % sc->nrx, n++)
		if (!(READ_ONCE(sc->dma->rx[i].status) & RXD_STAT_DD))
			break;
	return n;
}

/*
 * DUMPINIT: the receive and transmit settings for this MTU, once (DUMPSTART then touches only
 * the rings, the interrupt registers and RCTL/TCTL: the pinned register window).
 */
static void configure(struct e1000e_softc *sc)
{
	bool jumbo = sc->mtu > MTU_SMALL;

	sc->rx_buf = jumbo ? RX_BUF_JUMBO : RX_BUF_SMALL;
	sc->nrx = RX_BUF_BYTES / sc->rx_buf;
	sc->rctl = RCTL_BAM | RCTL_SECRC | (jumbo ? RCTL_LPE | RCTL_BSEX | RCTL_BSIZE_4096 : 0);
	wr32(sc, REG_RXCSUM, 0);
	wr32(sc, REG_RFCTL, RFCTL_ISCSI_DIS | RFCTL_NFSW_DIS | RFCTL_NFSR_DIS);
	wr32(sc, REG_RDTR, 0);		/* receive interrupts at once, not delayed */
	wr32(sc, REG_RADV, 0);
	wr32(sc, REG_ITR, 0);
	wr32(sc, REG_TIPG, TIPG_DEFAULT);
	wr32(sc, REG_TARC0, rd32(sc, REG_TARC0) | TARC0_ENABLE);
}

/* Both rings rebuilt empty, receive and transmit on. */
static void rings_reset(struct e1000e_softc *sc)
{
	rx_ring_reset(sc);
	tx_ring_reset(sc);
	sc->ring_resets++;
}

/* Receive and transmit off, interrupts masked: the device writes nothing more into memory. */
static void quiet(struct e1000e_softc *sc)
{
	intr_mask_all(sc);
	rx_stop(sc);
	tx_stop(sc);
}

/* ---- the frame routines ---------------------------------------------------------------------- */

/*
 * Before DUMPSTART the frame routines stand in for the runtime's interrupt handler, which this
 * kernel does not have: they acknowledge what interrupted (the ICR read clears it and QEMU
 * lowers the line). Left pending, QEMU 7.2 re-raises the level every ITR interval (128 us)
 * and traces each. From DUMPSTART on nothing may be pending to acknowledge: ICR is left alone.
 */
static void runtime_ack(struct e1000e_softc *sc)
{
	if (sc->state == NIC_READY)
		(void)rd32(sc, REG_ICR);
}

/* The iovecs' total, or -1 if the uio is malformed (their total must be uio_resid). */
static int64_t uio_total(const struct uio *uio, int max_iov)
{
	uint64_t sum;

	if (!uio || uio->uio_iovcnt < 1 || uio->uio_iovcnt > max_iov || !uio->uio_iov)
		return -1;
	for (int i = 0; i < uio->uio_iovcnt; i++)
		if (uio->uio_iov[i].iov_len && !uio->uio_iov[i].iov_base)
			return -1;
	sum = iov_total(uio->uio_iov, uio->uio_iovcnt);
	return sum == uio->uio_resid ? (int64_t)sum : -1;
}

/*
 * DUMPQUERY's dumpwrite: one frame (destination MAC first, no FCS), one descriptor per iovec,
 * straight from the caller's memory. Returns once the device set DD on the last descriptor
 * (QEMU: during the TDT write), or ETIMEDOUT after iotimeout; then the ring is rebuilt so a
 * late completion can never be taken for the next frame's.
 */
static int e1000e_dumpwrite(struct dump_nic *nic, struct uio *uio)
{
	struct e1000e_softc *sc = nic ? nic->softc : 0;
	struct e1000e_tx_desc *last = 0;
	int64_t total;
	uint64_t deadline;

	if (!sc || (sc->state != NIC_READY && sc->state != NIC_DUMPING))
		return EINVAL;
	total = uio_total(uio, TX_MAX_SEGS);
	if (total < ETHER_HEADER)
		return EINVAL;
	if ((uint64_t)total > ETHER_HEADER + sc->mtu)
		return EMSGSIZE;
	for (int i = 0; i < uio->uio_iovcnt; i++) {
		const struct iovec *v = &uio->uio_iov[i];

		if (!v->iov_len)
			continue;
		if (v->iov_len > TX_SEG_MAX)
			return EINVAL;
		last = &sc->dma->tx[sc->tx_tail];
		*last = (struct e1000e_tx_desc){ .addr = (uintptr_t)v->iov_base, .length = (uint16_t)v->iov_len,
						 .cmd = TXD_CMD_IFCS | TXD_CMD_RS };
		sc->tx_tail = (sc->tx_tail + 1) % TX_DESC;
	}
	last->cmd |= TXD_CMD_EOP;
	mb();		/* the descriptors before the tail */
	wr32(sc, REG_TDT, sc->tx_tail);

	deadline = deadline_after_ms(sc->iotimeout_ms);
	while (!(READ_ONCE(last->status) & TXD_STAT_DD)) {
		if (deadline_passed(deadline)) {
			sc->tx_timeouts++;
			tx_ring_reset(sc);
			return ETIMEDOUT;
		}
		cpu_relax();
	}
	sc->tx_frames++;
	sc->tx_bytes += (uint64_t)total;
	uio->uio_resid = 0;
	runtime_ack(sc);
	return 0;
}

/*
 * The descriptors of the next whole frame from rx_next: their count (the last one has EOP),
 * or 0 while none has come or it is not complete yet.
 */
static uint32_t rx_frame_descs(struct e1000e_softc *sc)
{
	uint32_t i = sc->rx_next;

	for (uint32_t n = 1; n < sc->nrx; n++, i = (i + 1) % sc->nrx) {
		uint8_t st = READ_ONCE(sc->dma->rx[i].status);

		if (!(st & RXD_STAT_DD))
			return 0;
		if (st & RXD_STAT_EOP)
			return n;
	}
	return sc->nrx - 1;	/* no EOP in a full ring: cannot be; dropped as one bad frame */
}

/*
 * Give n descriptors from rx_next back to the device, a quarter of the ring at a time (the last
 * one read becomes the new gap at RDT): every RDT write is a VM exit. Under nested KVM with an
 * RDT write per frame, a netdump through QEMU user networking fell behind its ACKs and
 * retransmitted each message 3-4 times (100 new messages/s); batched, 765/s and none. At most a
 * quarter of the ring is held back from the device.
 */
static void rx_give_back(struct e1000e_softc *sc, uint32_t n)
{
	uint32_t i = sc->rx_next;

	for (uint32_t k = 0; k < n; k++, i = (i + 1) % sc->nrx) {
		struct e1000e_rx_desc *d = &sc->dma->rx[i];

		d->status = 0;
		d->errors = 0;
		d->length = 0;
	}
	sc->rx_next = i;
	sc->rx_unreturned += n;
	if (sc->rx_unreturned < sc->nrx / 4)
		return;
	sc->rx_unreturned = 0;
	mb();
	wr32(sc, REG_RDT, (i + sc->nrx - 1) % sc->nrx);
}

/* DUMPREAD: the next good frame within ms milliseconds (0: only what is there now). */
static int e1000e_read(struct e1000e_softc *sc, struct uio *uio, uint32_t ms)
{
	uint64_t deadline = deadline_after_ms(ms);
	int64_t room = uio_total(uio, 1 << 16);

	if (sc->state != NIC_READY && sc->state != NIC_DUMPING)
		return EINVAL;
	if (room < 0)
		return EINVAL;
	for (;;) {
		uint32_t n = rx_frame_descs(sc), i = sc->rx_next;
		uint64_t len = 0;
		uint8_t errors = 0;

		if (!n) {
			if (deadline_passed(deadline)) {
				runtime_ack(sc);
				return ETIMEDOUT;
			}
			cpu_relax();
			continue;
		}
		rmb();		/* the buffers after the status that says they are written */
		for (uint32_t k = 0; k < n; k++, i = (i + 1) % sc->nrx) {
			const struct e1000e_rx_desc *d = &sc->dma->rx[i];
			uint64_t part = d->length <= sc->rx_buf ? d->length : sc->rx_buf;

			errors |= d->errors;
			if (k == n - 1 && !(d->status & RXD_STAT_EOP))
				errors |= RXD_ERR_FRAME;	/* rx_frame_descs found no end */
			if (!(errors & RXD_ERR_FRAME) && len + part <= (uint64_t)room)
				iov_scatter(uio->uio_iov, uio->uio_iovcnt, len, (const void *)(uintptr_t)d->addr, part);
			len += part;
		}
		rx_give_back(sc, n);
		runtime_ack(sc);
		if ((errors & RXD_ERR_FRAME) || !len) {
			sc->rx_errors++;
			continue;	/* a bad frame: look for the next one */
		}
		if (len > (uint64_t)room) {
			sc->rx_too_big++;
			return EMSGSIZE;
		}
		sc->rx_frames++;
		sc->rx_bytes += len;
		uio->uio_resid = (uint64_t)room - len;
		return 0;
	}
}

/* ---- dddump ------------------------------------------------------------------------------------ */

static void fill_stat(struct e1000e_softc *sc, struct dumpio_stat *st, int err, enum dumpio_op op)
{
	if (!st)
		return;
	st->error = err;
	st->op = op;
	st->device_status = rd32(sc, REG_STATUS);
	st->request_status = 0xff;
	st->failing_offset = 0;
}

/* The link, waited for up to ms (QEMU's is up at once; silicon autonegotiates). */
static bool link_wait(struct e1000e_softc *sc, uint32_t ms)
{
	return wait_reg(sc, REG_STATUS, STATUS_LU, STATUS_LU, ms);
}

static int pin_dump_path(struct e1000e_softc *sc)
{
	int err = pin(sc, sizeof(*sc));

	if (!err) {
		err = pin(sc->dma, sizeof(*sc->dma));
		if (err)
			unpin(sc, sizeof(*sc));
	}
	if (!err) {
		err = pin_phys(sc->regs, E1000E_DUMP_REGS);
		if (err) {
			unpin(sc->dma, sizeof(*sc->dma));
			unpin(sc, sizeof(*sc));
		}
	}
	return err;
}

/* Pinned from DUMPINIT (state NIC_READY and on) to DUMPTERM. */
static void unpin_dump_path(struct e1000e_softc *sc)
{
	unpin_phys(sc->regs, E1000E_DUMP_REGS);
	unpin(sc->dma, sizeof(*sc->dma));
	unpin(sc, sizeof(*sc));
}

static int dump_init(struct e1000e_softc *sc, struct dumpio_stat *st)
{
	int err;

	if (sc->state >= NIC_READY)
		return 0;	/* already a dump target */
	if (!in_dumpstate(sc, sizeof(*sc)) || !in_dumpstate(sc->dma, sizeof(*sc->dma))) {
		fill_stat(sc, st, EFAULT, DUMPIO_OP_NONE);
		return EFAULT;
	}
	err = pin_dump_path(sc);
	if (err) {
		fill_stat(sc, st, err, DUMPIO_OP_NONE);
		return err;
	}
	if (!link_wait(sc, LINK_WAIT_MS))
		printf("e1000e %s: no link yet (STATUS %#x)\n", sc->where, rd32(sc, REG_STATUS));
	configure(sc);
	rings_reset(sc);
	/* The runtime's receive interrupt, as an OS would have it (see runtime_ack). */
	(void)rd32(sc, REG_ICR);
	pci_set_command_bits(sc->pci, 0, PCI_COMMAND_INTX_DISABLE);
	wr32(sc, REG_IMS, IMS_RUNTIME);
	sc->state = NIC_READY;
	return 0;
}

/*
 * DUMPSTART, IF = 0: the device's interrupts masked first (nothing may fire from here on),
 * then both rings rebuilt empty: frames the runtime left unread and frames not yet sent are
 * dropped.
 */
static int dump_start(struct e1000e_softc *sc, struct dumpio_stat *st)
{
	/* testfault=irq-on and intr-unmasked (deliberately wrong): the receive interrupts stay on */
	bool leave_ims = testfault_irq_on_now || testfault(TF_INTR_UNMASKED);

	if (sc->state < NIC_READY) {
		fill_stat(sc, st, EINVAL, DUMPIO_OP_NONE);
		return EINVAL;
	}
	if (!leave_ims)
		intr_mask_all(sc);
	if (testfault(TF_MASK_ONLY)) {
		/* Deliberately wrong: masked, but what the runtime left in the rings stays there. */
		sc->state = NIC_DUMPING;
		return 0;
	}
	sc->rx_dropped_at_start += rx_pending(sc);
	rings_reset(sc);
	if (leave_ims) {
		wr32(sc, REG_IMS, IMS_RUNTIME);
		if (testfault(TF_INTR_UNMASKED))
			/* ... and the INTx line on: QEMU raises it (the CPU keeps IF = 0) */
			pci_set_command_bits(sc->pci, 0, PCI_COMMAND_INTX_DISABLE);
		else
			pci_set_command_bits(sc->pci, PCI_COMMAND_INTX_DISABLE, 0);
	}
	sc->state = NIC_DUMPING;
	return 0;
}

static int e1000e_dddump(struct dump_nic *nic, struct uio *uio, int cmd, void *arg)
{
	struct e1000e_softc *sc = nic ? nic->softc : 0;
	struct dumpio_stat *st = arg;

	if (!sc || sc->state == NIC_FREE)
		return ENODEV;
	if ((cmd == DUMPINIT || cmd == DUMPSTART || cmd == DUMPEND) && st)
		memset(st, 0, sizeof(*st));

	switch (cmd) {
	case DUMPINIT:
		return dump_init(sc, st);

	case DUMPQUERY: {
		struct dmp_query *q = arg;

		if (sc->state < NIC_READY || !q)
			return EINVAL;
		q->min_tsize = ETHER_MIN_FRAME;
		q->max_tsize = ETHER_HEADER + sc->mtu;
		q->max_outstanding = 1;	/* one frame at a time: the netdump client keeps its window */
		q->dumpwrite = e1000e_dumpwrite;
		return 0;
	}

	case DUMPSTART:
		return dump_start(sc, st);

	case DUMPREAD:
		return e1000e_read(sc, uio, (uint32_t)(uintptr_t)arg);

	case DUMPEND:
		/* Nothing to flush: every frame was sent before its dumpwrite returned. */
		if (sc->state == NIC_DUMPING) {
			quiet(sc);
			sc->state = NIC_ENDED;
		}
		return 0;

	case DUMPTERM:
		if (sc->state >= NIC_READY) {
			quiet(sc);	/* the rings are released: nothing may be written there */
			unpin_dump_path(sc);
			sc->state = NIC_ATTACHED;
		}
		return 0;

	default:
		return EINVAL;
	}
}

static void e1000e_print_info(const void *softc)
{
	const struct e1000e_softc *sc = softc;
	static const char *const names[] = { "free", "attached", "ready", "dumping", "ended" };

	printf("  e1000e %s: registers at mmio %#lx, MAC %02x:%02x:%02x:%02x:%02x:%02x, MTU %u, %s\n",
	       sc->where, (unsigned long)sc->regs, sc->mac[0], sc->mac[1], sc->mac[2], sc->mac[3], sc->mac[4],
	       sc->mac[5], sc->mtu, names[sc->state]);
	printf("  link %s (STATUS %#x); legacy descriptors: rx %u x %u bytes at %#lx (next %u, RDH %u RDT %u), "
	       "tx %u at %#lx (tail %u, TDH %u); IMS %#x\n",
	       (rd32(sc, REG_STATUS) & STATUS_LU) ? "up" : "down", rd32(sc, REG_STATUS), sc->nrx, sc->rx_buf,
	       (unsigned long)(uintptr_t)sc->dma->rx, sc->rx_next, rd32(sc, REG_RDH), rd32(sc, REG_RDT), TX_DESC,
	       (unsigned long)(uintptr_t)sc->dma->tx, sc->tx_tail, rd32(sc, REG_TDH), rd32(sc, REG_IMS));
	printf("  tx %llu frames %llu bytes, %llu timeouts; rx %llu frames %llu bytes, %llu bad, %llu too big; "
	       "%llu ring resets, %llu runtime frames dropped at DUMPSTART\n",
	       (unsigned long long)sc->tx_frames, (unsigned long long)sc->tx_bytes,
	       (unsigned long long)sc->tx_timeouts, (unsigned long long)sc->rx_frames,
	       (unsigned long long)sc->rx_bytes, (unsigned long long)sc->rx_errors,
	       (unsigned long long)sc->rx_too_big, (unsigned long long)sc->ring_resets,
	       (unsigned long long)sc->rx_dropped_at_start);
}

/* ---- attach ------------------------------------------------------------------------------------ */

/* The MAC from EEPROM words 0-2, for a device whose RAL0/RAH0 hold no valid address. */
static bool mac_from_eeprom(struct e1000e_softc *sc, uint8_t mac[ETHER_ADDR_LEN])
{
	for (uint32_t w = 0; w < 3; w++) {
		uint32_t v;

		wr32(sc, REG_EERD, w << 2 | EERD_START);
		if (!wait_reg(sc, REG_EERD, EERD_DONE, EERD_DONE, EERD_WAIT_MS))
			return false;
		v = rd32(sc, REG_EERD) >> 16;
		mac[2 * w] = (uint8_t)v;
		mac[2 * w + 1] = (uint8_t)(v >> 8);
	}
	return true;
}

static bool mac_ok(const uint8_t *m)
{
	return !(m[0] & 1) && (m[0] | m[1] | m[2] | m[3] | m[4] | m[5]);
}

/*
 * Reset and bring the device to a quiet state: bus mastering stopped for the reset (bounded:
 * the reset goes ahead anyway), every interrupt masked, receive and transmit off, the MAC
 * from RAL0/RAH0 (QEMU fills them from mac=; else the EEPROM), no multicast, link up asked.
 */
static int reset_device(struct e1000e_softc *sc)
{
	uint32_t ral, rah, ctrl;

	quiet(sc);
	wr32(sc, REG_CTRL, rd32(sc, REG_CTRL) | CTRL_GIO_MASTER_DISABLE);
	(void)wait_reg(sc, REG_STATUS, STATUS_GIO_MASTER_EN, 0, RESET_WAIT_MS);
	wr32(sc, REG_CTRL, rd32(sc, REG_CTRL) | CTRL_RST);
	udelay(1000);
	if (!wait_reg(sc, REG_CTRL, CTRL_RST, 0, RESET_WAIT_MS))
		return EIO;
	(void)wait_reg(sc, REG_EECD, EECD_AUTO_RD, EECD_AUTO_RD, RESET_WAIT_MS);
	intr_mask_all(sc);	/* the reset left them as they come out of reset: masked again */

	ctrl = rd32(sc, REG_CTRL);
	ctrl &= ~(CTRL_GIO_MASTER_DISABLE | CTRL_FRCSPD | CTRL_FRCDPLX | CTRL_VME | CTRL_PHY_RST | CTRL_RST);
	wr32(sc, REG_CTRL, ctrl | CTRL_SLU);

	ral = rd32(sc, REG_RAL0);
	rah = rd32(sc, REG_RAH0);
	for (int i = 0; i < 4; i++)
		sc->mac[i] = (uint8_t)(ral >> (8 * i));
	sc->mac[4] = (uint8_t)rah;
	sc->mac[5] = (uint8_t)(rah >> 8);
	if (!(rah & RAH_AV) || !mac_ok(sc->mac)) {
		if (!mac_from_eeprom(sc, sc->mac) || !mac_ok(sc->mac))
			return ENXIO;
		wr32(sc, REG_RAL0, (uint32_t)sc->mac[0] | (uint32_t)sc->mac[1] << 8 | (uint32_t)sc->mac[2] << 16 |
					   (uint32_t)sc->mac[3] << 24);
		wr32(sc, REG_RAH0, (uint32_t)sc->mac[4] | (uint32_t)sc->mac[5] << 8 | RAH_AV);
	}
	for (uint32_t i = 0; i < 128; i++)
		wr32(sc, REG_MTA + 4 * i, 0);
	return 0;
}

/* A softc for this function: its own if it has one (EBUSY while it is a dump target), else a
 * free one. */
static struct e1000e_softc *softc_for(struct pci_dev *pci, int *err)
{
	struct e1000e_softc *free = 0;

	for (int i = 0; i < E1000E_MAX_NICS; i++) {
		if (nics[i].state != NIC_FREE && nics[i].pci == pci) {
			*err = nics[i].state >= NIC_READY ? EBUSY : 0;
			return *err ? 0 : &nics[i];
		}
		if (nics[i].state == NIC_FREE && !free)
			free = &nics[i];
	}
	*err = free ? 0 : EBUSY;
	return free;
}

/* DUMP_NIC_DRIVER attach: the index-th 82574L in PCI order, reset and quiet. */
static int e1000e_attach(int index, uint32_t mtu, uint32_t iotimeout_ms, struct dump_nic *out)
{
	static const uint16_t ids[] = { E1000E_DEVICE };
	struct pci_dev *pci = pci_find(E1000E_VENDOR, ids, 1, index);
	struct e1000e_softc *sc;
	const struct pci_bar *bar;
	int err;

	if (!pci)
		return ENODEV;
	sc = softc_for(pci, &err);
	if (!sc)
		return err;
	bar = &pci->bar[0];
	/* BAR0: the registers, memory space inside the identity-mapped PCI hole. */
	if (pci->nbars < 1 || bar->io || !bar->base || bar->size < E1000E_BAR_SIZE ||
	    bar->base + bar->size > (4ull << 30))
		return ENXIO;
	memset(sc, 0, sizeof(*sc));
	sc->pci = pci;
	sc->regs = (uintptr_t)bar->base;
	sc->dma = &nic_dma[sc - nics];
	sc->mtu = mtu < MTU_MAX ? mtu : MTU_MAX;
	sc->iotimeout_ms = iotimeout_ms;
	snprintf(sc->where, sizeof(sc->where), "%02x:%02x.%x", pci->bus, pci->dev, pci->fn);
	/* MSI and MSI-X off: QEMU's e1000e signals by MSI-X, else MSI, else INTx, whichever the
	 * function has enabled; this driver uses INTx only. */
	pci_msi_disable(pci, pci_find_cap(pci, PCI_CAP_ID_MSI, 0));
	pci_msix_disable(pci, pci_find_cap(pci, PCI_CAP_ID_MSIX, 0));
	pci_set_command_bits(pci, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE, 0);
	err = reset_device(sc);
	if (err) {
		printf("e1000e %s: reset failed: %s\n", sc->where, errno_name(err));
		quiet(sc);
		sc->state = NIC_FREE;
		return err;
	}
	sc->state = NIC_ATTACHED;

	out->softc = sc;
	memcpy(out->mac, sc->mac, ETHER_ADDR_LEN);
	out->mtu = sc->mtu;
	out->dddump = e1000e_dddump;
	out->print_info = e1000e_print_info;
	out->where = sc->where;
	return 0;
}
DUMP_NIC_DRIVER("e1000e", e1000e_attach);
