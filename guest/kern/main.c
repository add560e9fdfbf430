/*
 * Boot: from the multiboot handover to READY and the console shell.
 *
 * Order matters in two places: the multiboot data is copied before anything writes RAM
 * outside the image (QEMU leaves it just past our end, where the fill pattern goes), and the
 * fill pattern is written last, right before READY, so nothing disturbs it afterwards.
 */
#include "arch/x86/apic.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/gdt.h"
#include "arch/x86/idt.h"
#include "arch/x86/paging.h"
#include "arch/x86/pic.h"
#include "arch/x86/tsc.h"
#include "arch/x86/usermode.h"
#include "bus/pci.h"
#include "drivers/virtio_blk.h"
#include "drivers/virtio_pci.h"
#include "drivers/virtio_scsi.h"
#include "dump/components.h"
#include "dump/dumpsys.h"
#include "dump/gpt.h"
#include "kern/cmdline.h"
#include "kern/crash.h"
#include "kern/exit.h"
#include "kern/fill.h"
#include "kern/memmap.h"
#include "kern/multiboot.h"
#include "kern/result.h"
#include "kern/shell.h"
#include "kern/workload.h"
#include "lib/crc.h"
#include "lib/errno.h"
#include "lib/pinpool.h"
#include "lib/printf.h"
#include "lib/serial.h"
#include "lib/string.h"
#include "scsi/scsi.h"
#include "scsi/sd.h"

#define GIB			(1ull << 30)
#define PCI_HOLE_MIN		0xe0000000ull	/* i440fx: RAM below 4 GiB never goes past this */
#define PCI_MMIO_END		0xfec00000ull	/* IOAPIC, HPET, LAPIC, BIOS above */
#define PAGE_2M			(2ull << 20)

void kernel_main(void);

static struct dumpdev dump_dev;

static int vblk_read_blocks(void *ctx, uint64_t lba, void *buf, uint32_t nblocks)
{
	return virtio_blk_read(ctx, lba, buf, nblocks);
}

static int sd_read_blocks(void *ctx, uint64_t lba, void *buf, uint32_t nblocks)
{
	return sd_read(ctx, lba, buf, nblocks);
}

static void setup_paging(void)
{
	uint64_t low_end = memmap_low_ram_end();
	uint64_t hole = (low_end + PAGE_2M - 1) & ~(PAGE_2M - 1);

	/* RAM above 4 GiB (big guests) is mapped now; the first 4 GiB already are. */
	for (int i = 0; i < memmap_count(); i++) {
		const struct mem_region *r = memmap_region(i);
		uint64_t start = r->base, end = r->base + r->len;

		if (r->type != MMAP_TYPE_USABLE || end <= 4 * GIB)
			continue;
		if (start < 4 * GIB)
			start = 4 * GIB;
		if (!paging_map_identity(start, end - start, false))
			printf("warning: RAM %#llx-%#llx could not be mapped\n", (unsigned long long)start,
			       (unsigned long long)end);
	}
	/* Device memory must not be cached: everything from the end of low RAM to 4 GiB. */
	if (hole < 4 * GIB)
		paging_set_uncached(hole, 4 * GIB - hole);
}

/* The disk is up: find the dump partition and make it the dump device. */
static void configure_dump_partition(struct gpt_disk *disk, dddump_fn dddump, void *softc,
				     void (*print_info)(const void *softc))
{
	struct gpt_partition part;
	const char *why;
	char guid[37];
	int err;

	err = gpt_find_partition(disk, gpt_dumpbed_dump_type, &part, &why);
	if (err) {
		gpt_guid_to_text(gpt_dumpbed_dump_type, guid);
		printf("dumpdev=%s: no usable dump partition (type %s): %s (%s)\n", boot_config.dumpdev,
		       guid, why, errno_name(err));
		fatal_boot_error(why);
	}

	strlcpy(dump_dev.name, boot_config.dumpdev, sizeof(dump_dev.name));
	dump_dev.dddump = dddump;
	dump_dev.softc = softc;
	dump_dev.block_size = disk->block_size;
	dump_dev.part_lba = part.first_lba;
	dump_dev.part_blocks = part.last_lba - part.first_lba + 1;
	dump_dev.part_bytes = dump_dev.part_blocks * disk->block_size;
	dump_dev.print_info = print_info;

	err = dumpsys_configure(&dump_dev, &why);
	if (err) {
		printf("dumpdev=%s: %s: %s\n", boot_config.dumpdev, why, errno_name(err));
		fatal_boot_error(why);
	}
	printf("dump device %s: partition %u '%s', blocks %llu-%llu of %u bytes\n", dump_dev.name,
	       part.index, part.name, (unsigned long long)part.first_lba,
	       (unsigned long long)part.last_lba, disk->block_size);
}

static void setup_virtio_blk_dump_device(void)
{
	static const uint16_t ids[] = { VIRTIO_BLK_PCI_DEVICE_MODERN, VIRTIO_BLK_PCI_DEVICE_TRANSITIONAL };
	struct pci_dev *pci = pci_find(VIRTIO_PCI_VENDOR, ids, 2, boot_config.dumpdev_index);
	struct virtio_blk *vblk;
	struct gpt_disk disk;
	int err;

	if (!pci) {
		printf("dumpdev=%s: no such virtio-blk function\n", boot_config.dumpdev);
		fatal_boot_error("dumpdev-not-found");
	}
	err = virtio_blk_attach(pci, boot_config.iotimeout_ms, &vblk);
	if (err) {
		printf("dumpdev=%s: virtio-blk at %02x:%02x.%x failed to start: %s\n", boot_config.dumpdev,
		       pci->bus, pci->dev, pci->fn, errno_name(err));
		fatal_boot_error("dumpdev-init-failed");
	}

	disk.ctx = vblk;
	disk.read = vblk_read_blocks;
	disk.block_size = virtio_blk_block_size(vblk);
	disk.nblocks = virtio_blk_capacity_blocks(vblk);
	configure_dump_partition(&disk, virtio_blk_dddump, vblk, virtio_blk_print_info);
}

/* A SCSI disk: the N-th HBA of that driver, target T, LUN L, driven by sd. */
static void setup_scsi_dump_device(void)
{
	const char *driver = boot_config.dumpdev_kind == DUMPDEV_LSI ? "lsi53c895a" : VIRTIO_SCSI_TRAN_NAME;
	struct scsi_hba *hba;
	struct sd_unit *un;
	struct gpt_disk disk;
	int err;

	scsi_hba_probe_all();
	hba = scsi_hba_find(driver, boot_config.dumpdev_index);
	if (!hba) {
		printf("dumpdev=%s: no %s HBA number %d (%d HBAs registered)\n", boot_config.dumpdev,
		       driver, boot_config.dumpdev_index, scsi_hba_count());
		fatal_boot_error("dumpdev-not-found");
	}
	err = sd_attach(hba, (uint16_t)boot_config.dumpdev_target, (uint16_t)boot_config.dumpdev_lun,
			boot_config.iotimeout_ms, &un);
	if (err) {
		printf("dumpdev=%s: no usable disk at %s target %d LUN %d: %s\n", boot_config.dumpdev,
		       hba->name ? hba->name : driver, boot_config.dumpdev_target, boot_config.dumpdev_lun,
		       errno_name(err));
		fatal_boot_error(err == ENODEV ? "dumpdev-not-found" : "dumpdev-init-failed");
	}

	disk.ctx = un;
	disk.read = sd_read_blocks;
	disk.block_size = sd_block_size(un);
	disk.nblocks = sd_capacity_blocks(un);
	configure_dump_partition(&disk, sd_dddump, un, sd_print_info);
}

static void setup_dump_device(void)
{
	if (boot_config.dumpdev_kind == DUMPDEV_VIRTIO_BLK)
		setup_virtio_blk_dump_device();
	else
		setup_scsi_dump_device();
}

void kernel_main(void)
{
	const char *why = "";
	uint64_t window;
	int err;

	/* Exceptions from here on are caught (and, before READY, reported as boot errors). */
	gdt_init();
	idt_init();
	usermode_init();
	if (!multiboot_copy(boot_multiboot_magic, boot_multiboot_info, &why))
		fatal_boot_error(why);
	cpu_init();
	pic_mask_all();
	tsc_calibrate();
	serial_init();

	printf("\ndumpbed guest: loaded at %#lx-%#lx, %s\n", (unsigned long)(uintptr_t)__kernel_start,
	       (unsigned long)(uintptr_t)__kernel_end,
	       boot_info.loader_name[0] ? boot_info.loader_name : "unknown loader");
	printf("command line: %s\n", boot_info.cmdline);
	if (!tsc_calibrated)
		printf("warning: PIT did not answer, TSC assumed %llu Hz\n", (unsigned long long)tsc_hz);

	crc32c_init();
	if (!crc32c_selftest())
		fatal_boot_error("crc32c-selftest-failed");
	if (!cmdline_parse(boot_info.cmdline, &why))
		fatal_boot_error(why);

	memmap_init();
	if (memmap_usable_bytes() == 0)
		fatal_boot_error("no-usable-ram");
	setup_paging();
	if (pinpool_init())
		fatal_boot_error("pinpool");
	apic_init();

	window = memmap_low_ram_end();
	window = (window + (256ull << 20) - 1) & ~((256ull << 20) - 1);
	if (window < PCI_HOLE_MIN)
		window = PCI_HOLE_MIN;
	pci_init(window, PCI_MMIO_END);

	if (boot_config.dumpdev_set)
		setup_dump_device();
	else
		printf("no dumpdev= on the command line: a crash will only be reported\n");

	err = dump_components_register();
	if (err)
		fatal_boot_error("dump-components");

	shell_print_info();

	if (boot_config.fill) {
		uint64_t t0 = rdtsc(), bytes = fill_ram(boot_config.fill_seed);

		printf("fill: %llu bytes with seed %016llx in %llu ms\n", (unsigned long long)bytes,
		       (unsigned long long)boot_config.fill_seed,
		       (unsigned long long)(tsc_to_us(rdtsc() - t0) / 1000));
	}

	if (boot_config.workload) {
		const char *wl_why = "";

		err = workload_start(&wl_why);
		if (err) {
			printf("workload=on: cannot start: %s (%s)\n", wl_why, errno_name(err));
			fatal_boot_error("workload-unavailable");
		}
		printf("workload: interrupt-driven I/O on the dump disk's data partition\n");
	}

	crash_dump_armed = true;
	if (dump_device)
		result_line("READY ram=%llu dumpdev=%s part_lba=%llu part_blocks=%llu block=%u max_transfer=%u",
			    (unsigned long long)memmap_usable_bytes(), dump_device->name,
			    (unsigned long long)dump_device->part_lba,
			    (unsigned long long)dump_device->part_blocks, dump_device->block_size,
			    dumpsys_query()->max_tsize);
	else
		result_line("READY ram=%llu dumpdev=none part_lba=0 part_blocks=0 block=0 max_transfer=0",
			    (unsigned long long)memmap_usable_bytes());
	printf("dumpbed guest ready\n");
	shell_run();
}
