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
#include "dump/ras.h"
#include "dump/gpt.h"
#include "kern/cmdline.h"
#include "kern/crash.h"
#include "kern/exit.h"
#include "test/fill.h"
#include "test/fpu_pattern.h"
#include "kern/memmap.h"
#include "kern/multiboot.h"
#include "kern/result.h"
#include "test/samples.h"
#include "kern/shell.h"
#include "test/workload.h"
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

/* A dump device as the command line names it (dumpdev= or dumpdev2=), and its storage. */
struct dumpdev_spec {
	const char *key;		/* "dumpdev" / "dumpdev2" */
	const char *value;		/* e.g. "virtio-blk:1" */
	enum dumpdev_kind kind;
	int index, target, lun;
	uint32_t role;			/* DUMP_ROLE_* */
	const char *not_found;		/* boot error words */
	const char *init_failed;
	struct dumpdev dev;
};

static struct dumpdev_spec dump_specs[2];

/* A boot error once a dump device may be configured: the devices stop being dump targets
 * (DUMPTERM releases what DUMPINIT pinned) before the guest goes away. */
static void __attribute__((noreturn)) dump_setup_error(const char *why)
{
	dumpsys_terminate_all();
	fatal_boot_error(why);
}

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

/* The disk is up: find the dump partition and make it the dump device of sp's role. */
static void configure_dump_partition(struct dumpdev_spec *sp, struct gpt_disk *disk,
				     dddump_fn dddump, void *softc,
				     void (*print_info)(const void *softc))
{
	struct dumpdev *dev = &sp->dev;
	struct gpt_partition part;
	const char *why;
	char guid[37];
	int err;

	err = gpt_find_partition(disk, gpt_dumpbed_dump_type, &part, &why);
	if (err) {
		gpt_guid_to_text(gpt_dumpbed_dump_type, guid);
		printf("%s=%s: no usable dump partition (type %s): %s (%s)\n", sp->key, sp->value,
		       guid, why, errno_name(err));
		dump_setup_error(why);
	}

	strlcpy(dev->name, sp->value, sizeof(dev->name));
	dev->dddump = dddump;
	dev->softc = softc;
	dev->block_size = disk->block_size;
	dev->part_lba = part.first_lba;
	dev->part_blocks = part.last_lba - part.first_lba + 1;
	dev->part_bytes = dev->part_blocks * disk->block_size;
	dev->print_info = print_info;

	err = dumpsys_configure(dev, sp->role, &why);
	if (err) {
		printf("%s=%s: %s: %s\n", sp->key, sp->value, why, errno_name(err));
		dump_setup_error(why);
	}
	printf("%s dump device %s: partition %u '%s', blocks %llu-%llu of %u bytes\n",
	       sp->role == DUMP_ROLE_PRIMARY ? "primary" : "secondary", dev->name, part.index,
	       part.name, (unsigned long long)part.first_lba, (unsigned long long)part.last_lba,
	       disk->block_size);
}

static void setup_virtio_blk_dump_device(struct dumpdev_spec *sp)
{
	static const uint16_t ids[] = { VIRTIO_BLK_PCI_DEVICE_MODERN, VIRTIO_BLK_PCI_DEVICE_TRANSITIONAL };
	struct pci_dev *pci = pci_find(VIRTIO_PCI_VENDOR, ids, 2, sp->index);
	struct virtio_blk *vblk;
	struct gpt_disk disk;
	int err;

	if (!pci) {
		printf("%s=%s: no such virtio-blk function\n", sp->key, sp->value);
		dump_setup_error(sp->not_found);
	}
	err = virtio_blk_attach(pci, boot_config.iotimeout_ms, &vblk);
	if (err) {
		printf("%s=%s: virtio-blk at %02x:%02x.%x failed to start: %s\n", sp->key, sp->value,
		       pci->bus, pci->dev, pci->fn, errno_name(err));
		dump_setup_error(sp->init_failed);
	}

	disk.ctx = vblk;
	disk.read = vblk_read_blocks;
	disk.block_size = virtio_blk_block_size(vblk);
	disk.nblocks = virtio_blk_capacity_blocks(vblk);
	configure_dump_partition(sp, &disk, virtio_blk_dddump, vblk, virtio_blk_print_info);
}

/* A SCSI disk: the N-th HBA of that driver, target T, LUN L, driven by sd. */
static void setup_scsi_dump_device(struct dumpdev_spec *sp)
{
	const char *driver = sp->kind == DUMPDEV_LSI ? "lsi53c895a" : VIRTIO_SCSI_TRAN_NAME;
	struct scsi_hba *hba;
	struct sd_unit *un;
	struct gpt_disk disk;
	int err;

	scsi_hba_probe_all();
	hba = scsi_hba_find(driver, sp->index);
	if (!hba) {
		printf("%s=%s: no %s HBA number %d (%d HBAs registered)\n", sp->key, sp->value,
		       driver, sp->index, scsi_hba_count());
		dump_setup_error(sp->not_found);
	}
	err = sd_attach(hba, (uint16_t)sp->target, (uint16_t)sp->lun, boot_config.iotimeout_ms, &un);
	if (err) {
		printf("%s=%s: no usable disk at %s target %d LUN %d: %s\n", sp->key, sp->value,
		       hba->name ? hba->name : driver, sp->target, sp->lun, errno_name(err));
		dump_setup_error(err == ENODEV ? sp->not_found : sp->init_failed);
	}

	disk.ctx = un;
	disk.read = sd_read_blocks;
	disk.block_size = sd_block_size(un);
	disk.nblocks = sd_capacity_blocks(un);
	configure_dump_partition(sp, &disk, sd_dddump, un, sd_print_info);
}

/* The same discovery for either role: any disk kind. */
static void setup_dump_device(struct dumpdev_spec *sp)
{
	if (sp->kind == DUMPDEV_VIRTIO_BLK)
		setup_virtio_blk_dump_device(sp);
	else
		setup_scsi_dump_device(sp);
}

/* dumpdev= (primary) and dumpdev2= (secondary: where the dump restarts). */
static void setup_dump_devices(void)
{
	struct dumpdev_spec *p = &dump_specs[0], *s = &dump_specs[1];

	*p = (struct dumpdev_spec){
		.key = "dumpdev", .value = boot_config.dumpdev, .kind = boot_config.dumpdev_kind,
		.index = boot_config.dumpdev_index, .target = boot_config.dumpdev_target,
		.lun = boot_config.dumpdev_lun, .role = DUMP_ROLE_PRIMARY,
		.not_found = "dumpdev-not-found", .init_failed = "dumpdev-init-failed",
	};
	*s = (struct dumpdev_spec){
		.key = "dumpdev2", .value = boot_config.dumpdev2, .kind = boot_config.dumpdev2_kind,
		.index = boot_config.dumpdev2_index, .target = boot_config.dumpdev2_target,
		.lun = boot_config.dumpdev2_lun, .role = DUMP_ROLE_SECONDARY,
		.not_found = "dumpdev2-not-found", .init_failed = "dumpdev2-init-failed",
	};

	if (!boot_config.dumpdev_set) {
		if (boot_config.dumpdev2_set)
			printf("dumpdev2= without dumpdev=: ignored\n");
		printf("no dumpdev= on the command line: a crash will only be reported\n");
		return;
	}
	if (boot_config.dumpdev2_set && s->kind == p->kind && s->index == p->index &&
	    (s->kind == DUMPDEV_VIRTIO_BLK || (s->target == p->target && s->lun == p->lun))) {
		printf("dumpdev2=%s names the same disk as dumpdev=%s\n", s->value, p->value);
		fatal_boot_error("dumpdev2-same-disk");
	}
	setup_dump_device(p);
	if (boot_config.dumpdev2_set)
		setup_dump_device(s);
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

	setup_dump_devices();

	err = dump_components_register();
	if (err)
		dump_setup_error("dump-components");

	/* ---- sample components (test/samples.h), registered after the built-ins ---- */
	err = samples_register(boot_config.components);
	if (err) {
		printf("components=%s: %s\n", boot_config.components, errno_name(err));
		dump_setup_error(err == EINVAL ? "bad-components" : "components-failed");
	}
	/* dumplevel=: every RAS component gets RASCD_SDMP_LVL before a crash can happen. */
	ras_admin_level_all(boot_config.dump_level);

	shell_print_info();

	if (boot_config.fill) {
		uint64_t t0 = rdtsc(), bytes = fill_ram(boot_config.fill_seed);

		printf("fill: %llu bytes with seed %016llx in %llu ms\n", (unsigned long long)bytes,
		       (unsigned long long)boot_config.fill_seed,
		       (unsigned long long)(tsc_to_us(rdtsc() - t0) / 1000));
	}

	/* Last thing before READY but the workload: an x87/SSE state the crash record must hold. */
	fpu_pattern_load(boot_config.fill ? boot_config.fill_seed : 0);

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
		result_line("READY ram=%llu dumpdev=%s part_lba=%llu part_blocks=%llu block=%u max_transfer=%u"
			    " dumpdev2=%s level=%u",
			    (unsigned long long)memmap_usable_bytes(), dump_device->name,
			    (unsigned long long)dump_device->part_lba,
			    (unsigned long long)dump_device->part_blocks, dump_device->block_size,
			    dumpsys_query()->max_tsize, dump_device2 ? dump_device2->name : "none",
			    boot_config.dump_level);
	else
		result_line("READY ram=%llu dumpdev=none part_lba=0 part_blocks=0 block=0 max_transfer=0"
			    " dumpdev2=none level=%u",
			    (unsigned long long)memmap_usable_bytes(), boot_config.dump_level);
	printf("dumpbed guest ready\n");
	shell_run();
}
