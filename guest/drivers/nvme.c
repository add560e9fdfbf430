/*
 * NVMe, polled (docs/guest.md, "NVMe").
 *
 * One controller, its first active namespace, the host memory page 4 KiB. Three queue pairs: the admin queue,
 * I/O queue 1 for runtime I/O (its completion queue may interrupt: the runtime I/O of
 * dump/dumpdev.h), and I/O queue 2 for the dump, created with interrupts off (IEN = 0), so a
 * dump command never raises an interrupt even where the controller could. Data goes straight
 * from the caller's memory (identity mapped): one buffer as one SGL Data Block descriptor in the
 * command where the controller takes SGLs, else by PRPs; a transfer PRPs cannot describe (an
 * iovec boundary inside a page) goes through a bounce buffer. DUMP_ASYNC writes (dump/dumpdev.h)
 * stay in flight on the dump queue, up to DUMP_OUTSTANDING, each with a PRP list of its own; a
 * completion is matched to its write by CID, whatever order the controller completes them in.
 *
 * DUMPSTART resets the controller (CC.EN = 0 aborts every command it holds, so runtime I/O can
 * never complete into the dump), masks the pin interrupt (INTMS) before it enables it again,
 * and rebuilds the admin queue and the dump queue only. A command that times out resets the
 * controller the same way before the error goes back: a late completion can never be taken for
 * a later command's. Every wait has a TSC deadline. Everything the dump path writes is static
 * and `__dumpstate`: nothing is allocated after the crash.
 */
#include "drivers/nvme.h"
#include "arch/x86/io.h"
#include "arch/x86/pin.h"
#include "arch/x86/tsc.h"
#include "arch/x86/usermode.h"
#include "dump/dumpdisk.h"
#include "lib/dumpstate.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/testfault.h"

/* Controller registers (NVMe base specification, "Controller Registers") */
#define REG_CAP		0x00
#define REG_VS		0x08
#define REG_INTMS	0x0c
#define REG_INTMC	0x10
#define REG_CC		0x14
#define REG_CSTS	0x1c
#define REG_AQA		0x24
#define REG_ASQ		0x28
#define REG_ACQ		0x30
#define REG_DOORBELLS	0x1000

#define CC_EN		(1u << 0)
#define CC_CSS_NVM	(0u << 4)
#define CC_MPS_4K	(0u << 7)
#define CC_IOSQES	(6u << 16)	/* 64-byte submission entries */
#define CC_IOCQES	(4u << 20)	/* 16-byte completion entries */
#define CSTS_RDY	(1u << 0)
#define CSTS_CFS	(1u << 1)

#define CAP_MQES(cap)	((uint32_t)((cap) & 0xffff))
#define CAP_TO(cap)	((uint32_t)(((cap) >> 24) & 0xff))	/* 500 ms units */
#define CAP_DSTRD(cap)	((uint32_t)(((cap) >> 32) & 0xf))
#define CAP_MPSMIN(cap)	((uint32_t)(((cap) >> 48) & 0xf))

/* Admin opcodes */
#define ADM_DELETE_SQ	0x00
#define ADM_CREATE_SQ	0x01
#define ADM_DELETE_CQ	0x04
#define ADM_CREATE_CQ	0x05
#define ADM_IDENTIFY	0x06
#define ADM_SET_FEATURES 0x09
#define FEAT_NUM_QUEUES	0x07
#define CNS_NAMESPACE	0x00
#define CNS_CONTROLLER	0x01
#define CNS_ACTIVE_NS	0x02

/* CDW0's PSDT (bits 15:14): 01b, the data pointer is SGL1 (MPTR, unused here, a buffer) */
#define PSDT_SGL	(1u << 14)
#define SGL_DATA_BLOCK	0x00	/* SGL1's identifier byte: a Data Block descriptor, an address */

/* NVM opcodes */
#define NVM_FLUSH	0x00
#define NVM_WRITE	0x01
#define NVM_READ	0x02

#define PAGE		4096u
#define QUEUE_ENTRIES	16		/* each queue: one page or less */
#define ADMIN_QID	0
#define RUNTIME_QID	1
#define DUMP_QID	2
#define PRP_PER_PAGE	(PAGE / 8)
/* This driver's cap on MDTS: what PRP1 and one PRP list page describe, wherever the data starts. */
#define MAX_TRANSFER	(PRP_PER_PAGE * PAGE)
#define BOUNCE_BYTES	(512u * 1024)	/* a bounced transfer goes in commands of at most this */
#define NVME_MAX_CTRLS	2
#define RT_SLOTS	4		/* runtime requests in flight (< QUEUE_ENTRIES) */
/* DUMP_ASYNC writes in flight on the dump queue at most (DUMPQUERY's max_outstanding), each with
 * a PRP list of its own; the queue keeps an entry for the command that follows them. */
/* Six, where virtio-blk keeps three: QEMU's NVMe model takes longer per write than its
 * virtio-blk, and once the guest's own part of a write runs in ring 3 the device was the
 * bottleneck (1 GiB, three alternated rounds: crash to DONE 1.29 s with three, 1.04-1.16 with
 * six; virtio-blk gains nothing from six). The completion queue still has room for them all:
 * 6 + 1 in flight and at most 7 consumed but not yet told (cq_ring at 8) < QUEUE_ENTRIES. */
#define DUMP_OUTSTANDING 6
_Static_assert(DUMP_OUTSTANDING < QUEUE_ENTRIES - 1, "the dump queue takes them and one more");
_Static_assert(DUMP_OUTSTANDING <= DUMPDEV_MAX_OUTSTANDING, "dumpdev.c keeps them all");

struct nvme_sqe {
	uint32_t cdw0;			/* opcode | cid << 16 */
	uint32_t nsid;
	uint64_t rsvd;
	uint64_t mptr;
	uint64_t prp1;
	uint64_t prp2;
	uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};

struct nvme_cqe {
	uint32_t dw0;
	uint32_t dw1;
	uint16_t sqhd;
	uint16_t sqid;
	uint16_t cid;
	uint16_t status;		/* bit 0: phase; bits 1-15: status field (0: success) */
};

_Static_assert(sizeof(struct nvme_sqe) == 64, "submission entry");
_Static_assert(sizeof(struct nvme_cqe) == 16, "completion entry");

struct nvme_queue {
	struct nvme_sqe *sq;
	struct nvme_cqe *cq;
	uint16_t qid;
	uint16_t sq_tail;
	uint16_t cq_head;
	uint16_t cq_rung;		/* the head the controller was last told (cq_ring) */
	uint8_t phase;			/* the phase tag a new completion carries */
	uint16_t next_cid;
};

/* The controller's queues, PRP list and identify buffer: each queue in a page of its own
 * (ASQ/ACQ and the I/O queues' PRP1 must be page aligned). */
struct nvme_memory {
	struct nvme_sqe sq[3][PAGE / sizeof(struct nvme_sqe)];
	struct nvme_cqe cq[3][PAGE / sizeof(struct nvme_cqe)];
	uint64_t prp_list[PRP_PER_PAGE];			/* the synchronous command's */
	uint64_t async_prp_list[DUMP_OUTSTANDING][PRP_PER_PAGE];	/* one per DUMP_ASYNC write */
	uint64_t rt_prp_list[RT_SLOTS][PRP_PER_PAGE];	/* one per runtime request */
	uint8_t identify[PAGE];
} __attribute__((aligned(PAGE)));

/* An interrupt-driven runtime request (dump/dumpdev.h, runtime I/O). */
struct rt_slot {
	bool busy;
	uint16_t cid;
	void (*done)(void *cookie, bool ok);
	void *cookie;
};

/* A DUMP_ASYNC write in flight on the dump queue (its tag: its index, that of its PRP list). */
struct async_write {
	bool busy;			/* posted, not waited for yet (a reset frees it) */
	bool done;
	uint16_t cid;
	uint16_t status;		/* its completion's status field, once done */
};

struct nvme_ctrl {
	struct pci_dev *pci;
	uintptr_t regs;
	uint64_t regs_len;		/* what the driver touches: registers and 3 doorbell pairs */
	uint32_t db_stride;		/* bytes between doorbells */
	uint32_t ready_ms;		/* CAP.TO: how long CSTS.RDY may take */
	uint32_t timeout_ms;
	uint32_t nsid;			/* the disk: the controller's first active namespace */
	uint32_t block_size;
	uint64_t nblocks;
	uint32_t max_transfer;
	uint8_t mdts;
	bool sgl;			/* Identify's SGLS 01b or 10b: SGLs taken (any or dword alignment) */
	uint16_t mqes;			/* entries a queue may have */
	bool vwc;			/* a volatile write cache: Flush means something */
	bool broken;			/* a reset did not bring it back */
	bool dumping;			/* DUMPSTART on: no runtime I/O */
	bool runtime_queue;		/* queue 1 exists */
	struct nvme_queue adminq, ioq, dumpq;
	struct nvme_memory *mem;
	/* runtime I/O: queue 1, interrupts through INTx */
	struct rt_slot rt[RT_SLOTS];
	int intx_pin;			/* -1: not routed */
	bool intr_on;
	uint64_t part_lba, part_blocks;	/* the dump partition, from DUMPINIT: runtime I/O stays out */
	/* The DUMP_ASYNC writes in flight (dumpdev.c keeps their order); async[i] uses async_prp_list[i]. */
	struct async_write async[DUMP_OUTSTANDING];
	uint64_t rt_completed, rt_failed, rt_dropped;
	char model[41];
	uint64_t commands, bytes, flushes, timeouts, resets, bounced, stale_completions;
	uint16_t last_status;
};

static struct nvme_ctrl ctrls[NVME_MAX_CTRLS] __dumpstate;
static struct nvme_memory ctrl_mem[NVME_MAX_CTRLS] __dumpstate;
/* One bounce buffer: only one device dumps at a time (a restart on the secondary comes after
 * the primary gave up). */
static uint8_t bounce_buf[BOUNCE_BYTES] __dumpstate __attribute__((aligned(PAGE)));
static int nctrls;

static uint32_t reg_read32(const struct nvme_ctrl *c, uint32_t off) { return mmio_read32(c->regs + off); }
static void reg_write32(const struct nvme_ctrl *c, uint32_t off, uint32_t v) { mmio_write32(c->regs + off, v); }

static uintptr_t sq_doorbell(const struct nvme_ctrl *c, uint16_t qid)
{
	return c->regs + REG_DOORBELLS + (2u * qid) * c->db_stride;
}

static uintptr_t cq_doorbell(const struct nvme_ctrl *c, uint16_t qid)
{
	return c->regs + REG_DOORBELLS + (2u * qid + 1) * c->db_stride;
}

static void queue_init(struct nvme_ctrl *c, struct nvme_queue *q, uint16_t qid)
{
	q->sq = c->mem->sq[qid];
	q->cq = c->mem->cq[qid];
	q->qid = qid;
	q->sq_tail = 0;
	q->cq_head = 0;
	q->cq_rung = 0;
	q->phase = 1;
	memset(q->sq, 0, sizeof(c->mem->sq[qid]));
	memset(q->cq, 0, sizeof(c->mem->cq[qid]));
}

/* Wait for CSTS.RDY to become `ready`, within CAP.TO. */
static int wait_ready(struct nvme_ctrl *c, bool ready)
{
	uint64_t deadline = deadline_after_ms(c->ready_ms);

	for (;;) {
		uint32_t csts = reg_read32(c, REG_CSTS);

		if (csts == 0xffffffffu)
			return ENODEV;	/* the function is gone */
		if (ready && (csts & CSTS_CFS))
			return EIO;
		if (!!(csts & CSTS_RDY) == ready)
			return 0;
		if (deadline_passed(deadline))
			return ETIMEDOUT;
		cpu_relax();
	}
}

static void submit(struct nvme_ctrl *c, struct nvme_queue *q, struct nvme_sqe *e)
{
	e->cdw0 = (e->cdw0 & 0xffff) | (uint32_t)q->next_cid << 16;
	q->next_cid++;
	q->sq[q->sq_tail] = *e;
	q->sq_tail = (uint16_t)((q->sq_tail + 1) % QUEUE_ENTRIES);
	wmb();	/* the entry before the doorbell that hands it over */
	mmio_write32(sq_doorbell(c, q->qid), q->sq_tail);
	c->commands++;
}

/* The next completion of queue q, if the controller posted one: consumed, the head doorbell
 * not rung (cq_ring). */
static bool cq_take(struct nvme_queue *q, struct nvme_cqe *out)
{
	volatile struct nvme_cqe *e = &q->cq[q->cq_head];

	if ((READ_ONCE(e->status) & 1) != q->phase)
		return false;
	rmb();	/* the entry is read after its phase tag said it is new */
	*out = *(struct nvme_cqe *)e;
	q->cq_head = (uint16_t)((q->cq_head + 1) % QUEUE_ENTRIES);
	if (q->cq_head == 0)
		q->phase ^= 1;
	return true;
}

/* The completion head doorbell: the controller may reuse every entry cq_take consumed. */
static void cq_ring(struct nvme_ctrl *c, struct nvme_queue *q)
{
	mmio_write32(cq_doorbell(c, q->qid), q->cq_head);
	q->cq_rung = q->cq_head;
}

/* The next completion of queue q, if the controller posted one: consumed, head doorbell rung. */
static bool reap_one(struct nvme_ctrl *c, struct nvme_queue *q, struct nvme_cqe *out)
{
	if (!cq_take(q, out))
		return false;
	cq_ring(c, q);
	return true;
}

/* Post one command and poll for its completion. 0, EIO (the controller said no: status in
 * last_status) or ETIMEDOUT. */
static int run_command(struct nvme_ctrl *c, struct nvme_queue *q, struct nvme_sqe *e)
{
	uint64_t deadline = deadline_after_ms(c->timeout_ms);
	uint16_t cid = q->next_cid;
	struct nvme_cqe cqe;

	c->last_status = 0;
	submit(c, q, e);
	for (;;) {
		if (reap_one(c, q, &cqe)) {
			if (cqe.cid != cid) {
				c->stale_completions++;
				continue;
			}
			c->last_status = cqe.status >> 1;
			return c->last_status ? EIO : 0;
		}
		if (deadline_passed(deadline)) {
			c->timeouts++;
			return ETIMEDOUT;
		}
		cpu_relax();
	}
}

static int admin(struct nvme_ctrl *c, uint8_t opcode, uint32_t nsid, uint64_t prp1, uint32_t cdw10,
		 uint32_t cdw11)
{
	struct nvme_sqe e = { .cdw0 = opcode, .nsid = nsid, .prp1 = prp1, .cdw10 = cdw10, .cdw11 = cdw11 };

	return run_command(c, &c->adminq, &e);
}

/* An I/O queue pair: the completion queue (interrupting or not), then its submission queue. */
static int create_io_queue(struct nvme_ctrl *c, struct nvme_queue *q, uint16_t qid, bool interrupts)
{
	uint32_t size = (uint32_t)(QUEUE_ENTRIES - 1) << 16 | qid;
	int err;

	queue_init(c, q, qid);
	/* cdw11: interrupt vector 0, IEN (bit 1), physically contiguous (bit 0) */
	err = admin(c, ADM_CREATE_CQ, 0, (uintptr_t)q->cq, size, (interrupts ? 2u : 0u) | 1u);
	if (!err)
		err = admin(c, ADM_CREATE_SQ, 0, (uintptr_t)q->sq, size, (uint32_t)qid << 16 | 1u);
	return err;
}

/*
 * Reset the controller and bring it back: disabled (every command it held is aborted), the pin
 * interrupt masked, the admin queue fresh, enabled, then the dump queue pair (interrupts off)
 * and, outside a dump, the runtime pair. Nothing from before survives.
 */
static int bring_up(struct nvme_ctrl *c, bool runtime)
{
	/* testfault=irq-on and intr-unmasked (deliberately wrong): the dump's interrupts stay on */
	bool irq_on = c->dumping && (testfault_irq_on_now || testfault(TF_INTR_UNMASKED));
	int err;

	c->resets++;
	c->runtime_queue = false;
	for (int i = 0; i < DUMP_OUTSTANDING; i++)
		c->async[i].busy = false;	/* the reset aborts them: their wait fails at once */
	for (int i = 0; i < RT_SLOTS; i++)
		if (c->rt[i].busy) {
			c->rt[i].busy = false;	/* the reset aborted it: never completed, never requeued */
			c->rt_dropped++;
		}
	reg_write32(c, REG_CC, 0);
	err = wait_ready(c, false);
	if (err)
		goto out;
	/* Disabling cleared INTMS: mask before anything can complete. */
	reg_write32(c, irq_on ? REG_INTMC : REG_INTMS, 0xffffffffu);
	c->intr_on = false;
	queue_init(c, &c->adminq, ADMIN_QID);
	reg_write32(c, REG_AQA, (uint32_t)(QUEUE_ENTRIES - 1) << 16 | (QUEUE_ENTRIES - 1));
	mmio_write64_split(c->regs + REG_ASQ, (uintptr_t)c->adminq.sq);
	mmio_write64_split(c->regs + REG_ACQ, (uintptr_t)c->adminq.cq);
	reg_write32(c, REG_CC, CC_EN | CC_CSS_NVM | CC_MPS_4K | CC_IOSQES | CC_IOCQES);
	err = wait_ready(c, true);
	if (err)
		goto out;
	/* Two I/O queue pairs, 0-based counts */
	err = admin(c, ADM_SET_FEATURES, 0, 0, FEAT_NUM_QUEUES, 1u << 16 | 1u);
	if (!err)
		err = create_io_queue(c, &c->dumpq, DUMP_QID, irq_on);
	if (!err && runtime) {
		err = create_io_queue(c, &c->ioq, RUNTIME_QID, true);
		c->runtime_queue = !err;
	}
out:
	c->broken = err != 0;
	return err;
}

static int identify(struct nvme_ctrl *c)
{
	const uint8_t *id = c->mem->identify;
	uint32_t lbaf;
	uint8_t flbas, lbads;
	int err;

	err = admin(c, ADM_IDENTIFY, 0, (uintptr_t)id, CNS_CONTROLLER, 0);
	if (err)
		return err;
	memcpy(c->model, id + 24, 40);
	c->model[40] = '\0';
	for (int i = 39; i >= 0 && c->model[i] == ' '; i--)
		c->model[i] = '\0';
	c->mdts = id[77];
	c->vwc = id[525] & 1;
	c->sgl = (id[536] & 3) == 1 || (id[536] & 3) == 2;	/* 11b is reserved */

	/* The first active namespace (the list is in increasing order, 0 ends it) */
	err = admin(c, ADM_IDENTIFY, 0, (uintptr_t)id, CNS_ACTIVE_NS, 0);
	if (err)
		return err;
	memcpy(&c->nsid, id, 4);
	if (!c->nsid)
		return ENODEV;
	err = admin(c, ADM_IDENTIFY, c->nsid, (uintptr_t)id, CNS_NAMESPACE, 0);
	if (err)
		return err;
	memcpy(&c->nblocks, id, 8);	/* NSZE */
	if (!c->nblocks)
		return ENODEV;
	flbas = id[26] & 0xf;
	memcpy(&lbaf, id + 128 + 4 * flbas, 4);
	lbads = (uint8_t)(lbaf >> 16);
	if ((lbaf & 0xffff) != 0 || lbads < 9 || lbads > 12)
		return ENOTSUP;	/* metadata with the data, or a block size this driver does not take */
	c->block_size = 1u << lbads;
	return 0;
}

static void set_max_transfer(struct nvme_ctrl *c, uint64_t cap)
{
	uint64_t mps = (uint64_t)PAGE << CAP_MPSMIN(cap);
	uint64_t max = c->mdts ? mps << c->mdts : MAX_TRANSFER;

	c->max_transfer = max < MAX_TRANSFER ? (uint32_t)max : MAX_TRANSFER;
}

int nvme_attach(struct pci_dev *pci, uint32_t timeout_ms, struct nvme_ctrl **out)
{
	struct nvme_ctrl *c;
	uint64_t cap;
	int err;

	if (nctrls == NVME_MAX_CTRLS)
		return EBUSY;
	if (!pci->bar[0].base || pci->bar[0].io || pci->bar[0].size < 2 * PAGE)
		return ENODEV;
	c = &ctrls[nctrls];
	memset(c, 0, sizeof(*c));
	c->pci = pci;
	c->mem = &ctrl_mem[nctrls];
	c->regs = (uintptr_t)pci->bar[0].base;
	c->timeout_ms = timeout_ms;
	c->intx_pin = -1;
	pci_set_command_bits(pci, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, PCI_COMMAND_IO);

	cap = mmio_read64_split(c->regs + REG_CAP);
	if (cap == ~0ull)
		return ENODEV;
	if (CAP_MPSMIN(cap) != 0 || CAP_MQES(cap) + 1u < QUEUE_ENTRIES)
		return ENOTSUP;	/* no 4 KiB pages, or queues too short */
	c->mqes = (uint16_t)CAP_MQES(cap);
	c->db_stride = 4u << CAP_DSTRD(cap);
	c->regs_len = REG_DOORBELLS + 2ull * (DUMP_QID + 1) * c->db_stride;
	c->ready_ms = CAP_TO(cap) ? CAP_TO(cap) * 500u : 500u;

	err = bring_up(c, true);
	if (!err)
		err = identify(c);
	if (err)
		return err;
	set_max_transfer(c, cap);
	nctrls++;
	*out = c;
	return 0;
}

/*
 * The PRPs of a transfer: PRP1 the first byte, then every page boundary of the data, as PRP2
 * or a PRP list. An iovec boundary inside a page cannot be described that way: then the data
 * goes through the bounce buffer (writes copy into it first, in ring 3: docs/guest.md, "Ring 3").
 */
static uint64_t copy_unprivileged(uint64_t dst, uint64_t src, uint64_t len)
{
	memcpy((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, len);
	return 0;
}

static bool prp_describable(const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++) {
		uintptr_t start = (uintptr_t)iov[i].iov_base, end = start + iov[i].iov_len;

		if ((start & 3) || (i > 0 && (start & (PAGE - 1))) || (i < iovcnt - 1 && (end & (PAGE - 1))))
			return false;
	}
	return true;
}

static void set_prps(uint64_t *list, struct nvme_sqe *e, const struct iovec *iov, int iovcnt)
{
	int n = -1;	/* entries after PRP1 (physical address 0 is a valid PRP1: RAM's first page) */

	for (int i = 0; i < iovcnt; i++) {
		uintptr_t p = (uintptr_t)iov[i].iov_base, end = p + iov[i].iov_len;

		while (p < end) {
			if (n < 0)
				e->prp1 = p;
			else
				list[n] = p;
			n++;
			p = (p & ~(uintptr_t)(PAGE - 1)) + PAGE;
		}
	}
	e->prp2 = n <= 0 ? 0 : n == 1 ? list[0] : (uintptr_t)list;
}

/*
 * A transfer of more than PRP_RING3_BYTES gets its PRPs in ring 3 (docs/guest.md, "Ring 3"): on
 * kvm-pvm, where ring 0 is emulated, a 2 MiB command's 512 entries took about 3 ms there (a
 * 4.4 ms command against virtio-blk's 1.3 ms), a trip to ring 3 about 0.07 ms. The list, the
 * command and the iovecs are identity-mapped, user-accessible memory; the iovecs' count rides
 * in the third argument's top 16 bits (addresses are below 2^48).
 */
#define PRP_RING3_BYTES	(32u * PAGE)
#define IOVCNT_SHIFT	48

static uint64_t set_prps_here(uint64_t list, uint64_t e, uint64_t iov_and_count)
{
	set_prps((uint64_t *)(uintptr_t)list, (struct nvme_sqe *)(uintptr_t)e,
		 (const struct iovec *)(uintptr_t)(iov_and_count & ((1ull << IOVCNT_SHIFT) - 1)),
		 (int)(iov_and_count >> IOVCNT_SHIFT));
	return 0;
}

/* A Read or Write of nblocks at lba. One buffer, where the controller takes SGLs: SGL1 a Data
 * Block descriptor of it (address, length, identifier 0), nothing else to build: no PRP list,
 * no trip to ring 3, and QEMU maps one range instead of a page at a time. Otherwise its data
 * where the PRPs of iov say, a PRP list in `list`. */
static struct nvme_sqe rw_command(const struct nvme_ctrl *c, uint64_t *list, bool write, uint64_t lba,
				  uint32_t nblocks, const struct iovec *iov, int iovcnt)
{
	struct nvme_sqe e = { .cdw0 = write ? NVM_WRITE : NVM_READ, .nsid = c->nsid,
			      .cdw10 = (uint32_t)lba, .cdw11 = (uint32_t)(lba >> 32), .cdw12 = nblocks - 1 };

	if (iovcnt == 1 && c->sgl) {
		e.cdw0 |= PSDT_SGL;
		e.prp1 = (uintptr_t)iov[0].iov_base;	/* SGL1: address, */
		e.prp2 = (uint64_t)SGL_DATA_BLOCK << 56 | (uint32_t)iov[0].iov_len;	/* length, identifier */
		return e;
	}
	if ((uint64_t)nblocks * c->block_size > PRP_RING3_BYTES)
		run_unprivileged(set_prps_here, (uintptr_t)list, (uintptr_t)&e,
				 (uint64_t)iovcnt << IOVCNT_SHIFT | (uintptr_t)iov);
	else
		set_prps(list, &e, iov, iovcnt);
	return e;
}

/* One Read or Write, start to finish. On a timeout the controller is reset (queues as `runtime`
 * says) before the error goes back. */
static int command(struct nvme_ctrl *c, struct nvme_queue *q, bool write, uint64_t lba, uint32_t nblocks,
		   const struct iovec *iov, int iovcnt, bool runtime)
{
	struct nvme_sqe e = rw_command(c, c->mem->prp_list, write, lba, nblocks, iov, iovcnt);
	int err;

	err = run_command(c, q, &e);
	if (err == ETIMEDOUT)
		bring_up(c, runtime);
	return err;
}

/* Bytes [from, from + len) of the iovecs' data copied into buf (into_buf) or out of it, in ring 3. */
static void bounce_copy(uint8_t *buf, const struct iovec *iov, int iovcnt, uint64_t from, uint64_t len,
			bool into_buf)
{
	for (int i = 0; i < iovcnt && len; i++) {
		uint64_t seg = iov[i].iov_len, n;
		uintptr_t p;

		if (from >= seg) {
			from -= seg;
			continue;
		}
		n = seg - from < len ? seg - from : len;
		p = (uintptr_t)iov[i].iov_base + from;
		if (into_buf)
			run_unprivileged(copy_unprivileged, (uintptr_t)buf, p, n);
		else
			run_unprivileged(copy_unprivileged, p, (uintptr_t)buf, n);
		buf += n;
		len -= n;
		from = 0;
	}
}

/* Read or write nblocks at lba of the namespace, from or to iov: one command whose PRPs
 * describe iov, or, when they cannot, commands of at most BOUNCE_BYTES through the bounce
 * buffer, in order. */
static int rw(struct nvme_ctrl *c, struct nvme_queue *q, bool write, uint64_t lba, uint32_t nblocks,
	      const struct iovec *iov, int iovcnt, bool runtime)
{
	uint64_t bytes = (uint64_t)nblocks * c->block_size;

	if (c->broken)
		return EIO;
	if (prp_describable(iov, iovcnt))
		return command(c, q, write, lba, nblocks, iov, iovcnt, runtime);
	for (uint64_t done = 0; done < bytes;) {
		uint64_t n = bytes - done < BOUNCE_BYTES ? bytes - done : BOUNCE_BYTES;
		struct iovec bounce = { bounce_buf, n };
		int err;

		c->bounced++;
		/* testfault=bounce-short (deliberately wrong): only the first iovec is copied in; the
		 * rest of the command is whatever the bounce buffer held. */
		if (write)
			bounce_copy(bounce_buf, iov, testfault(TF_BOUNCE_SHORT) ? 1 : iovcnt, done, n, true);
		err = command(c, q, write, lba + done / c->block_size, (uint32_t)(n / c->block_size), &bounce, 1,
			      runtime);
		if (err)
			return err;
		if (!write)
			bounce_copy(bounce_buf, iov, iovcnt, done, n, false);
		done += n;
	}
	return 0;
}

static int flush(struct nvme_ctrl *c, struct nvme_queue *q, bool runtime)
{
	struct nvme_sqe e = { .cdw0 = NVM_FLUSH, .nsid = c->nsid };
	int err;

	if (!c->vwc)
		return 0;	/* no volatile write cache: a completed write is durable */
	if (testfault(TF_NO_FLUSH))
		return 0;	/* deliberately wrong: the write cache is never flushed */
	if (c->broken)
		return EIO;
	c->flushes++;
	err = run_command(c, q, &e);
	if (err == ETIMEDOUT)
		bring_up(c, runtime);
	return err;
}

/* Polled runtime reads go through the dump queue (IEN = 0): queue 1 belongs to the interrupt-
 * driven runtime I/O, whose completions its interrupt handler takes. */
int nvme_read(struct nvme_ctrl *c, uint64_t lba, void *buf, uint32_t nblocks)
{
	struct nvme_queue *q = &c->dumpq;

	while (nblocks) {
		uint32_t n = c->max_transfer / c->block_size;
		struct iovec iov;
		int err;

		if (n > nblocks)
			n = nblocks;
		if (lba + n > c->nblocks)
			return EINVAL;
		iov.iov_base = buf;
		iov.iov_len = (size_t)n * c->block_size;
		err = rw(c, q, false, lba, n, &iov, 1, true);
		if (err)
			return err;
		lba += n;
		nblocks -= n;
		buf = (char *)buf + iov.iov_len;
	}
	return 0;
}

uint32_t nvme_block_size(const struct nvme_ctrl *c) { return c->block_size; }
uint64_t nvme_capacity_blocks(const struct nvme_ctrl *c) { return c->nblocks; }

void nvme_print_info(const void *softc)
{
	const struct nvme_ctrl *c = softc;
	uint32_t vs = reg_read32(c, REG_VS);

	printf("  nvme %02x:%02x.%x: '%s', NVMe %u.%u, namespace %u: %llu blocks of %u bytes%s%s\n",
	       c->pci->bus, c->pci->dev, c->pci->fn, c->model, vs >> 16, (vs >> 8) & 0xff, c->nsid,
	       (unsigned long long)c->nblocks, c->block_size, c->vwc ? ", volatile write cache" : "",
	       c->broken ? ", BROKEN" : "");
	printf("  MDTS %u, max transfer %u bytes, data by %s, queues of %u entries, doorbell stride %u,"
	       " I/O timeout %u ms\n", c->mdts, c->max_transfer, c->sgl ? "SGL (one buffer) or PRPs" : "PRPs",
	       QUEUE_ENTRIES, c->db_stride, c->timeout_ms);
	printf("  commands %llu, bytes %llu, flushes %llu, timeouts %llu, resets %llu, bounced %llu,"
	       " stale completions %llu, last status 0x%x\n",
	       (unsigned long long)c->commands, (unsigned long long)c->bytes, (unsigned long long)c->flushes,
	       (unsigned long long)c->timeouts, (unsigned long long)c->resets, (unsigned long long)c->bounced,
	       (unsigned long long)c->stale_completions, c->last_status);
	printf("  runtime I/O: interrupts %s, completed %llu, failed %llu, dropped at a reset %llu\n",
	       c->intr_on ? "on (INTx)" : "off", (unsigned long long)c->rt_completed,
	       (unsigned long long)c->rt_failed, (unsigned long long)c->rt_dropped);
}

static void dump_status(void *softc, uint32_t *device_status, uint32_t *request_status)
{
	struct nvme_ctrl *c = softc;

	*device_status = c->broken ? 0xffffffffu : reg_read32(c, REG_CSTS);
	if (c->last_status)
		*request_status = c->last_status;
}

/* DUMPINIT pins what the dump path touches besides the kernel image (always pinned): the
 * registers and doorbells, and, for the record, the controller's state and queues. */
static int pin_dump_path(struct nvme_ctrl *c)
{
	int err = pin(c, sizeof(*c));

	if (!err) {
		err = pin(c->mem, sizeof(*c->mem));
		if (err)
			unpin(c, sizeof(*c));
	}
	if (!err) {
		err = pin_phys(c->regs, c->regs_len);
		if (err) {
			unpin(c->mem, sizeof(*c->mem));
			unpin(c, sizeof(*c));
		}
	}
	return err;
}

static void unpin_dump_path(struct nvme_ctrl *c)
{
	unpin_phys(c->regs, c->regs_len);
	unpin(c->mem, sizeof(*c->mem));
	unpin(c, sizeof(*c));
}

static int dump_init(void *softc, const struct dumpdev *dev)
{
	struct nvme_ctrl *c = softc;

	if (!in_dumpstate(c, sizeof(*c)) || !in_dumpstate(c->mem, sizeof(*c->mem)) ||
	    !in_dumpstate(bounce_buf, sizeof(bounce_buf)))
		return EFAULT;
	c->part_lba = dev->part_lba;
	c->part_blocks = dev->part_blocks;
	return pin_dump_path(c);
}

static void dump_term(void *softc)
{
	unpin_dump_path(softc);
}

static uint32_t dump_max_transfer(void *softc)
{
	return ((struct nvme_ctrl *)softc)->max_transfer;
}

static int dump_start(void *softc)
{
	struct nvme_ctrl *c = softc;
	int err;

	c->dumping = true;
	if (testfault(TF_MASK_ONLY)) {
		/* Deliberately wrong: interrupts masked, the runtime queue and whatever it holds
		 * left alone; the dump queue made at boot carries on. */
		reg_write32(c, REG_INTMS, 0xffffffffu);
		return 0;
	}
	/* The runtime queue and everything in it are dropped, never resumed. */
	err = bring_up(c, false);
	if (err)
		c->dumping = false;
	return err;
}

static int dump_flush(void *softc)
{
	return flush(softc, &((struct nvme_ctrl *)softc)->dumpq, false);
}

/* uio's `total` bytes, start to finish (bounced if need be). */
static int write_now(struct nvme_ctrl *c, const struct dumpdev *dev, const struct uio *uio, uint64_t total)
{
	uint64_t lba = dev->part_lba + uio->uio_offset / c->block_size;
	int err;

	err = rw(c, &c->dumpq, true, lba, (uint32_t)(total / c->block_size), uio->uio_iov, uio->uio_iovcnt, false);
	if (!err)
		c->bytes += total;
	return err;
}

static int dump_write(void *softc, const struct dumpdev *dev, const struct uio *uio, uint64_t total, bool fsync,
		      enum dumpio_op *op, uint64_t *failing_offset)
{
	struct nvme_ctrl *c = softc;
	int err;

	if (total) {
		err = write_now(c, dev, uio, total);
		if (err)
			return err;
	}
	*op = DUMPIO_OP_FLUSH;
	return fsync ? dump_flush(c) : 0;
}

/* ---- several writes in flight (DUMP_ASYNC, dump/dumpdev.h) ---- */

static uint32_t dump_outstanding(void *softc)
{
	(void)softc;
	return DUMP_OUTSTANDING;
}

/* A dump queue completion: the write in flight with its CID is done, whichever it is (the
 * controller completes in any order): remembered for its wait. */
static void take_completion(struct nvme_ctrl *c, const struct nvme_cqe *cqe)
{
	for (uint32_t i = 0; i < DUMP_OUTSTANDING; i++) {
		struct async_write *a = &c->async[i];

		if (a->busy && !a->done && a->cid == cqe->cid) {
			a->done = true;
			a->status = cqe->status >> 1;
			return;
		}
	}
	c->stale_completions++;
}

/*
 * A DUMP_ASYNC write: one command on the dump queue, with the PRP list of a free async_write
 * (dumpdev.c waits for one first when DUMP_OUTSTANDING are in flight). One the PRPs cannot
 * describe needs the one bounce buffer: ENOTSUP, and dumpdev.c writes it alone, after the rest.
 */
static int dump_post(void *softc, const struct dumpdev *dev, const struct uio *uio, uint64_t total,
		     uint32_t *tag)
{
	struct nvme_ctrl *c = softc;
	struct nvme_sqe e;
	uint32_t i = 0;

	if (!prp_describable(uio->uio_iov, uio->uio_iovcnt))
		return ENOTSUP;
	if (c->broken)
		return EIO;
	while (i < DUMP_OUTSTANDING && c->async[i].busy)
		i++;
	if (i == DUMP_OUTSTANDING)
		return EBUSY;
	e = rw_command(c, c->mem->async_prp_list[i], true, dev->part_lba + uio->uio_offset / c->block_size,
		       (uint32_t)(total / c->block_size), uio->uio_iov, uio->uio_iovcnt);
	c->async[i] = (struct async_write){ .busy = true, .cid = c->dumpq.next_cid };
	submit(c, &c->dumpq, &e);
	c->bytes += total;
	*tag = i;
	return 0;
}

/*
 * Poll the dump queue until the write `tag` is done, taking the others' completions on the way:
 * 0 or EIO (its status in last_status), or ETIMEDOUT once the controller was reset, which
 * aborted every write in flight: their waits fail at once (EIO).
 */
static int dump_wait(void *softc, uint32_t tag)
{
	struct nvme_ctrl *c = softc;
	uint64_t deadline = deadline_after_ms(c->timeout_ms);
	struct async_write *a;
	struct nvme_cqe cqe;

	if (tag >= DUMP_OUTSTANDING || !c->async[tag].busy)
		return EIO;	/* aborted by a reset */
	a = &c->async[tag];
	c->last_status = 0;
	while (!a->done) {
		if (cq_take(&c->dumpq, &cqe)) {
			take_completion(c, &cqe);
		} else if (deadline_passed(deadline)) {
			c->timeouts++;
			bring_up(c, false);
			return ETIMEDOUT;
		} else {
			cpu_relax();
		}
	}
	/* Each doorbell is a VM exit: the controller is told the completion queue's head once half
	 * the queue was consumed (it still sees room for every command in flight), or by the next
	 * reap_one. */
	if (((c->dumpq.cq_head - c->dumpq.cq_rung) & (QUEUE_ENTRIES - 1)) >= QUEUE_ENTRIES / 2)
		cq_ring(c, &c->dumpq);
	a->busy = false;
	c->last_status = a->status;
	return a->status ? EIO : 0;
}

static const struct dumpdev_ops nvme_dump_ops = {
	.init = dump_init,
	.term = dump_term,
	.max_transfer = dump_max_transfer,
	.start = dump_start,
	.write = dump_write,
	.flush = dump_flush,
	.outstanding = dump_outstanding,
	.post = dump_post,
	.wait = dump_wait,
	.status = dump_status,
};

int nvme_dddump(struct dumpdev *dev, struct uio *uio, int cmd, void *arg)
{
	return dumpdev_dddump(&nvme_dump_ops, dev, uio, cmd, arg);
}

/*
 * Runtime I/O (dump/dumpdev.h): reads and writes on queue 1, completed by its interrupt, INTx
 * through the I/O APIC (bus/pci.h). The crash's mute masks the pin with INTMS at once; DUMPSTART's
 * reset then aborts whatever queue 1 still holds.
 */
static int rt_intr_enable(void *softc, uint8_t vector)
{
	struct nvme_ctrl *c = softc;
	int err;

	if (!c->runtime_queue || c->dumping)
		return EINVAL;
	if (c->intx_pin < 0) {
		err = pci_intx_route(c->pci, vector, &c->intx_pin);
		if (err)
			return err;
	}
	pci_set_command_bits(c->pci, 0, PCI_COMMAND_INTX_DISABLE);
	c->intr_on = true;
	reg_write32(c, REG_INTMC, 1u);	/* vector 0: queue 1's */
	pci_intx_unmask(c->intx_pin);
	return 0;
}

static void rt_intr(void *softc)
{
	struct nvme_ctrl *c = softc;
	struct nvme_cqe cqe;

	if (!c->runtime_queue)
		return;
	while (reap_one(c, &c->ioq, &cqe)) {
		struct rt_slot *s = 0;

		for (int i = 0; i < RT_SLOTS; i++)
			if (c->rt[i].busy && c->rt[i].cid == cqe.cid)
				s = &c->rt[i];
		if (!s) {
			c->stale_completions++;
			continue;
		}
		s->busy = false;
		if (cqe.status >> 1)
			c->rt_failed++;
		else
			c->rt_completed++;
		s->done(s->cookie, (cqe.status >> 1) == 0);
	}
}

static void rt_intr_mute(void *softc)
{
	struct nvme_ctrl *c = softc;

	reg_write32(c, REG_INTMS, 0xffffffffu);
	c->intr_on = false;
	if (c->intx_pin >= 0)
		pci_intx_mask(c->intx_pin);
}

static int rt_submit(void *softc, bool write, uint64_t lba, uint32_t nblocks, void *buf,
		     void (*done)(void *cookie, bool ok), void *cookie)
{
	struct nvme_ctrl *c = softc;
	uint64_t bytes = (uint64_t)nblocks * c->block_size;
	struct nvme_sqe e = { .cdw0 = write ? NVM_WRITE : NVM_READ, .nsid = c->nsid, .cdw10 = (uint32_t)lba,
			      .cdw11 = (uint32_t)(lba >> 32), .cdw12 = nblocks - 1 };
	struct iovec iov = { buf, bytes };
	int slot = -1;

	if (c->dumping || !c->runtime_queue || !nblocks || nblocks > 0x10000 || bytes > c->max_transfer ||
	    lba + nblocks > c->nblocks || ((uintptr_t)buf & 3))
		return EINVAL;
	if (c->part_blocks && lba < c->part_lba + c->part_blocks && c->part_lba < lba + nblocks)
		return EINVAL;	/* never the dump partition */
	for (int i = 0; i < RT_SLOTS && slot < 0; i++)
		if (!c->rt[i].busy)
			slot = i;
	if (slot < 0)
		return EBUSY;
	/* PRPs into this slot's own list: the dump path's list is not touched */
	set_prps(c->mem->rt_prp_list[slot], &e, &iov, 1);
	c->rt[slot] = (struct rt_slot){ true, c->ioq.next_cid, done, cookie };
	submit(c, &c->ioq, &e);
	return 0;
}

static const struct dumpdev_runtime_io nvme_runtime_io = {
	.intr_enable = rt_intr_enable,
	.intr = rt_intr,
	.intr_mute = rt_intr_mute,
	.submit = rt_submit,
};

/* dumpdev=nvme[:N]: the first active namespace of the N-th NVMe controller in PCI order. */
static struct pci_dev *find_controller(int index)
{
	for (int i = 0; i < pci_device_count(); i++) {
		struct pci_dev *p = pci_device(i);

		if (p->class_code == NVME_PCI_CLASS && p->subclass == NVME_PCI_SUBCLASS &&
		    p->prog_if == NVME_PCI_PROG_IF && index-- == 0)
			return p;
	}
	return 0;
}

static int read_blocks(void *softc, uint64_t lba, void *buf, uint32_t nblocks)
{
	return nvme_read(softc, lba, buf, nblocks);
}

static int nvme_dump_attach(int index, uint32_t iotimeout_ms, struct dump_disk *out)
{
	static char where[NVME_MAX_CTRLS][16];
	struct pci_dev *pci = find_controller(index);
	struct nvme_ctrl *c;
	int err;

	if (!pci)
		return ENODEV;
	snprintf(where[nctrls % NVME_MAX_CTRLS], sizeof(where[0]), "%02x:%02x.%x", pci->bus, pci->dev, pci->fn);
	out->where = where[nctrls % NVME_MAX_CTRLS];
	err = nvme_attach(pci, iotimeout_ms, &c);
	if (err)
		return err;
	out->softc = c;
	out->block_size = c->block_size;
	out->nblocks = c->nblocks;
	out->read = read_blocks;
	out->dddump = nvme_dddump;
	out->print_info = nvme_print_info;
	out->runtime_io = &nvme_runtime_io;
	return 0;
}
DUMP_DISK_DRIVER("nvme", nvme_dump_attach);
