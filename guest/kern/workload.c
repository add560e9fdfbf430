/*
 * Runtime workload glue (see kern/workload.h): route the virtio-scsi request queue's MSI-X
 * message to IRQ_VECTOR_DEVICE, find the data partition, start sd's workload.
 *
 * At a crash the NMI handler runs with IF = 0 and never returns; the first thing it does
 * (crash_mute_devices, before anything slow) is to tell the request queue not to interrupt, so
 * a command that completes between the crash and DUMPSTART raises nothing. DUMPSTART then
 * quiesces the HBA (device reset, MSI-X off, fresh queues) and sd drops, never requeues,
 * anything that was in flight.
 */
#include "kern/workload.h"
#include "arch/x86/tsc.h"
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

/* 0fc63daf-8483-4772-8e79-3d69d8477de4 (Linux filesystem data), GPT byte order. */
static const uint8_t linux_data_type[16] = {
	0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47,
	0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4,
};

static struct sd_unit *wl_unit;
static struct scsi_hba *wl_hba;
static bool routed;

static void device_interrupt(void *arg)
{
	virtio_scsi_intr(arg);
}

static void mute_at_crash(void)
{
	if (wl_hba)
		virtio_scsi_mute(wl_hba);
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
	if (strcmp(hba->tran->tran_name, VIRTIO_SCSI_TRAN_NAME) != 0) {
		*why = "interrupt-driven I/O is only implemented for virtio-scsi";
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
		err = irq_init();
		if (!err) {
			irq_set_device_handler(device_interrupt, hba);
			err = virtio_scsi_enable_interrupts(hba, IRQ_VECTOR_DEVICE);
		}
		if (err) {
			*why = "cannot route the HBA's MSI-X message";
			return err;
		}
		wl_hba = hba;
		crash_set_mute_hook(mute_at_crash);
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
