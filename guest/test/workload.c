/*
 * Runtime workload glue (see test/workload.h): route the HBA's interrupt to IRQ_VECTOR_DEVICE
 * (virtio-scsi: the request queue's MSI-X message; LSI 53C895A: its PCI INTx line through the
 * PIIX3's PIRQ routing to an ISA IRQ and the I/O APIC pin of that number, level-triggered;
 * the 8259s stay masked), find the data partition, start sd's workload.
 *
 * At a crash the NMI handler runs with IF = 0 and never returns; the first thing it does
 * (the mute hook, before anything slow) is to silence the HBA: virtio-scsi's request queue is
 * told not to interrupt; the LSI chip's interrupt enables go off (its line drops) and its
 * I/O APIC pin is masked. So a command that completes between the crash and DUMPSTART raises
 * nothing. DUMPSTART then quiesces the HBA and sd drops, never requeues, anything that was in
 * flight.
 */
#include "test/workload.h"
#include "arch/x86/ioapic.h"
#include "arch/x86/tsc.h"
#include "drivers/lsi53c895a.h"
#include "drivers/virtio_scsi.h"
#include "dump/dumpsys.h"
#include "dump/gpt.h"
#include "kern/crash.h"
#include "kern/irq.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "scsi/sd.h"

#define WORKLOAD_REGION_BYTES	(1u << 20)	/* the data partition's first MiB: always allocated,
						 * even on the harness's sparse multi-TiB disks */
#define STOP_WAIT_MS		2000
#define LSI_FALLBACK_IRQ	11	/* when the firmware left the PIRQ unrouted (qboot) */

/* 0fc63daf-8483-4772-8e79-3d69d8477de4 (Linux filesystem data), GPT byte order. */
static const uint8_t linux_data_type[16] = {
	0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47,
	0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4,
};

static struct sd_unit *wl_unit;
static struct scsi_hba *wl_hba;
static bool wl_lsi;		/* the HBA is an LSI 53C895A (else virtio-scsi) */
static int wl_pin = -1;		/* its I/O APIC pin */
static bool routed;

static void device_interrupt(void *arg)
{
	if (wl_lsi)
		(void)lsi53c895a_intr(arg);
	else
		virtio_scsi_intr(arg);
}

static void mute_at_crash(void)
{
	if (!wl_hba)
		return;
	if (wl_lsi) {
		lsi53c895a_mute(wl_hba);
		if (wl_pin >= 0)
			ioapic_mask(wl_pin);
	} else {
		virtio_scsi_mute(wl_hba);
	}
}

/* The LSI HBA's INTx: PIRQ -> ISA IRQ -> I/O APIC pin, level, masked until the chip is set. */
static int route_lsi(struct scsi_hba *hba, const char **why)
{
	int irq = pci_intx_to_isa_irq(lsi53c895a_pci(hba), LSI_FALLBACK_IRQ);

	if (irq < 0) {
		*why = "cannot route the HBA's INTx (no interrupt pin or no PIIX3)";
		return ENODEV;
	}
	if (!ioapic_route_level(irq, IRQ_VECTOR_DEVICE)) {
		*why = "no I/O APIC pin for the HBA's IRQ";
		return ENODEV;
	}
	wl_pin = irq;
	crash_set_mute_hook(mute_at_crash);	/* before anything can interrupt */
	if (lsi53c895a_enable_interrupts(hba)) {
		*why = "the HBA refused to enable interrupts";
		return EIO;
	}
	ioapic_unmask(irq);
	printf("workload: %s INTx on ISA IRQ %d, I/O APIC pin %d, vector %#x (level)\n", hba->name,
	       irq, irq, IRQ_VECTOR_DEVICE);
	return 0;
}

static int gpt_read(void *ctx, uint64_t lba, void *buf, uint32_t nblocks)
{
	return sd_read(ctx, lba, buf, nblocks);
}

int workload_start(const char **why)
{
	struct sd_unit *un;
	struct scsi_hba *hba;
	struct gpt_disk disk;
	struct gpt_partition part;
	uint64_t blocks;
	const char *gpt_why;
	int err;

	if (!dump_device || dump_device->dddump != sd_dddump) {
		*why = "the dump device is not a SCSI disk";
		return ENODEV;
	}
	un = dump_device->softc;
	hba = sd_hba(un);
	if (strcmp(hba->tran->tran_name, VIRTIO_SCSI_TRAN_NAME) != 0 &&
	    strcmp(hba->tran->tran_name, LSI_TRAN_NAME) != 0) {
		*why = "interrupt-driven I/O is only implemented for virtio-scsi and lsi53c895a";
		return ENOTSUP;
	}
	if (sd_workload_running(un))
		return 0;
	if (sd_workload_in_flight(un)) {
		*why = "the last workload is still draining";
		return EBUSY;
	}

	/* The region: the data partition's first MiB (never the dump partition: sd checks). */
	disk.ctx = un;
	disk.read = gpt_read;
	disk.block_size = sd_block_size(un);
	disk.nblocks = sd_capacity_blocks(un);
	err = gpt_find_partition(&disk, linux_data_type, &part, &gpt_why);
	if (err) {
		*why = gpt_why;
		return err;
	}
	blocks = part.last_lba - part.first_lba + 1;
	if (blocks > WORKLOAD_REGION_BYTES / disk.block_size)
		blocks = WORKLOAD_REGION_BYTES / disk.block_size;

	if (!routed) {
		wl_lsi = strcmp(hba->tran->tran_name, LSI_TRAN_NAME) == 0;
		wl_hba = hba;
		err = irq_init();
		if (err) {
			*why = "no local APIC for the device vector";
			return err;
		}
		irq_set_device_handler(device_interrupt, hba);
		if (wl_lsi) {
			err = route_lsi(hba, why);
			if (err)
				return err;
		} else {
			err = virtio_scsi_enable_interrupts(hba, IRQ_VECTOR_DEVICE);
			if (err) {
				*why = "cannot route the HBA's MSI-X message";
				return err;
			}
			crash_set_mute_hook(mute_at_crash);
		}
		routed = true;
	}
	wl_unit = un;
	err = sd_workload_start(un, part.first_lba, blocks);
	if (err)
		*why = "sd refused the region";
	return err;
}

void workload_stop(void)
{
	uint64_t deadline;

	if (!wl_unit)
		return;
	sd_workload_stop(wl_unit);
	/* What is in flight completes through the interrupt handler: let it in. */
	deadline = deadline_after_ms(STOP_WAIT_MS);
	irq_on();
	while (sd_workload_in_flight(wl_unit) && !deadline_passed(deadline))
		cpu_relax();
	irq_off();
}

bool workload_running(void)
{
	return wl_unit && sd_workload_running(wl_unit);
}

void workload_idle(void)
{
	if (wl_unit)
		sd_workload_kick(wl_unit);
}
