/*
 * virtio-scsi (virtio spec 1.x, section 5.6) as an HBA of scsi/hba.h.
 *
 * Queues: 0 control (task management), 1 event (left disabled: we never want hotplug news),
 * 2 the one request queue we use. A request is a chain of descriptors: the command header
 * (LUN, tag, CDB) and any data-out buffers, device-readable; then the response (status,
 * residual, sense) and any data-in buffers, device-writable.
 *
 * All request state is preallocated in .bss: request slots, each owning a fixed range of
 * descriptors plus its header and response; two control slots. A used-ring entry names the
 * head descriptor, so it names the slot; a slot is reused only after its completion was seen,
 * and a command that timed out keeps its slot (ABANDONED) until the device returns it, so a
 * late completion can never be taken for a newer command's.
 *
 * FLAG_NOINTR packets are completed by polling the used ring against a TSC deadline. Runtime
 * packets complete from the MSI-X interrupt (vscsi_intr: tran_intr). tran_quiesce resets the device
 * and rebuilds the queues from scratch, with every interrupt source off: whatever was in
 * flight is gone and can neither complete nor be requeued.
 */
#include "arch/x86/cpu.h"
#include "drivers/virtio_scsi.h"
#include "arch/x86/apic.h"
#include "arch/x86/io.h"
#include "arch/x86/tsc.h"
#include "bus/pci.h"
#include "drivers/virtio_pci.h"
#include "lib/errno.h"
#include "lib/dumpstate.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/testfault.h"

/* struct virtio_scsi_config offsets */
#define CFG_NUM_QUEUES		0
#define CFG_SEG_MAX		4
#define CFG_MAX_SECTORS		8
#define CFG_CMD_PER_LUN		12
#define CFG_EVENT_INFO_SIZE	16
#define CFG_SENSE_SIZE		20
#define CFG_CDB_SIZE		24
#define CFG_MAX_CHANNEL		28	/* le16 */
#define CFG_MAX_TARGET		30	/* le16 */
#define CFG_MAX_LUN		32

#define VIRTIO_SCSI_CDB_SIZE	32
#define VIRTIO_SCSI_SENSE_SIZE	96

/* response codes of a command */
#define VIRTIO_SCSI_S_OK		0
#define VIRTIO_SCSI_S_OVERRUN		1
#define VIRTIO_SCSI_S_ABORTED		2
#define VIRTIO_SCSI_S_BAD_TARGET	3
#define VIRTIO_SCSI_S_RESET		4
#define VIRTIO_SCSI_S_BUSY		5
#define VIRTIO_SCSI_S_TRANSPORT_FAILURE	6
#define VIRTIO_SCSI_S_TARGET_FAILURE	7
#define VIRTIO_SCSI_S_NEXUS_FAILURE	8
#define VIRTIO_SCSI_S_FAILURE		9
/* ... and of a task management function */
#define VIRTIO_SCSI_S_FUNCTION_SUCCEEDED 10
#define VIRTIO_SCSI_S_FUNCTION_REJECTED	11
#define VIRTIO_SCSI_S_INCORRECT_LUN	12
#define RESPONSE_UNWRITTEN		0xff	/* sentinel: the device never wrote it */

#define VIRTIO_SCSI_T_TMF			0
#define VIRTIO_SCSI_T_TMF_ABORT_TASK		0
#define VIRTIO_SCSI_T_TMF_ABORT_TASK_SET	1
#define VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET	4
#define VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET	5

#define VIRTIO_SCSI_S_SIMPLE	0

#define QUEUE_CONTROL		0
#define QUEUE_REQUEST		2

#define VSCSI_MAX		2	/* adapters */
#define VSCSI_SLOTS		8	/* commands in flight per adapter */
#define VSCSI_CTRL_SLOTS	2
#define VSCSI_QUEUE_SIZE	256
#define VSCSI_CTRL_QUEUE_SIZE	16
#define VSCSI_MAX_SEG_LEN	(4u << 20)
#define TMF_TIMEOUT_MS		2000
#define DEFAULT_TIME_MS		10000

/* common configuration registers the transport does not wrap (MSI-X routing) */
#define COMMON_MSIX		0x10
#define COMMON_Q_SELECT		0x16
#define COMMON_Q_MSIX		0x1a

struct vscsi_cmd_req {
	uint8_t lun[8];
	uint64_t id;
	uint8_t task_attr;
	uint8_t prio;
	uint8_t crn;
	uint8_t cdb[VIRTIO_SCSI_CDB_SIZE];
} __attribute__((packed));

struct vscsi_cmd_resp {
	uint32_t sense_len;
	uint32_t residual;
	uint16_t status_qualifier;
	uint8_t status;
	uint8_t response;
	uint8_t sense[VIRTIO_SCSI_SENSE_SIZE];
} __attribute__((packed));

struct vscsi_tmf_req {
	uint32_t type;
	uint32_t subtype;
	uint8_t lun[8];
	uint64_t id;
} __attribute__((packed));

struct vscsi_tmf_resp {
	uint8_t response;
} __attribute__((packed));

_Static_assert(sizeof(struct vscsi_cmd_req) == 19 + VIRTIO_SCSI_CDB_SIZE, "cmd req layout");
_Static_assert(sizeof(struct vscsi_cmd_resp) == 12 + VIRTIO_SCSI_SENSE_SIZE, "cmd resp layout");
_Static_assert(sizeof(struct vscsi_tmf_req) == 24, "tmf req layout");

enum slot_state {
	SLOT_FREE,
	SLOT_INFLIGHT,
	SLOT_DONE,
	SLOT_ABANDONED,	/* timed out or given up; the device still owns its descriptors */
};

struct vscsi_slot {
	struct vscsi_cmd_req req;
	struct vscsi_cmd_resp resp;
	volatile uint8_t state;
	bool polled;
	uint64_t tag;
	uint64_t deadline;	/* a polled command's: pkt_time from its tran_start */
	struct scsi_pkt *pkt;
};

struct vscsi_ctrl_slot {
	struct vscsi_tmf_req req;
	struct vscsi_tmf_resp resp;
	volatile uint8_t state;
};

struct virtio_scsi {
	struct scsi_hba hba;
	struct virtio_pci vp;
	struct virtq ctrlq, reqq;
	struct virtq_memory *ctrl_ring, *req_ring;
	char name[32];
	uint16_t nslots;
	uint16_t desc_per_slot;
	/* device configuration */
	uint32_t num_queues, seg_max, max_sectors, cmd_per_lun, sense_size, cdb_size;
	uint16_t max_channel, max_target;
	uint32_t max_lun;
	/* interrupts */
	bool intr_enabled;
	uint8_t intr_vector;
	uint8_t msix_cap;
	bool quiesced;		/* tran_quiesce ran: runtime completions are never delivered again */
	bool broken;		/* the device could not be brought back up */
	uint64_t next_tag;
	struct vscsi_slot slots[VSCSI_SLOTS];
	struct vscsi_ctrl_slot ctrl[VSCSI_CTRL_SLOTS];
	/* statistics */
	uint64_t commands, polled_commands, intr_completions, interrupts, stale_completions;
	uint64_t timeouts, tmfs, tmf_failures, bus_resets, quiesces, dropped_at_quiesce;
};

/* The dump path's state (lib/dumpstate.h): the softcs and rings polled commands and the
 * quiesce write. */
static struct virtio_scsi adapters[VSCSI_MAX] __dumpstate;
static struct virtq_memory rings[VSCSI_MAX][2] __dumpstate;
static int nadapters;

static const struct scsi_hba_tran vscsi_tran;
static int vscsi_intr_enable(struct scsi_hba *hba, uint8_t vector);
static void vscsi_intr(struct scsi_hba *hba);
static void vscsi_intr_mute(struct scsi_hba *hba);

/* The single-level LUN structure virtio-scsi uses: 1, target, then the LUN (flat space
 * addressing, 0x40 in the top bits, for LUNs from 256 on; QEMU accepts it for all). */
static void encode_lun(uint8_t lun[8], uint16_t target, uint16_t l)
{
	lun[0] = 1;
	lun[1] = (uint8_t)target;
	lun[2] = l < 256 ? 0 : (uint8_t)(0x40 | (l >> 8));
	lun[3] = (uint8_t)l;
	lun[4] = lun[5] = lun[6] = lun[7] = 0;
}

/* ---- bring-up ---------------------------------------------------------------------------- */

static void msix_disable(struct virtio_scsi *vs)
{
	pci_msix_disable(vs->vp.pci, vs->msix_cap);
	vs->intr_enabled = false;
}

/*
 * Reset and full re-initialisation with fresh, zeroed rings and no interrupt source:
 * nothing from before survives. Slots are all FREE afterwards.
 */
static int bring_up(struct virtio_scsi *vs)
{
	int err;

	msix_disable(vs);
	err = virtio_pci_reset(&vs->vp);
	if (err)
		return err;
	err = virtio_pci_negotiate(&vs->vp, 0);	/* no optional feature: no hotplug, no T10 PI */
	if (err)
		return err;

	vs->sense_size = virtio_pci_cfg_read32(&vs->vp, CFG_SENSE_SIZE);
	vs->cdb_size = virtio_pci_cfg_read32(&vs->vp, CFG_CDB_SIZE);
	if (vs->sense_size != VIRTIO_SCSI_SENSE_SIZE || vs->cdb_size != VIRTIO_SCSI_CDB_SIZE) {
		/* Our header and response buffers have fixed sizes: make the device use them. */
		mmio_write32(vs->vp.device_cfg + CFG_SENSE_SIZE, VIRTIO_SCSI_SENSE_SIZE);
		mmio_write32(vs->vp.device_cfg + CFG_CDB_SIZE, VIRTIO_SCSI_CDB_SIZE);
		vs->sense_size = virtio_pci_cfg_read32(&vs->vp, CFG_SENSE_SIZE);
		vs->cdb_size = virtio_pci_cfg_read32(&vs->vp, CFG_CDB_SIZE);
		if (vs->sense_size != VIRTIO_SCSI_SENSE_SIZE || vs->cdb_size != VIRTIO_SCSI_CDB_SIZE)
			return ENOTSUP;
	}

	err = virtio_pci_setup_queue(&vs->vp, &vs->ctrlq, QUEUE_CONTROL, vs->ctrl_ring,
				     VSCSI_CTRL_QUEUE_SIZE);
	if (err)
		return err;
	err = virtio_pci_setup_queue(&vs->vp, &vs->reqq, QUEUE_REQUEST, vs->req_ring, VSCSI_QUEUE_SIZE);
	if (err)
		return err;
	if (vs->ctrlq.size < 2 * VSCSI_CTRL_SLOTS)
		return ENOTSUP;

	/* Up to VSCSI_SLOTS slots of at least 8 descriptors (header, response, 6 data). */
	vs->nslots = vs->reqq.size / 8 < VSCSI_SLOTS ? vs->reqq.size / 8 : VSCSI_SLOTS;
	if (vs->nslots == 0)
		return ENOTSUP;
	vs->desc_per_slot = vs->reqq.size / vs->nslots;
	for (int i = 0; i < VSCSI_SLOTS; i++) {
		vs->slots[i].state = SLOT_FREE;
		vs->slots[i].pkt = 0;
	}
	for (int i = 0; i < VSCSI_CTRL_SLOTS; i++)
		vs->ctrl[i].state = SLOT_FREE;
	virtio_pci_driver_ok(&vs->vp);
	return 0;
}

static void read_config(struct virtio_scsi *vs)
{
	uint32_t segs, xfer;

	vs->num_queues = virtio_pci_cfg_read32(&vs->vp, CFG_NUM_QUEUES);
	vs->seg_max = virtio_pci_cfg_read32(&vs->vp, CFG_SEG_MAX);
	vs->max_sectors = virtio_pci_cfg_read32(&vs->vp, CFG_MAX_SECTORS);
	vs->cmd_per_lun = virtio_pci_cfg_read32(&vs->vp, CFG_CMD_PER_LUN);
	vs->max_channel = (uint16_t)virtio_pci_cfg_read32(&vs->vp, CFG_MAX_CHANNEL);
	vs->max_target = (uint16_t)(virtio_pci_cfg_read32(&vs->vp, CFG_MAX_CHANNEL) >> 16);
	vs->max_lun = virtio_pci_cfg_read32(&vs->vp, CFG_MAX_LUN);

	/* Data segments per command: what the device takes and what a slot's descriptors hold. */
	segs = vs->desc_per_slot - 2u;
	if (vs->seg_max && vs->seg_max < segs)
		segs = vs->seg_max;
	if (segs > SCSI_MAX_SGL)
		segs = SCSI_MAX_SGL;
	/* max_sectors is in 512-byte units; 0 means no hint. */
	xfer = vs->max_sectors && vs->max_sectors < 0x7fffff ? vs->max_sectors * 512u : 0xfffff000u;

	vs->hba.tran = &vscsi_tran;
	vs->hba.limits.dma_addr_max = ~0ull;	/* virtio DMA addresses are 64-bit */
	vs->hba.limits.max_xfer = xfer;
	vs->hba.limits.max_segs = segs;
	vs->hba.limits.max_seg_len = VSCSI_MAX_SEG_LEN;
	/* The LUN structure carries the target in one byte; max_* are inclusive maxima. */
	vs->hba.max_target = (uint16_t)((vs->max_target < 255 ? vs->max_target : 255) + 1);
	vs->hba.max_lun = (uint16_t)((vs->max_lun < 16383 ? vs->max_lun : 16383) + 1);
	vs->hba.initiator_id = 0xffff;	/* not a parallel bus */
	/* One slot is kept for the retry of a command that failed while the others are in flight
	 * (the failed one's may stay abandoned). */
	vs->hba.max_polled = (uint16_t)(vs->nslots - 1);
	vs->hba.hba_private = vs;
	vs->hba.name = vs->name;
}

int virtio_scsi_probe(void)
{
	static const uint16_t ids[] = { VIRTIO_SCSI_PCI_DEVICE_MODERN, VIRTIO_SCSI_PCI_DEVICE_TRANSITIONAL };
	struct pci_dev *pci;
	int found = 0;

	for (int index = 0; nadapters < VSCSI_MAX && (pci = pci_find(VIRTIO_PCI_VENDOR, ids, 2, index)); index++) {
		struct virtio_scsi *vs = &adapters[nadapters];
		int err;

		memset(vs, 0, sizeof(*vs));
		snprintf(vs->name, sizeof(vs->name), "virtio-scsi %02x:%02x.%x", pci->bus, pci->dev, pci->fn);
		vs->ctrl_ring = &rings[nadapters][0];
		vs->req_ring = &rings[nadapters][1];
		err = virtio_pci_attach(&vs->vp, pci);
		if (!err) {
			vs->msix_cap = pci_find_cap(pci, PCI_CAP_ID_MSIX, 0);
			err = bring_up(vs);
		}
		if (err) {
			printf("%s: cannot start: %s\n", vs->name, errno_name(err));
			continue;
		}
		read_config(vs);
		err = scsi_hba_register(&vs->hba);
		if (err) {
			printf("%s: cannot register: %s\n", vs->name, errno_name(err));
			continue;
		}
		nadapters++;
		found++;
	}
	return found;
}
SCSI_HBA_DRIVER(VIRTIO_SCSI_TRAN_NAME, "virtio-scsi", virtio_scsi_probe);

/* ---- the rings ----------------------------------------------------------------------------- */

/* Consume every used entry of the request queue; slots change state, nothing else happens. */
static void reap(struct virtio_scsi *vs)
{
	uint64_t flags = irq_save();
	uint32_t id;

	while (virtq_next_used(&vs->reqq, &id)) {
		uint32_t n = id / vs->desc_per_slot;

		if (id % vs->desc_per_slot || n >= vs->nslots) {
			vs->stale_completions++;
			continue;
		}
		if (vs->slots[n].state == SLOT_INFLIGHT)
			vs->slots[n].state = SLOT_DONE;
		else if (vs->slots[n].state == SLOT_ABANDONED)
			vs->slots[n].state = SLOT_FREE;	/* the late end of a command we gave up on */
		else
			vs->stale_completions++;
	}
	irq_restore(flags);
}

/* Translate the device's response into the packet's results. */
static void fill_result(struct virtio_scsi *vs, struct vscsi_slot *s, struct scsi_pkt *pkt)
{
	const struct vscsi_cmd_resp *r = &s->resp;
	uint8_t response;

	rmb();	/* the response is read after the completion that published it */
	response = READ_ONCE(r->response);
	pkt->pkt_scbp = 0xff;
	pkt->pkt_resid = 0;
	pkt->pkt_sense_len = 0;
	switch (response) {
	case VIRTIO_SCSI_S_OK: {
		uint32_t sl = r->sense_len;

		pkt->pkt_reason = CMD_CMPLT;
		pkt->pkt_scbp = r->status;
		pkt->pkt_resid = r->residual <= pkt->pkt_datalen ? r->residual : pkt->pkt_datalen;
		if (sl > vs->sense_size)
			sl = vs->sense_size;
		if (sl > SCSI_SENSE_LEN)
			sl = SCSI_SENSE_LEN;
		memcpy(pkt->pkt_sense, r->sense, sl);
		/* Autosense: a CHECK CONDITION without sense would need REQUEST SENSE, but
		 * virtio-scsi always returns what the target had. */
		pkt->pkt_sense_len = sl;
		break;
	}
	case VIRTIO_SCSI_S_BUSY:
		pkt->pkt_reason = CMD_CMPLT;
		pkt->pkt_scbp = STATUS_BUSY;
		break;
	case VIRTIO_SCSI_S_ABORTED:
		pkt->pkt_reason = CMD_ABORTED;
		break;
	case VIRTIO_SCSI_S_RESET:
		pkt->pkt_reason = CMD_RESET;
		break;
	case VIRTIO_SCSI_S_BAD_TARGET:
		pkt->pkt_reason = CMD_DEV_GONE;
		break;
	default:	/* overrun, transport/target/nexus failure, failure, never written */
		pkt->pkt_reason = CMD_TRAN_ERR;
		break;
	}
}

/* virtq_poll_used's question for a command: is its slot back? */
struct vscsi_wait {
	struct virtio_scsi *vs;
	const volatile uint8_t *state;	/* the slot's */
};

static bool cmd_back(void *arg)
{
	struct vscsi_wait *w = arg;

	reap(w->vs);
	return *w->state == SLOT_DONE;
}

/* ---- task management (control queue, always polled) ----------------------------------------- */

/* Reap the control queue (two descriptors per control slot): control slots are owned by a TMF
 * only while it runs, except those abandoned, which come back here. */
static void ctrl_reap(struct virtio_scsi *vs)
{
	uint32_t id;

	while (virtq_next_used(&vs->ctrlq, &id)) {
		struct vscsi_ctrl_slot *c = id % 2 == 0 && id / 2 < VSCSI_CTRL_SLOTS ? &vs->ctrl[id / 2] : 0;

		if (c && c->state == SLOT_INFLIGHT)
			c->state = SLOT_DONE;
		else if (c && c->state == SLOT_ABANDONED)
			c->state = SLOT_FREE;
		else
			vs->stale_completions++;
	}
}

static bool tmf_back(void *arg)
{
	struct vscsi_wait *w = arg;

	ctrl_reap(w->vs);
	return *w->state == SLOT_DONE;
}

/* One TMF; returns the response code, or RESPONSE_UNWRITTEN if none came in time. */
static uint8_t do_tmf(struct virtio_scsi *vs, uint32_t subtype, const struct scsi_address *ap,
		      uint64_t tag, uint32_t timeout_ms)
{
	struct vscsi_ctrl_slot *c = 0;
	struct virtq_chain ch;
	struct vscsi_wait w;
	uint8_t response;
	int i;

	ctrl_reap(vs);
	for (i = 0; i < VSCSI_CTRL_SLOTS; i++)
		if (vs->ctrl[i].state == SLOT_FREE) {
			c = &vs->ctrl[i];
			break;
		}
	if (!c)
		return RESPONSE_UNWRITTEN;

	vs->tmfs++;
	memset(&c->req, 0, sizeof(c->req));
	c->req.type = VIRTIO_SCSI_T_TMF;
	c->req.subtype = subtype;
	encode_lun(c->req.lun, ap->a_target, ap->a_lun);
	c->req.id = tag;
	c->resp.response = RESPONSE_UNWRITTEN;
	virtq_chain_begin(&ch, &vs->ctrlq, (uint16_t)(2 * i), 2);
	virtq_chain_add(&ch, (uintptr_t)&c->req, sizeof(c->req), false);
	virtq_chain_add(&ch, (uintptr_t)&c->resp, sizeof(c->resp), true);
	c->state = SLOT_INFLIGHT;
	virtq_chain_submit(&vs->vp, &ch);

	w = (struct vscsi_wait){ vs, &c->state };
	if (virtq_poll_used(&vs->vp, deadline_after_ms(timeout_ms), tmf_back, &w)) {
		c->state = SLOT_ABANDONED;
		vs->tmf_failures++;
		return RESPONSE_UNWRITTEN;
	}
	rmb();	/* the response is read after the completion that published it */
	response = READ_ONCE(c->resp.response);
	c->state = SLOT_FREE;
	return response;
}

static bool tmf_ok(uint8_t response)
{
	return response == VIRTIO_SCSI_S_OK || response == VIRTIO_SCSI_S_FUNCTION_SUCCEEDED;
}

/* Runtime packets lost to a reset of the whole device: hand them back as CMD_RESET so their
 * owner can retry (never at dump time: then they are simply forgotten). */
static void fail_runtime_inflight(struct virtio_scsi *vs, struct scsi_pkt **lost, int n)
{
	for (int i = 0; i < n; i++) {
		lost[i]->pkt_reason = CMD_RESET;
		lost[i]->pkt_ha_private = 0;
		if (lost[i]->pkt_comp)
			lost[i]->pkt_comp(lost[i]);
	}
}

/* Reset the device, rebuild the queues; interrupts stay off (until re-enabled by the owner). */
static int reset_device(struct virtio_scsi *vs, bool keep_interrupts)
{
	struct scsi_pkt *lost[VSCSI_SLOTS];
	uint8_t vector = vs->intr_vector;
	bool had_intr = vs->intr_enabled;
	uint64_t flags = irq_save();
	int nlost = 0, err;

	for (int i = 0; i < vs->nslots; i++)
		if ((vs->slots[i].state == SLOT_INFLIGHT || vs->slots[i].state == SLOT_DONE) &&
		    !vs->slots[i].polled && vs->slots[i].pkt)
			lost[nlost++] = vs->slots[i].pkt;
	vs->bus_resets++;
	err = bring_up(vs);
	vs->broken = err != 0;
	irq_restore(flags);
	if (!err && keep_interrupts && had_intr)
		err = vscsi_intr_enable(&vs->hba, vector);
	if (!vs->quiesced)
		fail_runtime_inflight(vs, lost, nlost);
	return err;
}

/* ---- tran_* ------------------------------------------------------------------------------- */

static struct vscsi_slot *slot_of_pkt(struct virtio_scsi *vs, struct scsi_pkt *pkt)
{
	for (int i = 0; i < vs->nslots; i++)
		if (vs->slots[i].pkt == pkt &&
		    (vs->slots[i].state == SLOT_INFLIGHT || vs->slots[i].state == SLOT_ABANDONED))
			return &vs->slots[i];
	return 0;
}

/* A command back from the device: its results into the packet, its slot free. */
static void take_result(struct virtio_scsi *vs, struct vscsi_slot *s, struct scsi_pkt *pkt)
{
	fill_result(vs, s, pkt);
	s->pkt = 0;
	pkt->pkt_ha_private = 0;
	s->state = SLOT_FREE;
}

/* Wait for a polled command until its deadline; on timeout try ABORT TASK, and if even that
 * does not bring it back, leave the slot abandoned. */
static void wait_polled(struct virtio_scsi *vs, struct vscsi_slot *s, struct scsi_pkt *pkt)
{
	uint32_t ms = pkt->pkt_time ? pkt->pkt_time : DEFAULT_TIME_MS;
	struct vscsi_wait w = { vs, &s->state };
	int err = virtq_poll_used(&vs->vp, s->deadline, cmd_back, &w);

	if (!err) {
		take_result(vs, s, pkt);
		return;
	}
	if (err == EIO) {	/* the device failed (NEEDS_RESET, FAILED): it may never answer */
		s->state = SLOT_ABANDONED;
		s->pkt = 0;
		pkt->pkt_reason = CMD_TRAN_ERR;
		return;
	}

	vs->timeouts++;
	tmf_ok(do_tmf(vs, VIRTIO_SCSI_T_TMF_ABORT_TASK, &pkt->pkt_address, s->tag,
		      ms < TMF_TIMEOUT_MS ? ms : TMF_TIMEOUT_MS));
	reap(vs);
	if (s->state == SLOT_DONE)
		s->state = SLOT_FREE;		/* it came back (aborted): the slot is reusable */
	else if (s->state == SLOT_INFLIGHT)
		s->state = SLOT_ABANDONED;
	s->pkt = 0;
	pkt->pkt_ha_private = 0;
	pkt->pkt_reason = CMD_TIMEOUT;
}

static int vscsi_start(struct scsi_address *ap, struct scsi_pkt *pkt)
{
	struct virtio_scsi *vs = ap->a_hba->hba_private;
	const struct scsi_dma_limits *lim = &vs->hba.limits;
	bool polled = pkt->pkt_flags & FLAG_NOINTR;
	struct vscsi_slot *s = 0;
	struct virtq_chain ch;
	uint64_t flags, datalen = 0;
	int i;

	if (vs->broken)
		return TRAN_FATAL_ERROR;
	if (pkt->pkt_cdblen == 0 || pkt->pkt_cdblen > vs->cdb_size || pkt->pkt_sgl_count < 0 ||
	    (uint32_t)pkt->pkt_sgl_count > lim->max_segs || pkt->pkt_datalen > lim->max_xfer ||
	    ap->a_target >= vs->hba.max_target || ap->a_lun >= vs->hba.max_lun ||
	    ((pkt->pkt_flags & FLAG_DATA_IN) && (pkt->pkt_flags & FLAG_DATA_OUT)))
		return TRAN_BADPKT;
	for (i = 0; i < pkt->pkt_sgl_count; i++) {
		if (pkt->pkt_sgl[i].len == 0 || pkt->pkt_sgl[i].len > lim->max_seg_len)
			return TRAN_BADPKT;
		datalen += pkt->pkt_sgl[i].len;
	}
	if (datalen != pkt->pkt_datalen || (datalen && !(pkt->pkt_flags & (FLAG_DATA_IN | FLAG_DATA_OUT))))
		return TRAN_BADPKT;
	/* After tran_quiesce only the dump's polled commands go out. */
	if (vs->quiesced && !polled)
		return TRAN_FATAL_ERROR;

	reap(vs);
	flags = irq_save();
	for (i = 0; i < vs->nslots; i++)
		if (vs->slots[i].state == SLOT_FREE) {
			s = &vs->slots[i];
			break;
		}
	if (!s) {
		irq_restore(flags);
		return TRAN_BUSY;
	}

	/* Field by field rather than memset (see scsi_init_pkt). */
	encode_lun(s->req.lun, ap->a_target, ap->a_lun);
	s->tag = ++vs->next_tag;
	s->req.id = s->tag;
	s->req.task_attr = VIRTIO_SCSI_S_SIMPLE;
	s->req.prio = 0;
	s->req.crn = 0;
	for (int k = 0; k < VIRTIO_SCSI_CDB_SIZE; k += 8)
		*(uint64_t *)(s->req.cdb + k) = k < SCSI_MAX_CDB ? *(const uint64_t *)(pkt->pkt_cdbp + k) : 0;
	s->resp.sense_len = 0;
	s->resp.residual = 0;
	s->resp.status = 0;
	s->resp.response = RESPONSE_UNWRITTEN;
	s->polled = polled;
	s->pkt = pkt;
	pkt->pkt_ha_private = s;
	pkt->pkt_reason = CMD_INCOMPLETE;
	if (polled)
		s->deadline = deadline_after_ms(pkt->pkt_time ? pkt->pkt_time : DEFAULT_TIME_MS);

	/* header, data-out, response, data-in: the device-readable part first (max_segs <=
	 * desc_per_slot - 2: the slot's range holds it) */
	virtq_chain_begin(&ch, &vs->reqq, (uint16_t)(i * vs->desc_per_slot), vs->desc_per_slot);
	virtq_chain_add(&ch, (uintptr_t)&s->req, sizeof(s->req), false);
	if (pkt->pkt_flags & FLAG_DATA_OUT)
		for (int k = 0; k < pkt->pkt_sgl_count; k++)
			virtq_chain_add(&ch, pkt->pkt_sgl[k].addr, pkt->pkt_sgl[k].len, false);
	virtq_chain_add(&ch, (uintptr_t)&s->resp, sizeof(s->resp), true);
	if (pkt->pkt_flags & FLAG_DATA_IN)
		for (int k = 0; k < pkt->pkt_sgl_count; k++)
			virtq_chain_add(&ch, pkt->pkt_sgl[k].addr, pkt->pkt_sgl[k].len, true);

	s->state = SLOT_INFLIGHT;
	if (pkt->pkt_flags & FLAG_NOKICK)
		virtq_chain_publish(&ch);	/* vscsi_kick rings the doorbell */
	else
		virtq_chain_submit(&vs->vp, &ch);
	vs->commands++;
	irq_restore(flags);

	if (!polled)
		return TRAN_ACCEPT;	/* vscsi_intr completes it */
	vs->polled_commands++;
	if (!(pkt->pkt_flags & FLAG_NOWAIT))
		wait_polled(vs, s, pkt);
	return TRAN_ACCEPT;	/* FLAG_NOWAIT: vscsi_poll completes it */
}

/* The slot of a FLAG_NOWAIT command, still its own; NULL when a device reset (RESET_ALL for
 * another command) freed every slot: then the command is gone. */
static struct vscsi_slot *posted_slot(struct virtio_scsi *vs, struct scsi_pkt *pkt)
{
	struct vscsi_slot *s = pkt->pkt_ha_private;

	if (s < vs->slots || s >= vs->slots + vs->nslots || s->pkt != pkt ||
	    (s->state != SLOT_INFLIGHT && s->state != SLOT_DONE))
		return 0;
	return s;
}

/* tran_poll_done: a look at the used ring, no wait (memory only: ring 3 may run it). */
static int vscsi_poll_done(struct scsi_address *ap, struct scsi_pkt *pkt)
{
	struct virtio_scsi *vs = ap->a_hba->hba_private;
	struct vscsi_slot *s = posted_slot(vs, pkt);

	if (!s || testfault(TF_NO_WAIT))	/* (vscsi_poll's to handle) */
		return 0;
	reap(vs);
	if (s->state != SLOT_DONE)
		return 0;
	take_result(vs, s, pkt);
	return 1;
}

/* tran_poll: a FLAG_NOWAIT command to completion. */
static int vscsi_poll(struct scsi_address *ap, struct scsi_pkt *pkt)
{
	struct virtio_scsi *vs = ap->a_hba->hba_private;
	struct vscsi_slot *s = posted_slot(vs, pkt);

	if (!s) {
		pkt->pkt_ha_private = 0;
		pkt->pkt_reason = CMD_RESET;
		return TRAN_ACCEPT;
	}
	if (testfault(TF_NO_WAIT)) {
		/* Deliberately wrong: the command is reported done (GOOD) without a look at the
		 * device; its slot is freed when the device gives it back. */
		s->state = s->state == SLOT_DONE ? SLOT_FREE : SLOT_ABANDONED;
		s->pkt = 0;
		pkt->pkt_ha_private = 0;
		pkt->pkt_reason = CMD_CMPLT;
		pkt->pkt_scbp = STATUS_GOOD;
		pkt->pkt_resid = 0;
		pkt->pkt_sense_len = 0;
		return TRAN_ACCEPT;
	}
	wait_polled(vs, s, pkt);
	return TRAN_ACCEPT;
}

/* tran_kick: the doorbell for the FLAG_NOKICK commands vscsi_start published. */
static void vscsi_kick(struct scsi_hba *hba)
{
	struct virtio_scsi *vs = hba->hba_private;

	virtio_pci_notify(&vs->vp, &vs->reqq);
}

static int vscsi_abort(struct scsi_address *ap, struct scsi_pkt *pkt)
{
	struct virtio_scsi *vs = ap->a_hba->hba_private;
	struct vscsi_slot *s;

	if (vs->broken)
		return 0;
	if (!pkt)
		return tmf_ok(do_tmf(vs, VIRTIO_SCSI_T_TMF_ABORT_TASK_SET, ap, 0, TMF_TIMEOUT_MS));
	s = slot_of_pkt(vs, pkt);
	if (!s)
		return 1;	/* not (or no longer) ours to abort: nothing left to do */
	return tmf_ok(do_tmf(vs, VIRTIO_SCSI_T_TMF_ABORT_TASK, ap, s->tag, TMF_TIMEOUT_MS));
}

static int vscsi_reset(struct scsi_address *ap, int level)
{
	struct virtio_scsi *vs = ap->a_hba->hba_private;

	switch (level) {
	case RESET_LUN:
		return !vs->broken && tmf_ok(do_tmf(vs, VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, ap, 0,
						    TMF_TIMEOUT_MS));
	case RESET_TARGET:
		return !vs->broken && tmf_ok(do_tmf(vs, VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET, ap, 0,
						    TMF_TIMEOUT_MS));
	case RESET_ALL:
		/* There is no bus to reset on virtio-scsi: resetting the device resets every
		 * target behind it (they report UNIT ATTENTION next). */
		return reset_device(vs, true) == 0;
	default:
		return 0;
	}
}

static int vscsi_quiesce(struct scsi_hba *hba)
{
	struct virtio_scsi *vs = hba->hba_private;
	uint64_t flags = irq_save();
	int err;

	vs->quiesced = true;	/* first: a completion that sneaks in is not delivered */
	for (int i = 0; i < vs->nslots; i++)
		if (vs->slots[i].state != SLOT_FREE)
			vs->dropped_at_quiesce++;
	vs->quiesces++;
	if (testfault(TF_MASK_ONLY)) {
		/* Deliberately wrong: interrupts are masked (the crash's mute hook did that), the
		 * runtime commands are forgotten, but the device keeps them and its rings: nothing
		 * is reset or aborted. */
		for (int i = 0; i < vs->nslots; i++)
			vs->slots[i].state = SLOT_FREE;
		irq_restore(flags);
		return 0;
	}
	err = bring_up(vs);
	vs->broken = err != 0;
	irq_restore(flags);
	return err;
}

static void vscsi_print_info(struct scsi_hba *hba)
{
	struct virtio_scsi *vs = hba->hba_private;
	int busy = 0;

	for (int i = 0; i < vs->nslots; i++)
		busy += vs->slots[i].state != SLOT_FREE;
	printf("  %s: %u request queue(s), using queue %u of %u entries (%u slots of %u descriptors)\n",
	       vs->name, vs->num_queues, QUEUE_REQUEST, vs->reqq.size, vs->nslots, vs->desc_per_slot);
	printf("  config: seg_max %u, max_sectors %u, cmd_per_lun %u, max_channel %u, max_target %u, "
	       "max_lun %u, cdb %u, sense %u\n",
	       vs->seg_max, vs->max_sectors, vs->cmd_per_lun, vs->max_channel, vs->max_target,
	       vs->max_lun, vs->cdb_size, vs->sense_size);
	printf("  device status 0x%02x, interrupts %s", virtio_pci_status(&vs->vp),
	       vs->intr_enabled ? "MSI-X" : "off (polled)");
	if (vs->intr_enabled)
		printf(" vector 0x%02x", vs->intr_vector);
	printf("%s%s, %d in flight\n", vs->quiesced ? ", quiesced" : "", vs->broken ? ", BROKEN" : "", busy);
	printf("  commands %llu (polled %llu, by interrupt %llu), interrupts %llu, timeouts %llu, "
	       "stale completions %llu\n",
	       (unsigned long long)vs->commands, (unsigned long long)vs->polled_commands,
	       (unsigned long long)vs->intr_completions, (unsigned long long)vs->interrupts,
	       (unsigned long long)vs->timeouts, (unsigned long long)vs->stale_completions);
	printf("  task management %llu (failed %llu), device resets %llu, quiesces %llu (dropped %llu)\n",
	       (unsigned long long)vs->tmfs, (unsigned long long)vs->tmf_failures,
	       (unsigned long long)vs->bus_resets, (unsigned long long)vs->quiesces,
	       (unsigned long long)vs->dropped_at_quiesce);
}

/* DUMPINIT / DUMPTERM: the dump path touches the common configuration, the notify area and
 * the device configuration (bring_up); the MSI-X table is only masked through config space. */
static int vscsi_dump_pin(struct scsi_hba *hba)
{
	struct virtio_scsi *vs = hba->hba_private;

	return virtio_pci_pin_registers(&vs->vp);
}

static void vscsi_dump_unpin(struct scsi_hba *hba)
{
	struct virtio_scsi *vs = hba->hba_private;

	virtio_pci_unpin_registers(&vs->vp);
}

static const struct scsi_hba_tran vscsi_tran = {
	.tran_name = VIRTIO_SCSI_TRAN_NAME,
	.tran_start = vscsi_start,
	.tran_reset = vscsi_reset,
	.tran_abort = vscsi_abort,
	.tran_poll = vscsi_poll,
	.tran_kick = vscsi_kick,
	.tran_poll_done = vscsi_poll_done,
	.tran_quiesce = vscsi_quiesce,
	.tran_print_info = vscsi_print_info,
	.tran_dump_pin = vscsi_dump_pin,
	.tran_dump_unpin = vscsi_dump_unpin,
	.tran_intr_enable = vscsi_intr_enable,
	.tran_intr = vscsi_intr,
	.tran_intr_mute = vscsi_intr_mute,
};

/* ---- runtime interrupts (tran_intr_*) ------------------------------------------------------ */

/* MSI-X table entry 0 to `vector`, fixed, edge, this CPU; the request queue signals entry 0,
 * configuration changes nothing. */
static int vscsi_intr_enable(struct scsi_hba *hba, uint8_t vector)
{
	struct virtio_scsi *vs = hba->hba_private;
	int err;

	if (!vs->msix_cap)
		return ENOTSUP;
	if (vs->quiesced || vs->broken)
		return EINVAL;
	err = pci_msix_route(vs->vp.pci, vs->msix_cap, 0, vector);
	if (err)
		return err;
	mmio_write16(vs->vp.common + COMMON_MSIX, VIRTIO_MSI_NO_VECTOR);
	mmio_write16(vs->vp.common + COMMON_Q_SELECT, QUEUE_REQUEST);
	mmio_write16(vs->vp.common + COMMON_Q_MSIX, 0);
	if (mmio_read16(vs->vp.common + COMMON_Q_MSIX) != 0) {
		msix_disable(vs);
		return EIO;
	}
	/* Ask for interrupts on the request queue (the transport set NO_INTERRUPT). */
	WRITE_ONCE(vs->reqq.mem->avail.flags, 0);
	mb();
	vs->intr_vector = vector;
	vs->intr_enabled = true;
	return 0;
}

/* Crash time, first thing: ask the request queue not to interrupt (a store to the avail ring's
 * flags; no device access). DUMPSTART's tran_quiesce does the rest. */
static void vscsi_intr_mute(struct scsi_hba *hba)
{
	struct virtio_scsi *vs = hba->hba_private;

	WRITE_ONCE(vs->reqq.mem->avail.flags, VIRTQ_AVAIL_F_NO_INTERRUPT);
	mb();
}

/* The vector's handler: reap the used ring, complete runtime packets through pkt_comp. The
 * caller sends the local APIC EOI. */
static void vscsi_intr(struct scsi_hba *hba)
{
	struct virtio_scsi *vs = hba->hba_private;

	vs->interrupts++;
	if (vs->quiesced)
		return;
	reap(vs);
	/* Deliver runtime completions one at a time; pkt_comp may start new commands. */
	for (int i = 0; i < vs->nslots; i++) {
		struct vscsi_slot *s = &vs->slots[i];
		struct scsi_pkt *pkt;
		uint64_t flags = irq_save();

		if (s->state != SLOT_DONE || s->polled || !s->pkt) {
			irq_restore(flags);
			continue;
		}
		pkt = s->pkt;
		fill_result(vs, s, pkt);
		s->pkt = 0;
		pkt->pkt_ha_private = 0;
		s->state = SLOT_FREE;
		vs->intr_completions++;
		irq_restore(flags);
		if (pkt->pkt_comp)
			pkt->pkt_comp(pkt);
	}
}
