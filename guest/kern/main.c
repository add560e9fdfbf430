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
#include "dump/components.h"
#include "dump/dumpdisk.h"
#include "dump/dumpnic.h"
#include "dump/dumpsys.h"
#include "dump/netdump.h"
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
#include "kern/pinpool.h"
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
	const struct dumpdev_addr *addr;
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

/* The attach of sp's device (a disk, a NIC at `where`) came back with err: a boot error unless 0. */
static void check_attach(const struct dumpdev_spec *sp, int err, const char *where)
{
	if (err == ENODEV) {
		printf("%s=%s: no such device%s%s\n", sp->key, sp->addr->value, where[0] ? " at " : "", where);
		dump_setup_error(sp->not_found);
	}
	if (err) {
		printf("%s=%s: %s failed to start: %s\n", sp->key, sp->addr->value, where, errno_name(err));
		dump_setup_error(sp->init_failed);
	}
}

/* sp's device, set up, becomes the dump device of sp's role (DUMPINIT): a boot error if not. */
static void configure_dump_device(struct dumpdev_spec *sp)
{
	const char *why;
	int err = dumpsys_configure(&sp->dev, sp->role, &why);

	if (err) {
		printf("%s=%s: %s: %s\n", sp->key, sp->addr->value, why, errno_name(err));
		dump_setup_error(why);
	}
}

/* The disk is up: find the dump partition and make it the dump device of sp's role. */
static void configure_dump_partition(struct dumpdev_spec *sp, const struct dump_disk *disk)
{
	struct dumpdev *dev = &sp->dev;
	struct gpt_disk gdisk = { .ctx = disk->softc, .read = disk->read, .block_size = disk->block_size,
				  .nblocks = disk->nblocks };
	struct gpt_partition part;
	const char *why;
	char guid[37];
	int err;

	err = gpt_find_partition(&gdisk, gpt_dumpbed_dump_type, &part, &why);
	if (err) {
		gpt_guid_to_text(gpt_dumpbed_dump_type, guid);
		printf("%s=%s: no usable dump partition (type %s): %s (%s)\n", sp->key, sp->addr->value,
		       guid, why, errno_name(err));
		dump_setup_error(why);
	}

	strlcpy(dev->name, sp->addr->value, sizeof(dev->name));
	dev->dddump = disk->dddump;
	dev->softc = disk->softc;
	dev->block_size = disk->block_size;
	dev->part_lba = part.first_lba;
	dev->part_blocks = part.last_lba - part.first_lba + 1;
	dev->part_bytes = dev->part_blocks * disk->block_size;
	dev->print_info = disk->print_info;
	dev->read = disk->read;
	dev->runtime_io = disk->runtime_io;
	dev->disk_blocks = disk->nblocks;
	configure_dump_device(sp);
	printf("%s dump device %s: partition %u '%s', blocks %llu-%llu of %u bytes\n",
	       sp->role == DUMP_ROLE_PRIMARY ? "primary" : "secondary", dev->name, part.index,
	       part.name, (unsigned long long)part.first_lba, (unsigned long long)part.last_lba,
	       disk->block_size);
}

/*
 * A network dump (docs/netdump-protocol.md): the NIC driver named by the word attaches its
 * device, netdump drives it. No GPT: DUMPINIT asks the dump server for the partition (QUERY),
 * so part_lba is 0 and part_blocks the server's.
 */
static void setup_net_dump_device(struct dumpdev_spec *sp)
{
	const struct dumpdev_addr *a = sp->addr;
	struct dump_nic nic = { .where = "" };
	struct dumpdev *dev = &sp->dev;
	int err;

	err = dump_nic_driver_find(a->value, a->word_len)->attach(a->index, boot_config.net.mtu,
								  boot_config.iotimeout_ms, &nic);
	check_attach(sp, err, nic.where);
	strlcpy(dev->name, a->value, sizeof(dev->name));
	err = netdump_setup(dev, &nic, &boot_config.net, boot_config.iotimeout_ms, boot_config.dump_id);
	if (err) {
		printf("%s=%s: %s\n", sp->key, a->value, errno_name(err));
		dump_setup_error(sp->init_failed);
	}
	configure_dump_device(sp);
	printf("%s dump device %s (%s): network dump, partition of %llu blocks of %u bytes on the server\n",
	       sp->role == DUMP_ROLE_PRIMARY ? "primary" : "secondary", dev->name, nic.where,
	       (unsigned long long)dev->part_blocks, dev->block_size);
}

/* The same discovery for either role and any disk kind: the driver named by the word attaches
 * its disk (a dump disk driver's, or sd's on a SCSI HBA driver's adapter); a NIC's word makes
 * it a network dump. */
static void setup_dump_device(struct dumpdev_spec *sp)
{
	const struct dumpdev_addr *a = sp->addr;
	struct dump_disk disk = { .where = "" };
	int err;

	if (a->on_nic) {
		setup_net_dump_device(sp);
		return;
	}
	if (a->on_hba)
		err = sd_dump_attach(a->value, a->word_len, a->index, a->target, a->lun,
				     boot_config.iotimeout_ms, &disk);
	else
		err = dump_disk_driver_find(a->value, a->word_len)->attach(a->index, boot_config.iotimeout_ms,
									   &disk);
	check_attach(sp, err, disk.where);
	configure_dump_partition(sp, &disk);
}

static bool same_disk(const struct dumpdev_addr *a, const struct dumpdev_addr *b)
{
	/* the same word: the same driver, so on_nic and on_hba agree too */
	return a->word_len == b->word_len && strncmp(a->value, b->value, a->word_len) == 0 &&
	       a->index == b->index && (!a->on_hba || (a->target == b->target && a->lun == b->lun));
}

/* dumpdev= (primary) and dumpdev2= (secondary: where the dump restarts). */
static void setup_dump_devices(void)
{
	struct dumpdev_spec *p = &dump_specs[0], *s = &dump_specs[1];

	*p = (struct dumpdev_spec){
		.key = "dumpdev", .addr = &boot_config.dumpdev, .role = DUMP_ROLE_PRIMARY,
		.not_found = "dumpdev-not-found", .init_failed = "dumpdev-init-failed",
	};
	*s = (struct dumpdev_spec){
		.key = "dumpdev2", .addr = &boot_config.dumpdev2, .role = DUMP_ROLE_SECONDARY,
		.not_found = "dumpdev2-not-found", .init_failed = "dumpdev2-init-failed",
	};

	if (!boot_config.dumpdev_set) {
		if (boot_config.dumpdev2_set)
			printf("dumpdev2= without dumpdev=: ignored\n");
		printf("no dumpdev= on the command line: a crash will only be reported\n");
		return;
	}
	if (boot_config.dumpdev2_set && same_disk(s->addr, p->addr)) {
		printf("dumpdev2=%s names the same disk as dumpdev=%s\n", s->addr->value, p->addr->value);
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
	printf_unprivileged(true);	/* until READY: see there */
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
	if (pinpool_init(boot_config.pinpool_bytes))
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

	/* From here on interrupt handlers may print (workload=on): formatting in ring 3 is for the
	 * boot only. */
	printf_unprivileged(false);

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
