/*
 * The runtime workload (see test/workload.h), over the dump disk's interrupt-driven runtime
 * I/O (dump/dumpdev.h, struct dumpdev_runtime_io) and its polled reads (dumpdev.read, for the
 * GPT): nothing here knows which driver, bus or interrupt controller is underneath.
 *
 * Each of WL_SLOTS slots READs a WL_CHUNK_BYTES chunk of the region (the data partition's first
 * MiB) into its buffer, stamps every 512 bytes of it with a new request number (the first 16
 * bytes: "DBWL", u32 request number, u64 disk byte offset), WRITEs it back, then moves on to a
 * chunk no other slot holds. So the buffers (ordinary memory, outside the dump path's state)
 * and the region change with every request: a runtime READ that lands after the crash changes
 * memory the dump compares with the snapshot, and a runtime WRITE that lands after the dump
 * began shows in the device's write log (the canary oracle knows what the runtime wrote
 * before). Completions come from the disk's interrupt handler (runtime_io.intr, on
 * IRQ_VECTOR_DEVICE); a slot whose submit was refused (EBUSY: no free request slot, packet or
 * device slot) is restarted from the shell's idle loop (workload_idle).
 *
 * At a crash the NMI handler runs with IF = 0 and never returns; the first thing it does (the
 * mute hook, before anything slow) is runtime_io.intr_mute: the device stops interrupting. So
 * a request that completes between the crash and DUMPSTART raises nothing. DUMPSTART then
 * quiesces the device and the driver forgets whatever was in flight: its done is never called.
 * A completion that reached us after the crash anyway would be dropped, never requeued.
 */
#include "test/workload.h"
#include "kern/shell.h"
#include "arch/x86/cpu.h"
#include "arch/x86/tsc.h"
#include "dump/dumpdev.h"
#include "dump/dumpsys.h"
#include "dump/gpt.h"
#include "kern/crash.h"
#include "kern/irq.h"
#include "lib/dumpstate.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"

#define WL_SLOTS		3	/* requests in flight */
#define WL_CHUNK_BYTES		8192
#define WORKLOAD_REGION_BYTES	(1u << 20)	/* the data partition's first MiB: always allocated,
						 * even on the harness's sparse multi-TiB disks */
#define STOP_WAIT_MS		2000
#define GPT_HEADER_LBA		1

/* 0fc63daf-8483-4772-8e79-3d69d8477de4 (Linux filesystem data), GPT byte order. */
static const uint8_t linux_data_type[16] = {
	0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47,
	0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4,
};

struct wl_slot {
	uint64_t chunk;			/* chunk number within the region */
	bool writing;			/* the WRITE-back of what the READ brought */
	volatile bool busy;		/* submitted; its done not called yet */
	bool idle;			/* needs a (re)start from the idle loop */
};

struct workload {
	const struct dumpdev_runtime_io *io;	/* the disk's, once started */
	void *softc;
	uint32_t block_size;
	bool routed;			/* its interrupt is on IRQ_VECTOR_DEVICE */
	volatile bool running;
	volatile bool crashed;		/* the mute hook ran */
	uint64_t first, nblocks;	/* the region, disk blocks */
	uint32_t chunk_blocks;
	uint64_t nchunks, next_chunk;
	uint32_t stamp;			/* request number of the last write */
	struct wl_slot slot[WL_SLOTS];
	uint64_t reads, writes, errors, restarts, dropped, bytes;
};

/* The bookkeeping is the dump path's state (lib/dumpstate.h): the crash's mute hook writes it.
 * The buffers are not: the dump compares them with memory at the crash, so a runtime READ that
 * lands after the crash shows there. */
static struct workload wl __dumpstate;
static uint8_t wl_buf[WL_SLOTS][WL_CHUNK_BYTES] __attribute__((aligned(4096)));

static int in_flight(void)
{
	int n = 0;

	for (int i = 0; i < WL_SLOTS; i++)
		n += wl.slot[i].busy;
	return n;
}

static void device_interrupt(void *arg)
{
	wl.io->intr(wl.softc);
}

/* The crash handler's first act (IF = 0, NMI context): silence the device. */
static void mute_at_crash(void)
{
	wl.crashed = true;
	if (wl.io)
		wl.io->intr_mute(wl.softc);
}

/* A chunk no other slot is working on. */
static uint64_t pick_chunk(struct wl_slot *me)
{
	for (uint64_t tries = 0; tries < wl.nchunks; tries++) {
		uint64_t c = wl.next_chunk;
		bool taken = false;

		wl.next_chunk = (wl.next_chunk + 1) % wl.nchunks;
		for (int i = 0; i < WL_SLOTS; i++)
			if (&wl.slot[i] != me && !wl.slot[i].idle && wl.slot[i].chunk == c)
				taken = true;
		if (!taken)
			return c;
	}
	return me->chunk;
}

/* A new request number in every 512 bytes of the chunk about to be written. */
static void stamp(uint8_t *buf, uint64_t lba)
{
	uint64_t at = lba * wl.block_size;

	wl.stamp++;
	for (uint32_t off = 0; off < WL_CHUNK_BYTES; off += 512) {
		uint64_t *p = (uint64_t *)(buf + off);

		p[0] = 0x4c574244ull | (uint64_t)wl.stamp << 32;	/* "DBWL", request number */
		p[1] = at + off;
	}
}

static void wl_done(void *cookie, bool ok);

/* Start the slot's next request (IF = 0: from the handler, or the idle loop with it off). */
static void issue(struct wl_slot *s)
{
	uint8_t *buf = wl_buf[s - wl.slot];
	uint64_t lba = wl.first + s->chunk * wl.chunk_blocks;

	if (s->writing)
		stamp(buf, lba);
	s->busy = true;
	s->idle = false;
	if (wl.io->submit(wl.softc, s->writing, lba, wl.chunk_blocks, buf, wl_done, s)) {
		s->busy = false;
		s->idle = true;
	}
}

/* Completion, in interrupt context. */
static void wl_done(void *cookie, bool ok)
{
	struct wl_slot *s = cookie;

	s->busy = false;
	if (wl.crashed || !wl.running) {
		/* The dump owns the disk now (or the workload was stopped): never requeue. */
		wl.dropped++;
		s->idle = true;
		return;
	}
	if (!ok) {
		/* A failed READ must not be written back; start over on another chunk. */
		wl.errors++;
		s->writing = false;
		s->chunk = pick_chunk(s);
	} else if (!s->writing) {
		wl.reads++;
		s->writing = true;
	} else {
		wl.writes++;
		wl.bytes += WL_CHUNK_BYTES;
		s->writing = false;
		s->chunk = pick_chunk(s);
	}
	issue(s);
}

/* The disk's size as its GPT says: the primary header's alternate LBA is the disk's last block
 * (struct dumpdev carries no capacity; the driver checks every read against the real one). */
static int gpt_disk_blocks(const struct dumpdev *dev, uint64_t *nblocks, const char **why)
{
	uint8_t *hdr = wl_buf[0];	/* no request in flight yet */
	uint64_t alt;
	int err;

	err = dev->read(dev->softc, GPT_HEADER_LBA, hdr, 1);
	if (err) {
		*why = "cannot read the GPT header";
		return err;
	}
	memcpy(&alt, hdr + 32, sizeof(alt));
	if (memcmp(hdr, "EFI PART", 8) != 0 || alt <= GPT_HEADER_LBA) {
		*why = "no GPT on the dump disk";
		return EINVAL;
	}
	*nblocks = alt + 1;
	return 0;
}

/* The region: the first MiB of the data partition, in whole chunks, clear of the dump
 * partition. */
static int find_region(const struct dumpdev *dev, const char **why)
{
	struct gpt_disk disk;
	struct gpt_partition part;
	uint64_t first, blocks;
	int err;

	if (dev->block_size == 0 || dev->block_size > WL_CHUNK_BYTES || WL_CHUNK_BYTES % dev->block_size) {
		*why = "the dump disk's block size does not divide the workload's chunk";
		return ENOTSUP;
	}
	disk.ctx = dev->softc;
	disk.read = dev->read;
	disk.block_size = dev->block_size;
	err = gpt_disk_blocks(dev, &disk.nblocks, why);
	if (err)
		return err;
	err = gpt_find_partition(&disk, linux_data_type, &part, why);
	if (err)
		return err;
	first = part.first_lba;
	blocks = part.last_lba - part.first_lba + 1;
	if (blocks > WORKLOAD_REGION_BYTES / dev->block_size)
		blocks = WORKLOAD_REGION_BYTES / dev->block_size;
	if (first < dev->part_lba + dev->part_blocks && dev->part_lba < first + blocks) {
		*why = "the data partition overlaps the dump partition";
		return EINVAL;
	}
	wl.chunk_blocks = WL_CHUNK_BYTES / dev->block_size;
	if (blocks / wl.chunk_blocks < 2 * WL_SLOTS) {
		*why = "the data partition is too small for the workload";
		return ENOSPC;
	}
	wl.first = first;
	wl.nblocks = blocks;
	wl.nchunks = blocks / wl.chunk_blocks;
	wl.block_size = dev->block_size;
	return 0;
}

static bool workload_idle(void);
static void workload_print(void);

int workload_start(const char **why)
{
	const struct dumpdev *dev = dump_device;
	uint64_t flags;
	int err;

	if (!dev) {
		*why = "no dump device";
		return ENODEV;
	}
	if (!dev->runtime_io || !dev->read) {
		*why = "the dump disk's driver has no interrupt-driven runtime I/O";
		return ENOTSUP;
	}
	if (wl.running)
		return 0;
	if (in_flight()) {
		*why = "the last workload is still draining";
		return EBUSY;
	}
	err = find_region(dev, why);
	if (err)
		return err;

	if (!wl.routed) {
		err = irq_init();
		if (err) {
			*why = "no local APIC for the device vector";
			return err;
		}
		wl.io = dev->runtime_io;
		wl.softc = dev->softc;
		irq_set_device_handler(device_interrupt, 0);
		crash_set_mute_hook(mute_at_crash);	/* before anything can interrupt */
		shell_set_idle_hook(workload_idle);
		shell_set_info_hook(workload_print);
		err = dev->runtime_io->intr_enable(dev->softc, IRQ_VECTOR_DEVICE);
		if (err) {
			*why = "the dump disk's driver could not enable its interrupt";
			return err;
		}
		wl.routed = true;
		printf("workload: %s interrupts on vector %#x\n", dev->name, IRQ_VECTOR_DEVICE);
	}

	wl.next_chunk = 0;
	flags = irq_save();
	wl.running = true;
	for (int i = 0; i < WL_SLOTS; i++) {
		struct wl_slot *s = &wl.slot[i];

		s->writing = false;
		s->busy = false;
		s->idle = true;
		s->chunk = pick_chunk(s);
		issue(s);
	}
	irq_restore(flags);
	return 0;
}

void workload_stop(void)
{
	uint64_t deadline;

	if (!wl.io)
		return;
	wl.running = false;	/* completions no longer requeue */
	/* What is in flight completes through the interrupt handler: let it in. */
	deadline = deadline_after_ms(STOP_WAIT_MS);
	irq_on();
	while (in_flight() && !deadline_passed(deadline))
		cpu_relax();
	irq_off();
}

bool workload_running(void)
{
	return wl.running;
}

/* The shell's idle hook: restart what a stopped device slot left idle; true while running. */
static bool workload_idle(void)
{
	uint64_t flags;

	if (!wl.running || wl.crashed)
		return wl.running;
	flags = irq_save();
	for (int i = 0; i < WL_SLOTS; i++) {
		struct wl_slot *s = &wl.slot[i];

		if (s->idle && !s->busy) {
			wl.restarts++;
			issue(s);
		}
	}
	irq_restore(flags);
	return true;
}

static void workload_print(void)
{
	if (!wl.io)
		return;
	printf("  workload %s: blocks %llu-%llu in %u-block chunks, %d in flight; reads %llu, "
	       "writes %llu (%llu bytes), errors %llu, restarts %llu, dropped %llu\n",
	       wl.running ? "on" : "off", (unsigned long long)wl.first,
	       (unsigned long long)(wl.first + wl.nblocks - 1), wl.chunk_blocks, in_flight(),
	       (unsigned long long)wl.reads, (unsigned long long)wl.writes,
	       (unsigned long long)wl.bytes, (unsigned long long)wl.errors,
	       (unsigned long long)wl.restarts, (unsigned long long)wl.dropped);
}
