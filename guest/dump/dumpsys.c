/*
 * The system dump: configuration at boot, and the crash-time sequence.
 *
 *   DUMPSTART, DUMPQUERY (primary); pin_enforce_begin; dmp_begin(level)
 *   generation 1 on the primary: dump_writer_begin, dmp_collect(1, sink)
 *   a write to the primary failed and there is a secondary:
 *       FAILED headers to the primary (as far as it goes), DUMPEND primary, RESTART line,
 *       DUMPSTART, DUMPQUERY secondary, generation 2: dump_writer_begin, dmp_collect(2, sink)
 *   dmp_finish (DONE calls), the final writes (or the FAILED headers), DUMPEND,
 *   pin_enforce_end, DONE line, exit.
 *
 * Everything that touches a dump device from pin_enforce_begin on runs inside
 * pin_guarded_call(): a pinning violation in the writer, the facility or a driver fails the
 * dump on that device with EFAULT, stage "pinning" (the facility catches the routines' own).
 */
#include "dump/dumpsys.h"
#include "lib/testfault.h"
#include "arch/x86/pin.h"
#include "arch/x86/tsc.h"
#include "dump/facility.h"
#include "dump/prof.h"
#include "dump/writer.h"
#include "kern/cmdline.h"
#include "kern/exit.h"
#include "kern/memmap.h"
#include "kern/result.h"
#include "lib/dumpstate.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"

struct dump_target {
	struct dumpdev *dev;
	struct dmp_query query;
	uint32_t role;
	const char *role_name;
};

struct dumpdev *dump_device;
struct dumpdev *dump_device2;

/* The configuration: changed only by dumpsys_configure()/dumpsys_unconfigure(). */
static struct dump_target targets[2] = {
	{ .role = DUMP_ROLE_PRIMARY, .role_name = "primary" },
	{ .role = DUMP_ROLE_SECONDARY, .role_name = "secondary" },
};

/* Written by the crash-time sequence: dump path state (lib/dumpstate.h). */
static struct dumpio_stat stat __dumpstate;
static struct dump_result results[2] __dumpstate;	/* generation 1, generation 2 */
/* What DUMPQUERY answered after each device's DUMPSTART; targets[] keeps the configuration's. */
static struct dmp_query crash_query[2] __dumpstate;

static struct dmp_query *crash_query_of(const struct dump_target *t)
{
	return &crash_query[t - targets];
}

static struct dump_target *target_of(uint32_t role)
{
	return &targets[role == DUMP_ROLE_SECONDARY ? 1 : 0];
}

static void publish(void)
{
	dump_device = targets[0].dev;
	dump_device2 = targets[1].dev;
}

static int query_ok(const struct dumpdev *dev, const struct dmp_query *q)
{
	return q->min_tsize == dev->block_size && q->max_tsize >= 4096 &&
	       q->max_tsize % q->min_tsize == 0 && q->max_outstanding >= 1;
}

int dumpsys_configure(struct dumpdev *dev, uint32_t role, const char **why)
{
	struct dump_target *t = target_of(role);
	struct dmp_query q;
	int err;

	if (t->dev == dev)
		return 0;
	if (target_of(role == DUMP_ROLE_PRIMARY ? DUMP_ROLE_SECONDARY : DUMP_ROLE_PRIMARY)->dev == dev) {
		*why = "dumpdev-in-use";
		return EBUSY;
	}
	err = devdump_init(dev, &stat);
	if (err) {
		*why = "dumpinit-failed";
		return err;
	}
	err = devdump_query(dev, &q);
	if (!err && !query_ok(dev, &q))
		err = EINVAL;
	if (err) {
		*why = "dumpquery-failed";
		devdump_term(dev);	/* it never became a dump target: release DUMPINIT's pins */
		return err;
	}
	/* The old device stops being a dump target: DUMPTERM before anyone may close it. */
	if (t->dev)
		devdump_term(t->dev);
	t->dev = dev;
	t->query = q;
	publish();
	return 0;
}

void dumpsys_unconfigure(uint32_t role)
{
	struct dump_target *t = target_of(role);

	if (!t->dev)
		return;
	devdump_term(t->dev);
	t->dev = 0;
	memset(&t->query, 0, sizeof(t->query));
	publish();
}

void dumpsys_terminate_all(void)
{
	dumpsys_unconfigure(DUMP_ROLE_SECONDARY);
	dumpsys_unconfigure(DUMP_ROLE_PRIMARY);
}

const struct dmp_query *dumpsys_query(void)
{
	return &targets[0].query;
}

const struct dmp_query *dumpsys_query_role(uint32_t role)
{
	return &target_of(role)->query;
}

/* --- crash time -------------------------------------------------------------------------- */

static void record(struct dump_result *r, int err, const char *stage, uint64_t offset, bool device)
{
	if (r->error)
		return;
	r->error = err;
	r->stage = stage;
	r->offset = offset;
	r->device_error = device;
}

/* The offset DONE and RESTART report: the failure's (testfault=wrong-report, deliberately
 * wrong: a block past it). */
static uint64_t reported_offset(const struct dump_result *r, const struct dump_target *t)
{
	return r->offset + (testfault(TF_WRONG_REPORT) ? t->dev->block_size : 0);
}

static void __attribute__((noreturn)) report_failure(const struct dump_result *r,
						      const struct dump_target *t, uint32_t generation)
{
	prof_report();
	result_line("DONE status=failed error=%d stage=%s offset=%llu device=%s generation=%u",
		    r->error, r->stage, (unsigned long long)reported_offset(r, t), t->role_name, generation);
	guest_exit(EXIT_DUMP_FAILED);
}

/* DUMPSTART and DUMPQUERY; the failure is recorded in *r. */
static int start_device_timed(struct dump_target *t, struct dump_result *r);

static int start_device(struct dump_target *t, struct dump_result *r)
{
	uint64_t t0 = prof_begin();
	int err = start_device_timed(t, r);

	prof_end(PROF_DEVICE, t0);
	return err;
}

static int start_device_timed(struct dump_target *t, struct dump_result *r)
{
	int err;

	printf("dump: %s device %s, partition at block %llu, %llu blocks of %u bytes\n",
	       t->role_name, t->dev->name, (unsigned long long)t->dev->part_lba,
	       (unsigned long long)t->dev->part_blocks, t->dev->block_size);
	err = devdump_start(t->dev, &stat);
	if (err) {
		printf("dump: DUMPSTART failed on the %s device: %s (device status 0x%x)\n",
		       t->role_name, errno_name(err), stat.device_status);
		record(r, err, "start", 0, true);
		return err;
	}
	if (testfault_irq_on_now) {
		/* Deliberately wrong (a test of the host's no-interrupts oracle): the rest of the
		 * dump runs with IF = 1. The PICs stay masked and the workload's interrupt source
		 * was quiesced by DUMPSTART, so nothing is expected to arrive. */
		printf("dump: testfault=irq-on: interrupts enabled for the dump\n");
		__asm__ __volatile__("sti" ::: "memory");
	}
	err = devdump_query(t->dev, crash_query_of(t));
	if (!err && !query_ok(t->dev, crash_query_of(t)))
		err = EINVAL;
	/* The driver says the device holds nothing of the runtime any more: from here on, the host
	 * holds it to that (no runtime command may finish, no interrupt source may fire), and to
	 * the writes DUMPQUERY says it takes at once. */
	result_line("QUIESCED device=%s outstanding=%u", t->role_name,
		    err ? 1u : crash_query_of(t)->max_outstanding);
	if (err) {
		printf("dump: DUMPQUERY failed on the %s device: %s\n", t->role_name, errno_name(err));
		record(r, err, "query", 0, true);
	}
	return err;
}

/* The state the guarded steps share (pin_guarded_call passes three integers). */
static struct {
	const struct crash_record *cr;
	struct dump_target *t;
	struct dump_result *r;
	struct dump_params params;
	bool start;		/* DUMPSTART/DUMPQUERY first (the secondary) */
	bool writing;		/* the writer owns *r (dump_writer_begin was entered) */
} cx __dumpstate;

/* A whole generation on one device: [start,] header and step 1, the collection. */
static uint64_t generation_guarded(uint64_t a0, uint64_t a1, uint64_t a2)
{
	int err;

	if (cx.start && start_device(cx.t, cx.r))
		return 0;
	cx.writing = true;
	err = dump_writer_begin(cx.t->dev, crash_query_of(cx.t), cx.cr, &cx.params, cx.r);
	if (err)
		return 0;
	err = dmp_collect(cx.params.generation, dump_writer_sink());
	if (err)
		record(cx.r, err, "collect", 0, false);	/* (the sink's error is already there) */
	return 0;
}

static uint64_t finish_guarded(uint64_t a0, uint64_t a1, uint64_t a2)
{
	dump_writer_finish();
	return 0;
}

static uint64_t failed_guarded(uint64_t a0, uint64_t a1, uint64_t a2)
{
	dump_writer_write_failed();
	return 0;
}

static uint64_t dmp_finish_guarded(uint64_t a0, uint64_t a1, uint64_t a2)
{
	dmp_finish();
	return 0;
}

static uint64_t end_guarded(uint64_t dev, uint64_t a1, uint64_t a2)
{
	return (uint64_t)devdump_end((struct dumpdev *)(uintptr_t)dev, &stat);
}

/* fn under pin_guarded_call(); a violation fails the dump on the device (EFAULT, pinning). */
static uint64_t guarded(pin_guarded_fn fn, uint64_t a0, struct dump_result *r)
{
	bool violated = false;
	uint64_t rv = pin_guarded_call(fn, a0, 0, 0, &violated);

	if (violated) {
		printf("dump: pinning violation outside a component's routine: the device fails\n");
		record(r, EFAULT, "pinning", cx.writing ? dump_writer_current_offset() : 0, true);
		return (uint64_t)EFAULT;
	}
	return rv;
}

/* End the dump on the device: DUMPEND, whatever happened before. */
static int end_device(struct dump_target *t, struct dump_result *r)
{
	uint64_t t0 = prof_begin();
	int err = (int)guarded(end_guarded, (uintptr_t)t->dev, r);

	prof_end(PROF_DEVICE, t0);
	if (err)
		printf("dump: DUMPEND failed on the %s device: %s\n", t->role_name, errno_name(err));
	return err;
}

void dump_system(const struct crash_record *cr)
{
	struct dump_target *t = &targets[0];
	struct dump_result *r = &results[0];
	uint32_t generation = 1;
	bool enforcing;
	uint64_t t0 = rdtsc();
	int err;

	prof_start();
	if (!t->dev) {
		printf("no dump device configured: nothing written\n");
		guest_exit(EXIT_NO_DUMP_DEVICE);
	}
	/* testfault=irq-on: the rings DUMPSTART builds ask for interrupts. */
	testfault_irq_on_now = testfault(TF_IRQ_ON);
	memset(results, 0, sizeof(results));
	if (start_device(t, r))
		report_failure(r, t, generation);

	uint64_t tp = prof_begin();
	err = pin_enforce_begin();
	prof_end(PROF_PIN, tp);
	enforcing = err == 0;
	if (err)
		printf("dump: pinning not enforced (%s): the dump goes on without it\n", errno_name(err));
	dmp_begin(boot_config.dump_level);

	memset(&cx, 0, sizeof(cx));
	cx.cr = cr;
	memcpy(cx.params.dump_id, boot_config.dump_id, 16);
	cx.params.ram_bytes = memmap_usable_bytes();
	cx.params.tsc_hz = tsc_hz;
	cx.params.compression = boot_config.compression;	/* the secondary's too */

	/* Generation 1 on the primary. */
	cx.t = t;
	cx.r = r;
	cx.params.generation = 1;
	cx.params.device_role = DUMP_ROLE_PRIMARY;
	guarded(generation_guarded, 0, r);

	if (r->error && r->device_error && r->error != ENOSPC && targets[1].dev) {
		/* Restart on the secondary: what the primary got is left described as FAILED. */
		struct dump_result *r1 = r;

		guarded(failed_guarded, 0, r1);
		end_device(t, r1);
		result_line("RESTART from=%s to=%s error=%d stage=%s offset=%llu", t->role_name,
			    targets[1].role_name, r1->error, r1->stage, (unsigned long long)reported_offset(r1, t));

		t = &targets[1];
		r = &results[1];
		generation = 2;
		cx.t = t;
		cx.r = r;
		cx.start = true;
		cx.writing = false;
		cx.params.generation = 2;
		cx.params.device_role = DUMP_ROLE_SECONDARY;
		cx.params.restart_error = (uint32_t)r1->error;
		cx.params.restart_offset = r1->offset;
		guarded(generation_guarded, 0, r);
	}

	/* The DONE calls (recorded in the directory the final writes carry). */
	guarded(dmp_finish_guarded, 0, r);
	if (!r->error)
		guarded(finish_guarded, 0, r);
	if (r->error && cx.writing)
		guarded(failed_guarded, 0, r);	/* (not when the secondary never started) */
	/* Quiesce the device whatever happened; a failure here after success is a failure. */
	err = end_device(t, r);
	if (!r->error && err)
		record(r, err, "end", 0, true);
	if (enforcing) {
		uint64_t te = prof_begin();

		pin_enforce_end();
		prof_end(PROF_PIN, te);
	}

	if (r->error)
		report_failure(r, t, generation);
	printf("dump: done in %llu ms\n", (unsigned long long)(tsc_to_us(rdtsc() - t0) / 1000));
	prof_report();
	result_line("DONE status=complete bytes=%llu device=%s generation=%u",
		    (unsigned long long)r->extent_bytes, t->role_name, generation);
	guest_exit(EXIT_DUMP_COMPLETE);
}

/* --- console ---------------------------------------------------------------------------- */

static void print_estimate(const char *name, uint64_t bytes)
{
	printf("    %-31s %12llu bytes\n", name, (unsigned long long)bytes);
}

static void print_target(const struct dump_target *t)
{
	const struct dumpdev *dev = t->dev;
	struct dump_layout plan;
	int err;

	if (!dev) {
		printf("%s dump device: none\n", t->role_name);
		return;
	}
	printf("%s dump device: %s\n", t->role_name, dev->name);
	printf("  partition: first block %llu, %llu blocks of %u bytes (%llu bytes)\n",
	       (unsigned long long)dev->part_lba, (unsigned long long)dev->part_blocks, dev->block_size,
	       (unsigned long long)dev->part_bytes);
	printf("  transfers: min %u, max %u bytes; I/O timeout %u ms\n", t->query.min_tsize,
	       t->query.max_tsize, boot_config.iotimeout_ms);
	if (dev->print_info)
		dev->print_info(dev->softc);
	err = dump_layout_plan(dev->part_bytes, dev->block_size, &plan);
	if (err) {
		printf("  layout: the partition is too small for even an empty dump\n");
		return;
	}
	printf("  layout: dir %u bytes, crc table %u bytes (chunk %u), body at %llu, room %llu bytes,"
	       " trailer at %llu\n",
	       plan.dir_bytes, plan.crc_table_bytes, plan.chunk_size,
	       (unsigned long long)plan.body_offset, (unsigned long long)plan.body_room,
	       (unsigned long long)plan.trailer_offset);
}

void dumpsys_print_config(void)
{
	uint64_t total;

	print_target(&targets[0]);
	print_target(&targets[1]);
	printf("dump level %u; components (estimates at that level):\n", boot_config.dump_level);
	total = dmp_estimate_at(boot_config.dump_level, print_estimate);
	printf("    %-31s %12llu bytes\n", "total", (unsigned long long)total);
	for (int i = 0; i < 2; i++) {
		struct dump_layout plan;

		if (!targets[i].dev ||
		    dump_layout_plan(targets[i].dev->part_bytes, targets[i].dev->block_size, &plan))
			continue;
		/* Areas are padded to pages: the estimate is a lower bound of the body. */
		printf("  %s: %s\n", targets[i].role_name,
		       total <= plan.body_room ? "the estimate fits" : "DOES NOT FIT (the estimate)");
	}
}

void dumpsys_print_info(void)
{
	for (int i = 0; i < 2; i++) {
		const struct dump_target *t = &targets[i];
		const struct dumpdev *dev = t->dev;

		if (!dev) {
			printf("%s dump device: none\n", t->role_name);
			continue;
		}
		printf("%s dump device: %s, partition blocks %llu-%llu (%u-byte blocks), max transfer %u\n",
		       t->role_name, dev->name, (unsigned long long)dev->part_lba,
		       (unsigned long long)(dev->part_lba + dev->part_blocks - 1), dev->block_size,
		       t->query.max_tsize);
		if (dev->print_info)
			dev->print_info(dev->softc);
	}
}
