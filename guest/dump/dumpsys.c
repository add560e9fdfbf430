/*
 * The system dump: configuration at boot, and the crash-time sequence
 * DUMPSTART, DUMPQUERY, collect the components, write the dump, DUMPEND, report, exit.
 */
#include "dump/dumpsys.h"
#include "arch/x86/tsc.h"
#include "dump/dumptable.h"
#include "dump/writer.h"
#include "kern/cmdline.h"
#include "kern/exit.h"
#include "kern/memmap.h"
#include "kern/result.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"

struct dumpdev *dump_device;
bool dump_testfault_irq_on;
static struct dmp_query query;
static struct dmp_collection collection;
static struct dump_layout plan;
static struct dumpio_stat stat;
static struct dump_result result;

int dumpsys_configure(struct dumpdev *dev, const char **why)
{
	int err;

	err = devdump_init(dev, &stat);
	if (err) {
		*why = "dumpinit-failed";
		return err;
	}
	err = devdump_query(dev, &query);
	if (!err && (query.min_tsize != dev->block_size || query.max_tsize < 4096 ||
		     query.max_tsize % query.min_tsize))
		err = EINVAL;
	if (err) {
		*why = "dumpquery-failed";
		devdump_term(dev);
		return err;
	}
	dump_device = dev;
	return 0;
}

const struct dmp_query *dumpsys_query(void)
{
	return &query;
}

static void __attribute__((noreturn)) report_failure(int err, const char *stage, uint64_t offset)
{
	result_line("DONE status=failed error=%d stage=%s offset=%llu", err, stage,
		    (unsigned long long)offset);
	guest_exit(EXIT_DUMP_FAILED);
}

void dump_system(const struct crash_record *cr)
{
	struct dumpdev *dev = dump_device;
	struct dump_params params;
	int err;

	if (!dev) {
		printf("no dump device configured: nothing written\n");
		guest_exit(EXIT_NO_DUMP_DEVICE);
	}
	/* testfault=irq-on: the rings DUMPSTART builds ask for interrupts. */
	dump_testfault_irq_on = boot_config.testfault_irq_on;
	printf("dump: to %s, partition at block %llu, %llu blocks of %u bytes\n", dev->name,
	       (unsigned long long)dev->part_lba, (unsigned long long)dev->part_blocks,
	       dev->block_size);

	err = devdump_start(dev, &stat);
	if (err) {
		printf("dump: DUMPSTART failed: %s (device status 0x%x)\n", errno_name(err),
		       stat.device_status);
		report_failure(err, "start", 0);
	}
	if (dump_testfault_irq_on) {
		/* Deliberately wrong (a test of the host's no-interrupts oracle): the rest of the
		 * dump runs with IF = 1. The PICs stay masked and the workload's interrupt source
		 * was quiesced by DUMPSTART, so nothing is expected to arrive. */
		printf("dump: testfault=irq-on: interrupts enabled for the dump\n");
		__asm__ __volatile__("sti" ::: "memory");
	}
	err = devdump_query(dev, &query);
	if (err)
		report_failure(err, "query", 0);

	dmp_collect(&collection);

	memset(&params, 0, sizeof(params));
	memcpy(params.dump_id, boot_config.dump_id, 16);
	params.generation = 1;
	params.ram_bytes = memmap_usable_bytes();
	params.tsc_hz = tsc_hz;

	err = dump_write(dev, &query, &collection, cr, &params, &result);
	/* Quiesce the device whatever happened; a failure here after success is a failure. */
	{
		int end_err = devdump_end(dev, &stat);

		if (!err && end_err) {
			err = end_err;
			result.error = end_err;
			result.stage = "end";
			result.offset = 0;
		}
	}
	dmp_done(&collection);

	if (err)
		report_failure(result.error, result.stage, result.offset);
	result_line("DONE status=complete bytes=%llu", (unsigned long long)result.extent_bytes);
	guest_exit(EXIT_DUMP_COMPLETE);
}

void dumpsys_print_config(void)
{
	struct dumpdev *dev = dump_device;
	int err;

	if (!dev) {
		printf("dump device: none (a crash only reports)\n");
		return;
	}
	printf("dump device: %s\n", dev->name);
	printf("  partition: first block %llu, %llu blocks of %u bytes (%llu bytes)\n",
	       (unsigned long long)dev->part_lba, (unsigned long long)dev->part_blocks, dev->block_size,
	       (unsigned long long)dev->part_bytes);
	printf("  transfers: min %u, max %u bytes; I/O timeout %u ms\n", query.min_tsize,
	       query.max_tsize, boot_config.iotimeout_ms);
	if (dev->print_info)
		dev->print_info(dev->softc);
	printf("  components:\n");
	dmp_collect(&collection);
	for (uint32_t i = 0; i < collection.ncomponents; i++) {
		const struct dmp_component *comp = &collection.components[i];
		uint64_t bytes = 0;

		for (uint32_t k = 0; k < comp->area_count; k++)
			bytes += collection.areas[comp->first_area + k].len;
		printf("    %-14.32s kind %u status %u, %u areas, %llu bytes\n", comp->name, comp->kind,
		       comp->status, comp->area_count, (unsigned long long)bytes);
		for (uint32_t k = 0; k < comp->area_count; k++) {
			const struct dmp_area *a = &collection.areas[comp->first_area + k];

			printf("      %-12.24s %#014llx  %12llu bytes%s\n", a->name,
			       (unsigned long long)a->phys, (unsigned long long)a->len,
			       a->flags & AREA_FLAG_VOLATILE ? "  volatile" : "");
		}
	}
	dmp_done(&collection);
	err = dump_layout_plan(&collection, dev->part_bytes, dev->block_size, &plan);
	printf("  layout: dir %u bytes, crc table %u bytes (chunk %u), body %llu bytes at %llu\n",
	       plan.dir_bytes, plan.crc_table_bytes, plan.chunk_size,
	       (unsigned long long)plan.body_bytes, (unsigned long long)plan.body_offset);
	printf("  extent %llu bytes, end marker at %llu, trailer at %llu: %s\n",
	       (unsigned long long)plan.extent_bytes, (unsigned long long)plan.end_offset,
	       (unsigned long long)plan.trailer_offset, err ? "DOES NOT FIT" : "fits");
}

void dumpsys_print_info(void)
{
	struct dumpdev *dev = dump_device;

	if (!dev) {
		printf("dump device: none\n");
		return;
	}
	printf("dump device: %s, partition blocks %llu-%llu (%u-byte blocks), max transfer %u\n",
	       dev->name, (unsigned long long)dev->part_lba,
	       (unsigned long long)(dev->part_lba + dev->part_blocks - 1), dev->block_size,
	       query.max_tsize);
	if (dev->print_info)
		dev->print_info(dev->softc);
}
