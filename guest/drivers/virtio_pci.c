/*
 * Modern virtio-pci transport. The device describes where its register blocks live with
 * vendor-specific PCI capabilities (cfg_type 1..4), each naming a BAR, an offset and a length.
 * We never enable MSI-X or INTx: every queue and the config change vector are set to
 * VIRTIO_MSI_NO_VECTOR and the PCI command register's INTx-disable bit is set, so the device
 * cannot interrupt us; completion is found by polling the used ring.
 */
#include "drivers/virtio_pci.h"
#include "arch/x86/io.h"
#include "arch/x86/pin.h"
#include "arch/x86/tsc.h"
#include "lib/errno.h"
#include "lib/testfault.h"
#include "lib/string.h"

#define VIRTIO_PCI_CAP_COMMON_CFG	1
#define VIRTIO_PCI_CAP_NOTIFY_CFG	2
#define VIRTIO_PCI_CAP_ISR_CFG		3
#define VIRTIO_PCI_CAP_DEVICE_CFG	4

/* struct virtio_pci_common_cfg offsets */
#define COMMON_DFSELECT		0x00
#define COMMON_DF		0x04
#define COMMON_GFSELECT		0x08
#define COMMON_GF		0x0c
#define COMMON_MSIX		0x10
#define COMMON_NUMQ		0x12
#define COMMON_STATUS		0x14
#define COMMON_CFGGENERATION	0x15
#define COMMON_Q_SELECT		0x16
#define COMMON_Q_SIZE		0x18
#define COMMON_Q_MSIX		0x1a
#define COMMON_Q_ENABLE		0x1c
#define COMMON_Q_NOFF		0x1e
#define COMMON_Q_DESC		0x20
#define COMMON_Q_AVAIL		0x28
#define COMMON_Q_USED		0x30

/* struct virtio_pci_cap field offsets within the capability */
#define CAP_CFG_TYPE	3
#define CAP_BAR		4
#define CAP_OFFSET	8
#define CAP_LENGTH	12
#define CAP_NOTIFY_MULT	16

#define RESET_TIMEOUT_US 1000000

static int cap_address(struct pci_dev *pci, uint8_t cap, uintptr_t *addr, uint32_t *len)
{
	uint8_t bar = pci_cfg_read8(pci, cap + CAP_BAR);
	uint32_t off = pci_cfg_read32(pci, cap + CAP_OFFSET);
	uint32_t length = pci_cfg_read32(pci, cap + CAP_LENGTH);

	if (bar >= PCI_MAX_BARS || pci->bar[bar].io || !pci->bar[bar].base ||
	    (uint64_t)off + length > pci->bar[bar].size)
		return ENXIO;
	*addr = (uintptr_t)(pci->bar[bar].base + off);
	*len = length;
	return 0;
}

int virtio_pci_attach(struct virtio_pci *vp, struct pci_dev *pci)
{
	uint8_t cap = 0;
	uint32_t len;

	memset(vp, 0, sizeof(*vp));
	vp->pci = pci;
	while ((cap = pci_find_cap(pci, PCI_CAP_ID_VNDR, cap)) != 0) {
		uint8_t type = pci_cfg_read8(pci, cap + CAP_CFG_TYPE);
		uintptr_t addr;

		/* The first capability of each type is the preferred one. */
		if (cap_address(pci, cap, &addr, &len))
			continue;
		if (type == VIRTIO_PCI_CAP_COMMON_CFG && !vp->common) {
			vp->common = addr;
			vp->common_len = len;
		} else if (type == VIRTIO_PCI_CAP_NOTIFY_CFG && !vp->notify_base) {
			vp->notify_base = addr;
			vp->notify_len = len;
			vp->notify_off_multiplier = pci_cfg_read32(pci, cap + CAP_NOTIFY_MULT);
		} else if (type == VIRTIO_PCI_CAP_ISR_CFG && !vp->isr) {
			vp->isr = addr;
		} else if (type == VIRTIO_PCI_CAP_DEVICE_CFG && !vp->device_cfg) {
			vp->device_cfg = addr;
			vp->device_cfg_len = len;
		}
	}
	if (!vp->common || !vp->notify_base || !vp->device_cfg)
		return ENODEV;
	return 0;
}

int virtio_pci_pin_registers(const struct virtio_pci *vp)
{
	int err;

	err = pin_phys(vp->common, vp->common_len);
	if (err)
		return err;
	err = pin_phys(vp->notify_base, vp->notify_len ? vp->notify_len : 2);
	if (err) {
		unpin_phys(vp->common, vp->common_len);
		return err;
	}
	err = pin_phys(vp->device_cfg, vp->device_cfg_len ? vp->device_cfg_len : 4);
	if (err) {
		unpin_phys(vp->notify_base, vp->notify_len ? vp->notify_len : 2);
		unpin_phys(vp->common, vp->common_len);
	}
	return err;
}

void virtio_pci_unpin_registers(const struct virtio_pci *vp)
{
	unpin_phys(vp->device_cfg, vp->device_cfg_len ? vp->device_cfg_len : 4);
	unpin_phys(vp->notify_base, vp->notify_len ? vp->notify_len : 2);
	unpin_phys(vp->common, vp->common_len);
}

uint8_t virtio_pci_status(const struct virtio_pci *vp)
{
	return mmio_read8(vp->common + COMMON_STATUS);
}

static void set_status(struct virtio_pci *vp, uint8_t bits)
{
	mmio_write8(vp->common + COMMON_STATUS, virtio_pci_status(vp) | bits);
}

int virtio_pci_reset(struct virtio_pci *vp)
{
	uint64_t deadline = deadline_after_us(RESET_TIMEOUT_US);

	mmio_write8(vp->common + COMMON_STATUS, 0);
	/* The device may take time to finish a reset; it reads back 0 when done. */
	while (virtio_pci_status(vp) != 0) {
		if (deadline_passed(deadline))
			return ETIMEDOUT;
		cpu_relax();
	}
	return 0;
}

int virtio_pci_negotiate(struct virtio_pci *vp, uint64_t wanted)
{
	uint64_t offered;

	/* No interrupts of any kind: INTx off at the PCI level, MSI-X never enabled. */
	pci_set_command_bits(vp->pci, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE, 0);

	set_status(vp, VIRTIO_STATUS_ACKNOWLEDGE);
	set_status(vp, VIRTIO_STATUS_DRIVER);

	mmio_write32(vp->common + COMMON_DFSELECT, 0);
	offered = mmio_read32(vp->common + COMMON_DF);
	mmio_write32(vp->common + COMMON_DFSELECT, 1);
	offered |= (uint64_t)mmio_read32(vp->common + COMMON_DF) << 32;
	vp->device_features = offered;

	if (!(offered & (1ull << VIRTIO_F_VERSION_1))) {
		set_status(vp, VIRTIO_STATUS_FAILED);
		return ENOTSUP;
	}
	/* ACCESS_PLATFORM only says DMA goes through the platform's translation; ours is the
	 * identity, so accepting it when offered is correct and refusing it would fail. */
	wanted |= (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_ACCESS_PLATFORM);
	vp->driver_features = offered & wanted;

	mmio_write32(vp->common + COMMON_GFSELECT, 0);
	mmio_write32(vp->common + COMMON_GF, (uint32_t)vp->driver_features);
	mmio_write32(vp->common + COMMON_GFSELECT, 1);
	mmio_write32(vp->common + COMMON_GF, (uint32_t)(vp->driver_features >> 32));

	set_status(vp, VIRTIO_STATUS_FEATURES_OK);
	if (!(virtio_pci_status(vp) & VIRTIO_STATUS_FEATURES_OK)) {
		set_status(vp, VIRTIO_STATUS_FAILED);
		return ENOTSUP;
	}

	mmio_write16(vp->common + COMMON_MSIX, VIRTIO_MSI_NO_VECTOR);
	return 0;
}

bool virtio_pci_has_feature(const struct virtio_pci *vp, unsigned bit)
{
	return vp->driver_features & (1ull << bit);
}

int virtio_pci_setup_queue(struct virtio_pci *vp, struct virtq *vq, uint16_t index,
			   struct virtq_memory *mem, uint16_t max_size)
{
	uint16_t size;

	if (index >= mmio_read16(vp->common + COMMON_NUMQ))
		return ENODEV;
	mmio_write16(vp->common + COMMON_Q_SELECT, index);
	size = mmio_read16(vp->common + COMMON_Q_SIZE);
	if (size == 0)
		return ENODEV;
	if (size > max_size)
		size = max_size;
	if (size > VIRTQ_MAX_SIZE)
		size = VIRTQ_MAX_SIZE;
	while (size & (size - 1))	/* split rings must be a power of two */
		size &= size - 1;

	memset(mem, 0, sizeof(*mem));
	/* We poll; tell the device not to bother interrupting (unless testfault=irq-on asks the
	 * dump path not to: then QEMU decides to notify, though no vector is ever assigned). */
	mem->avail.flags = testfault_irq_on_now ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT;

	vq->index = index;
	vq->size = size;
	vq->mem = mem;
	vq->avail_idx = 0;
	vq->last_used_idx = 0;

	mmio_write16(vp->common + COMMON_Q_SIZE, size);
	mmio_write16(vp->common + COMMON_Q_MSIX, VIRTIO_MSI_NO_VECTOR);
	mmio_write64_split(vp->common + COMMON_Q_DESC, (uintptr_t)mem->desc);
	mmio_write64_split(vp->common + COMMON_Q_AVAIL, (uintptr_t)&mem->avail);
	mmio_write64_split(vp->common + COMMON_Q_USED, (uintptr_t)&mem->used);
	vq->notify_addr = vp->notify_base +
			  (uintptr_t)mmio_read16(vp->common + COMMON_Q_NOFF) * vp->notify_off_multiplier;
	mb();
	mmio_write16(vp->common + COMMON_Q_ENABLE, 1);
	return 0;
}

void virtio_pci_driver_ok(struct virtio_pci *vp)
{
	mb();
	set_status(vp, VIRTIO_STATUS_DRIVER_OK);
}

void virtio_pci_notify(const struct virtio_pci *vp, const struct virtq *vq)
{
	/* The ring updates (the avail index published) must be visible before the device's flag is
	 * read and before the doorbell: a full barrier (spec 2.7.7.2), else the device might set
	 * the flag's opposite after our read and never look at the new entry. */
	mb();
	/* The device says it needs no kick (it will look at the ring anyway: QEMU while it is
	 * taking buffers): each doorbell write is a VM exit, so leave it out. */
	if (READ_ONCE(vq->mem->used.flags) & VIRTQ_USED_F_NO_NOTIFY)
		return;
	mmio_write16(vq->notify_addr, vq->index);
}

uint32_t virtio_pci_cfg_read32(const struct virtio_pci *vp, uint32_t off)
{
	uint8_t gen;
	uint32_t v;

	int tries = 100;	/* bounded: a device that never settles gets its last value */

	do {
		gen = mmio_read8(vp->common + COMMON_CFGGENERATION);
		v = mmio_read32(vp->device_cfg + off);
	} while (gen != mmio_read8(vp->common + COMMON_CFGGENERATION) && --tries);
	return v;
}

uint64_t virtio_pci_cfg_read64(const struct virtio_pci *vp, uint32_t off)
{
	uint8_t gen;
	uint64_t v;

	int tries = 100;	/* bounded: a device that never settles gets its last value */

	do {
		gen = mmio_read8(vp->common + COMMON_CFGGENERATION);
		v = mmio_read64_split(vp->device_cfg + off);
	} while (gen != mmio_read8(vp->common + COMMON_CFGGENERATION) && --tries);
	return v;
}

/* ---- split virtqueue operations ------------------------------------------------------------ */

void virtq_chain_begin(struct virtq_chain *c, struct virtq *vq, uint16_t head, uint16_t max)
{
	c->vq = vq;
	c->head = head;
	c->n = 0;
	c->max = max;
}

bool virtq_chain_add(struct virtq_chain *c, uint64_t addr, uint32_t len, bool device_writes)
{
	uint16_t d;

	if (c->n == c->max)
		return false;
	d = (uint16_t)(c->head + c->n++);
	/* Chained to the next one for now; virtq_chain_submit ends the chain at the last. */
	c->vq->mem->desc[d] = (struct virtq_desc){ addr, len,
		(uint16_t)(VIRTQ_DESC_F_NEXT | (device_writes ? VIRTQ_DESC_F_WRITE : 0)), (uint16_t)(d + 1) };
	return true;
}

void virtq_chain_publish(struct virtq_chain *c)
{
	struct virtq *vq = c->vq;
	struct virtq_desc *last = &vq->mem->desc[c->head + c->n - 1];

	last->flags &= (uint16_t)~VIRTQ_DESC_F_NEXT;
	last->next = 0;
	vq->mem->avail.ring[vq->avail_idx & (vq->size - 1)] = c->head;
	wmb();	/* descriptors and ring entry before the index that publishes them */
	vq->avail_idx++;
	WRITE_ONCE(vq->mem->avail.idx, vq->avail_idx);
}

void virtq_chain_submit(const struct virtio_pci *vp, struct virtq_chain *c)
{
	virtq_chain_publish(c);
	virtio_pci_notify(vp, c->vq);
}

bool virtq_next_used_len(struct virtq *vq, uint32_t *id, uint32_t *len)
{
	const struct virtq_used_elem *e;

	if (vq->last_used_idx == READ_ONCE(vq->mem->used.idx))
		return false;
	rmb();	/* the element is read after the index that published it */
	e = &vq->mem->used.ring[vq->last_used_idx & (vq->size - 1)];
	*id = e->id;
	*len = e->len;
	vq->last_used_idx++;
	return true;
}

bool virtq_next_used(struct virtq *vq, uint32_t *id)
{
	uint32_t len;

	return virtq_next_used_len(vq, id, &len);
}

int virtq_poll_used(const struct virtio_pci *vp, uint64_t deadline, bool (*back)(void *arg), void *arg)
{
	unsigned long polls = 0;

	for (;;) {
		if (back(arg))
			return 0;
		if (deadline_passed(deadline))
			return ETIMEDOUT;
		if ((++polls & 0xffff) == 0 &&
		    (virtio_pci_status(vp) & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)))
			return EIO;
		cpu_relax();
	}
}
