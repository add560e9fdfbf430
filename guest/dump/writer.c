/*
 * The streaming writer of dump format v4 (docs/dump-format.md).
 *
 * The directory and the CRC table have two slots each; a leader names the slot it vouches
 * for (0: none yet). The writer fills only the slot that no leader on disk may name, makes it
 * durable, and only then writes a leader naming it, so whatever prefix of the writes reaches
 * the disk, its leader vouches for durable bytes only (format, "Durability").
 *
 * Write order, each step waiting for the previous one; "(flush)": DUMP_FSYNC on that write:
 *   1. the first leader: IN_PROGRESS, slot 0 (flush);
 *   2. each area the facility hands to the sink, at once, at the end of the body, in transfers
 *      of at most max_transfer that never cross a 64 MiB boundary of the body (compress=lz4:
 *      its frames, written from the compression buffer as it fills);
 *   3. a checkpoint after every component and at every 64 MiB of body: in the free slot, the
 *      table pages that changed since that slot was last written (all of it the first time),
 *      then the directory (flush); then the leader naming that slot (flush);
 *   4. (the facility's DONE calls, recorded in the directory);
 *   5. the final table and directory in the free slot, the end marker (flush), the trailer
 *      COMPLETE (flush), the final leader, identical to it (flush): the commit.
 * On a failure, as far as the device allows: the free slot describing the body that completed
 * (flush); the FAILED leader naming it, or, if it could not be written, the slot and figures
 * of the last durable leader (flush); then the identical trailer (flush).
 *
 * What a directory describes: exactly the body written so far (made durable by the slot's
 * flush). Components the facility is done with have their final status and areas; the one
 * being collected is PARTIAL with the areas written so far (at a 64 MiB checkpoint, or a
 * failure inside an area, that area as far as its writes completed, a page multiple); later
 * ones are PENDING. Its table slot holds the chunks wholly inside that body (all nchunks when
 * final) and zeros after: chunks_sealed. A compressed area in progress is listed with the
 * bytes written (stored_bytes) and the data of its frames wholly inside them (length).
 *
 * Memory outside the kernel image is written straight from where it lies; only the partial
 * last page of an area goes through a small zeroed buffer (areas are padded to a page). Small
 * areas (64 KiB or less, rounded) are gathered instead: copied behind each other into zip_buf,
 * which compression alone uses otherwise, and written as one transfer before any other write
 * (format "Write order"): a routine's hundreds of small areas were as many transfers, each a
 * round trip to the device that emulated ring 0 makes slow. Areas
 * inside the kernel image are copied into a staging buffer first: its dump path state changes
 * under our feet, and what is CRC-ed must be exactly what is written (the rest of the image is
 * staged too, so that the copy is held to the snapshot). The copies, every CRC and the
 * directory build run in ring 3 (docs/guest.md, "Ring 3").
 *
 * Compressed (compress=lz4, format "Compressed bodies"): an area is cut into frames of 64 KiB
 * of data, each LZ4 (or RAW when LZ4 would not shrink it) with the CRC32C of its data, appended
 * to zip_buf; one ring-3 trip fills the buffer (from memory that holds still, straight; from a
 * staged copy, a frame a trip, for the kernel image, zip_buf included), and its whole pages go
 * out as transfers like any body write, the rest moving to the buffer's front; the area's end
 * is padded to a page. There is no room check per area (its stored size is not known before):
 * each body write that would leave no room for the end marker ends the dump with E2BIG.
 *
 * Every write is checked here (and again by the driver) against the partition, the transfer
 * limits and the dump extent the last durable leader allows; it never touches a slot a leader
 * on disk may name, nor body already written. All state is static (.bss, the 2 MiB zip_buf
 * too): nothing is allocated after the crash.
 */
#include "dump/writer.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/tsc.h"
#include "arch/x86/usermode.h"
#include "dump/dumpsys.h"
#include "dump/prof.h"
#include "kern/result.h"
#include "lib/crc.h"
#include "lib/dumpstate.h"
#include "lib/errno.h"
#include "lib/lz4.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/testfault.h"

#define STAGE_SIZE	(64 * 1024)
/* Areas of at most this many bytes (rounded to a page) are gathered (gather_area()). */
#define GATHER_AREA_MAX	(64 * 1024)
/* Compression: frames go to zip_buf and out from there in page-multiple transfers. A trip to
 * ring 3 compresses as many frames as the buffer takes (each may need 16 + 65536 bytes). On
 * incompressible data every trip and every write costs ring 0 time: 256 KiB made a 1 GiB dump
 * 2.8 times slower than an uncompressed one, 1 MiB 1.1 times; then 2 MiB, the drivers' largest
 * transfer (drivers/virtio_blk.c), took a filled 1 GiB dump from 2.8 s to 1.8-2.2 s. */
#define ZIP_BUF_SIZE	(2048 * 1024)
#define ZIP_FRAME_MAX	(sizeof(struct dump_frame_header) + DUMP_FRAME_DATA)
#define ZIP_MAX_FRAMES	1024u	/* frame ends remembered: 64 MiB of data a trip at most */
_Static_assert(ZIP_BUF_SIZE % DUMP_PAGE == 0 && ZIP_BUF_SIZE >= 2 * ZIP_FRAME_MAX, "zip buffer");
_Static_assert(DUMP_FRAME_DATA == LZ4_MAX_INPUT, "a frame is one LZ4 block");

_Static_assert(DMP_MAX_COMPONENTS <= DUMP_DIR_MAX_COMPONENTS, "directory holds every component");
_Static_assert(DMP_MAX_AREAS <= DUMP_DIR_MAX_AREAS, "directory holds every area");
_Static_assert(DMP_MAX_CALLS <= DUMP_DIR_MAX_CALLS, "directory holds every call");
_Static_assert(DMP_MAX_VIOLATIONS <= DUMP_DIR_MAX_VIOLATIONS, "directory holds every violation");
_Static_assert(COMPONENT_FLAG_TABLE_REUSED == DMPF_TABLE_REUSED, "flag bits agree");
_Static_assert(COMPONENT_FLAG_CALL_ON_RESTART == DMPF_CALL_ON_RESTART, "flag bits agree");
_Static_assert(CALL_OP_ESTIMATE == DMPCALL_ESTIMATE && CALL_OUTCOME_BAD == DMPCALL_BAD,
	       "call codes agree");
_Static_assert(VIOLATION_NO_COMPONENT == DMP_NO_COMPONENT, "no-component marker agrees");

/*
 * What one directory + table slot holds on disk, as this dump wrote it: the figures a leader
 * naming it carries. slots[0] stands for "no slot" (all zero: the first leader's figures).
 */
struct slot {
	bool valid;			/* written whole by this dump, its last writes completed */
	uint32_t entries;		/* table entries it holds; the rest of the table slot is zero */
	uint32_t table_crc;
	uint32_t dir_crc;
	uint32_t components;
	uint32_t areas;
	uint64_t body;			/* the body its directory describes */
};

struct writer {
	struct dumpdev *dev;
	struct dump_layout *lay;
	struct dump_result *res;
	struct dumpio_stat stat;
	bool active;			/* begin got as far as planning: headers may be written */
	uint32_t min_transfer;
	uint64_t max_piece;		/* max_transfer rounded down to a page */
	struct dump_header hdr;		/* the constant fields; the rest is filled when sealed */
	const char *role;		/* "primary" / "secondary", for the console */
	uint64_t cur_offset;		/* the write in progress (in_write) */
	bool in_write;			/* inside the driver's DUMPWRITE */
	uint64_t async_from, async_to;	/* the DUMP_ASYNC writes not yet waited for: [from, to) */

	/* The slots, and the leaders that name them. */
	struct slot slots[1 + DUMP_SLOTS];
	int leader;			/* slot named by the last durable leader; -1: none yet */
	int unsure;			/* slot named by a leader whose write or flush failed: that
					 * leader may be on disk as well (-1: none) */

	/* Where the facility is. */
	uint32_t comps_done;		/* components before this one are finished */
	bool collecting;		/* the next component that is not DISABLED is being collected */

	/* The body. */
	uint64_t body_pos;		/* bytes of body written (areas padded to pages) */
	uint64_t next_checkpoint;	/* body_pos of the next 64 MiB checkpoint */
	uint32_t areas_written;		/* areas of this generation completely written */
	const struct dmp_area *cur_area; /* the area being written, NULL between areas */
	uint64_t cur_done;		/* its bytes on disk (page multiple) */
	uint32_t chunk_crc;		/* running CRC32C register of the current chunk */
	uint64_t chunk_fill;		/* bytes of the current chunk fed so far */
	uint32_t chunks_sealed;		/* entries in crc_table[] (zeros after them); fed before
					 * their write, so cut back after a failure */
	/* Small areas gathered in zip_buf (uncompressed bodies only): gather_len bytes of body
	 * from body_pos on, gather_areas areas, not yet written. */
	uint64_t gather_len;
	uint32_t gather_areas;

	/* Compression (compress=lz4): the frames of the area in progress (cur_area). zip_buf
	 * holds its stored bytes from cur_done on, zip_fill of them; the first zip_sent were
	 * written since (the next trip moves the rest, less than a page, to the front). */
	bool compress;
	unsigned zip_flags;		/* lz4_compress() flags (testfault=lz4-offset) */
	bool zip_stuck;			/* testfault=lz4-stuck: every frame from the trip's start */
	uint64_t zip_in;		/* its data compressed so far */
	uint64_t zip_stored;		/* its frames' bytes so far */
	uint64_t zip_fill;
	uint64_t zip_sent;
	uint64_t zip_frames_out;	/* its frames wholly written before those in zip_ends[] */
	uint32_t zip_nends;		/* entries in zip_ends[] */

	/* The directory as last built (dir_buf). */
	bool built_ok;			/* the facility's areas are the body, in order */
	uint32_t built_components;
	uint32_t built_areas;
	uint64_t built_body;		/* the body it describes */
	uint32_t built_crc;
	uint64_t body_bytes;		/* final */
	uint32_t nchunks;		/* final */
};

/* All written while the dump runs: dump path state (lib/dumpstate.h). */
static struct writer W __dumpstate;
static struct dump_layout layout __dumpstate;
static struct dmp_sink sink __dumpstate;
static uint8_t dir_buf[DUMP_DIR_BYTES] __dumpstate __attribute__((aligned(4096)));
static uint8_t crc_table[DUMP_CRC_TABLE_MAX] __dumpstate __attribute__((aligned(4096)));
static uint8_t header_block[DUMP_PAGE] __dumpstate __attribute__((aligned(4096)));
static uint8_t tail_page[DUMP_PAGE] __dumpstate __attribute__((aligned(4096)));
static uint8_t stage_buf[STAGE_SIZE] __dumpstate __attribute__((aligned(4096)));
static uint8_t zip_buf[ZIP_BUF_SIZE] __dumpstate __attribute__((aligned(4096)));
/* The stored end (from the area's start) of each frame in zip_buf not known to be written. */
static uint64_t zip_ends[ZIP_MAX_FRAMES] __dumpstate;
static struct lz4_state zip_lz4 __dumpstate;
static struct dump_end_marker end_marker __dumpstate __attribute__((aligned(4096)));
/* Only ever read (the CRC of a table slot's zeros): compared like any other kernel data. */
static uint8_t zero_page[DUMP_PAGE] __attribute__((aligned(4096)));

static uint64_t round_page(uint64_t v)
{
	return (v + DUMP_PAGE - 1) & ~(uint64_t)(DUMP_PAGE - 1);
}

int dump_layout_plan(uint64_t partition_bytes, uint32_t block_size, struct dump_layout *l)
{
	uint64_t nchunks, table;

	memset(l, 0, sizeof(*l));
	l->partition_bytes = partition_bytes;
	l->block_size = block_size;
	l->dir_offset = DUMP_DIR_OFFSET;
	l->dir_bytes = DUMP_DIR_BYTES;

	/* 64 KiB chunks, doubled while the table for the whole partition would exceed 256 KiB. */
	l->chunk_size = DUMP_CHUNK_SIZE_MIN;
	for (;;) {
		nchunks = (partition_bytes + l->chunk_size - 1) / l->chunk_size;
		table = round_page(4 * nchunks);
		if (table <= DUMP_CRC_TABLE_MAX)
			break;
		l->chunk_size *= 2;
	}
	l->crc_table_bytes = (uint32_t)(table < DUMP_PAGE ? DUMP_PAGE : table);
	l->crc_table_offset = l->dir_offset + DUMP_SLOTS * (uint64_t)l->dir_bytes;
	l->body_offset = l->crc_table_offset + DUMP_SLOTS * (uint64_t)l->crc_table_bytes;
	l->trailer_offset = partition_bytes >= block_size ? partition_bytes - block_size : 0;

	/* Room for the empty dump: the slots, an end marker and the trailer. */
	if (block_size == 0 || partition_bytes < block_size || partition_bytes % block_size ||
	    l->body_offset + DUMP_PAGE > l->trailer_offset)
		return ENOSPC;
	l->body_room = l->trailer_offset - DUMP_PAGE - l->body_offset;
	return 0;
}

/* Slot s (1 or 2) of the directory and of the table. */
static uint64_t dir_slot_offset(const struct dump_layout *l, int s)
{
	return l->dir_offset + (uint64_t)(s - 1) * l->dir_bytes;
}

static uint64_t table_slot_offset(const struct dump_layout *l, int s)
{
	return l->crc_table_offset + (uint64_t)(s - 1) * l->crc_table_bytes;
}

/* The slot to fill next: the one no leader that may be on disk names. 0 if there is none: no
 * leader is durable yet, or a leader write failed and either slot may be named. */
static int free_slot(const struct writer *w)
{
	if (w->leader < 0 || w->unsure >= 0)
		return 0;
	if (testfault(TF_IN_PLACE) && w->leader > 0)
		return w->leader;	/* deliberately wrong: the slot the leader on disk vouches for */
	return w->leader == 1 ? 2 : 1;
}

static void fail(struct writer *w, int err, const char *stage, uint64_t offset, bool device)
{
	if (w->res->error)
		return;	/* keep the first failure */
	w->res->error = err;
	w->res->stage = stage;
	w->res->offset = offset;
	w->res->device_error = device;
}

void dump_writer_note_failure(int err, const char *stage, uint64_t offset, bool device)
{
	if (W.res)
		fail(&W, err, stage, offset, device);
}

uint64_t dump_writer_current_offset(void)
{
	return W.in_write ? W.cur_offset : 0;
}

/* Whether [off, end) touches directory or table slot s (none for s < 1). */
static bool touches_slot(const struct dump_layout *l, int s, uint64_t off, uint64_t end)
{
	uint64_t d, t;

	if (s < 1)
		return false;
	d = dir_slot_offset(l, s);
	t = table_slot_offset(l, s);
	return (off < d + l->dir_bytes && d < end) || (off < t + l->crc_table_bytes && t < end);
}

/*
 * The end of the dump extent as the last durable leader tells it (format, "The dump extent"):
 * before the first, the leader slot alone (the writer's first write is its leader). Nothing is
 * written after a COMPLETE leader.
 */
static uint64_t extent_end(const struct writer *w)
{
	const struct dump_layout *l = w->lay;
	uint64_t end;

	if (w->leader < 0)
		return DUMP_LEADER_OFFSET + DUMP_PAGE;
	end = l->body_offset + w->slots[w->leader].body + DUMP_PROGRESS_STEP;
	return end < l->trailer_offset ? end : l->trailer_offset;
}

static bool async_failed(struct writer *w);

/*
 * The one place a write leaves the writer. Check 1 of 2 (the driver does check 2): the write
 * is block aligned, within the transfer limits, inside the partition, and either inside the
 * dump extent [65536, extent_end) - not touching a slot a leader on disk may name, nor the
 * body already written (it is written once) - or exactly the trailer block, once a leader is
 * durable.
 */
static int write_at(struct writer *w, uint64_t off, struct iovec *iov, int iovcnt, int fmode,
		    const char *stage)
{
	const struct dump_layout *l = w->lay;
	uint32_t bs = l->block_size;
	uint64_t total = 0, end;
	bool in_extent, is_trailer;
	int err;

	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	end = off + total;
	in_extent = off >= DUMP_LEADER_OFFSET && end <= extent_end(w) &&
		    ((!touches_slot(l, w->leader, off, end) && !touches_slot(l, w->unsure, off, end)) ||
		     testfault(TF_IN_PLACE)) &&
		    !(end > l->body_offset && off < l->body_offset + w->body_pos);
	is_trailer = off == l->trailer_offset && total == bs && w->leader >= 0;
	w->cur_offset = off;
	if (total == 0 || off % bs || total % bs || total < w->min_transfer ||
	    total > w->hdr.max_transfer || end < off || end > l->partition_bytes ||
	    !(in_extent || is_trailer)) {
		printf("dump: refused write of %llu bytes at %llu (%s): outside the extent or limits\n",
		       (unsigned long long)total, (unsigned long long)off, stage);
		fail(w, EINVAL, stage, off, false);
		return EINVAL;
	}
	w->in_write = true;
	uint64_t t = prof_begin();
	err = devdump_write(w->dev, off, iov, iovcnt, fmode, &w->stat);
	prof_end(fmode & DUMP_FSYNC ? PROF_FLUSH : PROF_WRITE, t);
	prof_bytes(total);
	w->in_write = false;
	if (err && async_failed(w))
		return err;
	if (err) {
		fail(w, err, w->stat.op == DUMPIO_OP_FLUSH ? "flush" : stage, off, true);
	} else if (fmode & DUMP_ASYNC) {
		if (!w->async_to)
			w->async_from = off;
		w->async_to = end;
	} else {
		w->async_from = w->async_to = 0;	/* a write that is not DUMP_ASYNC waited for them */
	}
	return err;
}

/*
 * Whether the error DUMPWRITE just gave is an earlier DUMP_ASYNC body write's (its offset in
 * the stat, among those not yet waited for). If so the body ends where that write began (every
 * write issued before it completed: dump/dumpdev.h): the area in progress goes back to it, and
 * the failure is that write's.
 */
static bool async_failed(struct writer *w)
{
	uint64_t at = w->stat.failing_offset;

	if (!(w->async_from <= at && at < w->async_to) || !w->cur_area)
		return false;
	w->async_from = w->async_to = 0;
	w->body_pos = at - w->lay->body_offset;
	w->cur_done = at - w->cur_area->disk_offset;
	fail(w, w->stat.error, "body", at, true);
	return true;
}

/* Wait for the DUMP_ASYNC writes in flight (a zero-byte DUMPWRITE). 0 or their failure. */
static int wait_writes(struct writer *w)
{
	int err;

	if (!w->async_to)
		return 0;
	uint64_t t = prof_begin();
	err = devdump_write(w->dev, 0, 0, 0, 0, &w->stat);
	prof_end(PROF_WRITE, t);
	if (err && !async_failed(w))
		fail(w, err, "body", w->async_from, true);
	w->async_from = w->async_to = 0;
	return err;
}

/* A contiguous buffer, in transfers of at most max_transfer; fsync after the last one. */
static int write_buffer(struct writer *w, uint64_t off, const void *buf, uint64_t len, bool fsync,
			const char *stage)
{
	while (len) {
		uint64_t n = len < w->max_piece ? len : w->max_piece;
		struct iovec iov = { (void *)buf, n };
		int err = write_at(w, off, &iov, 1, fsync && n == len ? DUMP_FSYNC : 0, stage);

		if (err)
			return err;
		off += n;
		buf = (const uint8_t *)buf + n;
		len -= n;
	}
	return 0;
}

/*
 * dst = the first `copy` bytes at src, then zeros up to `len` bytes (the third argument packs
 * len << 32 | copy). Runs in ring 3: on kvm-pvm ring 0's rep movsb / stosb is emulated byte
 * by byte. Staging buffers, source areas and the string functions are identity-mapped and
 * user-accessible.
 */
static uint64_t stage_copy_here(uint64_t dst, uint64_t src, uint64_t lens)
{
	uint64_t copy = lens & 0xffffffffu, len = lens >> 32;

	memcpy((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, copy);
	memset((uint8_t *)(uintptr_t)dst + copy, 0, len - copy);
	return 0;
}

static void stage_copy(void *dst, uint64_t src, uint64_t copy, uint64_t len)
{
	uint64_t t = prof_begin();

	run_unprivileged(stage_copy_here, (uintptr_t)dst, src, len << 32 | copy);
	prof_end(PROF_COPY, t);
}

/* --- the CRC table ------------------------------------------------------------------- */

/* Feed body bytes, in order, to the per-chunk CRCs. Pure computation: runs in ring 3. */
static uint64_t chunk_crc_feed_here(uint64_t writer, uint64_t buf, uint64_t len)
{
	struct writer *w = (struct writer *)(uintptr_t)writer;
	const uint8_t *p = (const uint8_t *)(uintptr_t)buf;
	uint32_t *table = (uint32_t *)crc_table;

	while (len) {
		uint64_t room = w->lay->chunk_size - w->chunk_fill;
		uint64_t n = len < room ? len : room;

		w->chunk_crc = crc32c_compute(w->chunk_crc, p, n);
		w->chunk_fill += n;
		p += n;
		len -= n;
		if (w->chunk_fill == w->lay->chunk_size) {
			if (w->chunks_sealed < w->lay->crc_table_bytes / 4)
				table[w->chunks_sealed] = ~w->chunk_crc;
			w->chunks_sealed++;
			w->chunk_crc = CRC32C_INIT;
			w->chunk_fill = 0;
		}
	}
	return 0;
}

static void chunk_crc_feed(struct writer *w, const void *buf, uint64_t len)
{
	uint64_t t = prof_begin();

	run_unprivileged(chunk_crc_feed_here, (uintptr_t)w, (uintptr_t)buf, len);
	prof_end(PROF_CRC, t);
}

/* The last, short chunk, when the body ends. */
static void chunk_crc_finish(struct writer *w)
{
	uint32_t *table = (uint32_t *)crc_table;

	if (w->chunk_fill) {
		if (w->chunks_sealed < w->lay->crc_table_bytes / 4)
			table[w->chunks_sealed] = ~w->chunk_crc;
		w->chunks_sealed++;
		w->chunk_crc = CRC32C_INIT;
		w->chunk_fill = 0;
	}
}

/* After a failure: the chunks fed for a write that did not complete are not sealed. */
static void chunk_crc_cut_back(struct writer *w)
{
	uint32_t keep = (uint32_t)(w->body_pos / w->lay->chunk_size);
	uint32_t max = w->lay->crc_table_bytes / 4;
	uint32_t have = w->chunks_sealed < max ? w->chunks_sealed : max;

	if (have > keep)
		stage_copy(crc_table + (uint64_t)keep * 4, 0, 0, (uint64_t)(have - keep) * 4);
	w->chunks_sealed = keep;
}

/* CRC32C of the table slot holding the first `entries` entries, then zeros. Ring 3. */
static uint64_t table_crc_here(uint64_t entries, uint64_t slot_bytes, uint64_t unused)
{
	uint32_t c = crc32c_compute(CRC32C_INIT, crc_table, entries * 4);

	for (uint64_t left = slot_bytes - entries * 4; left;) {
		uint64_t n = left < DUMP_PAGE ? left : DUMP_PAGE;

		c = crc32c_compute(c, zero_page, n);
		left -= n;
	}
	return ~c;
}

/* --- the directory -------------------------------------------------------------------- */

/*
 * The area in progress as far as its writes completed (cur_done, a page multiple): its length
 * and stored bytes. Compressed, the data of its frames wholly inside those bytes (all frames
 * but an area's last hold DUMP_FRAME_DATA; once the last is written the area is whole).
 */
static void partial_extent(const struct writer *w, const struct dmp_area *a, uint64_t *len,
			   uint64_t *stored)
{
	uint64_t whole = w->zip_frames_out;

	if (!w->compress) {
		*len = *stored = a->len < w->cur_done ? a->len : w->cur_done;
		return;
	}
	if (w->zip_in == a->len && w->cur_done >= w->zip_stored) {
		*len = a->len;
		*stored = w->zip_stored;
		return;
	}
	for (uint32_t i = 0; i < w->zip_nends; i++)
		if (zip_ends[i] <= w->cur_done)
			whole++;
	*len = whole * DUMP_FRAME_DATA;
	*stored = w->cur_done;
}

/*
 * Build the directory of the body written so far from the facility's state (dmp_state):
 * the components before comps_done with their final status and areas; the one being collected
 * PARTIAL (or FAILED / EXCLUDED, already decided) with the areas written so far, the area in
 * progress as far as its writes completed; every later one PENDING without areas (DISABLED
 * ones stay DISABLED). built_ok says the areas listed are exactly the ones written, back to
 * back from body_offset. Pure memory work: runs in ring 3.
 */
static uint64_t build_directory_here(uint64_t writer, uint64_t unused1, uint64_t unused2)
{
	struct writer *w = (struct writer *)(uintptr_t)writer;
	const struct dmp_state *s = &dmp_state;
	uint32_t ncomp = s->ncomponents < DUMP_DIR_MAX_COMPONENTS ? s->ncomponents
								  : DUMP_DIR_MAX_COMPONENTS;
	uint32_t ncalls = s->ncalls < DUMP_DIR_MAX_CALLS ? s->ncalls : DUMP_DIR_MAX_CALLS;
	uint32_t nviol = s->nviolations < DUMP_DIR_MAX_VIOLATIONS ? s->nviolations
								   : DUMP_DIR_MAX_VIOLATIONS;
	uint32_t written = w->areas_written < s->nareas ? w->areas_written : s->nareas;
	uint64_t at = w->lay->body_offset;
	uint32_t listed = 0, whole = 0, open = ncomp;
	bool ok = w->areas_written == written;
	/* The area in progress (a 64 MiB checkpoint, a failure): listed as far as written. */
	const struct dmp_area *pa = w->cur_area && w->cur_done ? w->cur_area : 0;
	uint32_t pi = DUMP_DIR_MAX_AREAS;	/* its index, once listed */
	uint64_t plen = 0, pstored = 0;
	struct dump_dir_header *dh = (void *)dir_buf;
	struct dump_component_entry *ce;
	struct dump_area_entry *ae;
	struct dump_call_record *cr;
	struct dump_violation_record *vr;

	if (written > DUMP_DIR_MAX_AREAS)
		written = DUMP_DIR_MAX_AREAS;
	memset(dir_buf, 0, sizeof(dir_buf));
	/* The component being collected: the facility goes on with the next one not DISABLED. */
	if (w->collecting)
		for (open = w->comps_done;
		     open < ncomp && s->components[open].status == COMPONENT_DISABLED; open++)
			;

	ce = (void *)(dir_buf + sizeof(*dh));
	for (uint32_t c = 0; c < ncomp; c++) {
		const struct dmp_component *sc = &s->components[c];
		struct dump_component_entry *e = &ce[c];
		uint32_t count = 0;
		uint64_t bytes = 0;

		memcpy(e->name, sc->name, sizeof(e->name));
		e->kind = sc->kind;
		e->flags = sc->flags;
		e->level = sc->level;
		e->estimate_bytes = sc->estimate_bytes;
		e->failure_rv = sc->failure_rv;
		e->staging_bytes = sc->staging_bytes;
		e->failure_vaddr = sc->failure_vaddr;
		e->failure_handle = sc->failure_handle;
		e->global_buffer_bytes = sc->global_buffer_bytes;
		e->first_area = listed;

		if (sc->status == COMPONENT_DISABLED) {
			e->status = COMPONENT_DISABLED;
			continue;
		}
		if (c < w->comps_done)
			e->status = sc->status == COMPONENT_PENDING ? COMPONENT_DUMPED : sc->status;
		else if (c == open)
			e->status = sc->status == COMPONENT_FAILED || sc->status == COMPONENT_EXCLUDED ?
				    sc->status : COMPONENT_PARTIAL;
		else
			e->status = COMPONENT_PENDING;	/* not reached: no areas */
		if (e->status == COMPONENT_PENDING)
			continue;
		if (e->status == COMPONENT_FAILED || e->status == COMPONENT_EXCLUDED)
			e->reason = sc->reason;

		/* Its areas are the next ones written, back to back. */
		if (sc->area_count && (sc->first_area != listed || listed > written ||
				       sc->area_count > written - listed))
			ok = false;
		for (uint32_t k = 0; ok && k < sc->area_count; k++) {
			const struct dmp_area *a = &s->areas[listed + k];

			if (a->component != c || a->disk_offset != at) {
				ok = false;
				break;
			}
			bytes += a->len;
			at += round_page(a->stored);
			count++;
		}
		whole += count;
		if (ok && c == open && pa && pa == &s->areas[listed + count] && pa->component == c &&
		    pa->disk_offset == at && listed + count < DUMP_DIR_MAX_AREAS) {
			pi = listed + count;
			partial_extent(w, pa, &plen, &pstored);
			bytes += plen;
			at += round_page(pstored);
			count++;
		}
		e->area_count = count;
		e->dumped_bytes = bytes;
		/* Set by the facility once the component is done; for one still being collected,
		 * the generation at work (1 for a replayed table). */
		if (!count)
			e->table_generation = 0;
		else if (sc->table_generation)
			e->table_generation = sc->table_generation;
		else
			e->table_generation = (sc->flags & DMPF_TABLE_REUSED) ? 1 : w->hdr.generation;
		listed += count;
	}
	if (whole != written || (pa && pi == DUMP_DIR_MAX_AREAS))
		ok = false;	/* an area written that no component lists */

	ae = (void *)(dir_buf + sizeof(*dh) + sizeof(*ce) * ncomp);
	for (uint32_t i = 0; i < listed; i++) {
		const struct dmp_area *a = &s->areas[i];
		uint32_t flags = a->flags & (AREA_FLAG_VOLATILE | AREA_FLAG_STAGED);

		if (flags & AREA_FLAG_STAGED)
			flags |= AREA_FLAG_VOLATILE;	/* staged data is volatile too */
		memcpy(ae[i].name, a->name, sizeof(ae[i].name));
		ae[i].phys_addr = a->phys;
		ae[i].length = i == pi ? plen : a->len;
		ae[i].stored_bytes = i == pi ? pstored : a->stored;
		ae[i].disk_offset = a->disk_offset;
		ae[i].component = a->component;
		ae[i].flags = flags;
	}

	cr = (void *)(ae + listed);
	for (uint32_t i = 0; i < ncalls; i++) {
		const struct dmp_call *c = &s->calls[i];

		cr[i].component = c->component;
		cr[i].op = c->op;
		cr[i].generation = c->generation;
		cr[i].outcome = c->outcome;
		cr[i].entries = c->entries;
		cr[i].level = c->level;
		cr[i].value = c->value;
	}

	vr = (void *)(cr + ncalls);
	for (uint32_t i = 0; i < nviol; i++) {
		const struct dmp_violation *v = &s->violations[i];

		vr[i].address = v->address;
		vr[i].rip = v->rip;
		vr[i].error_code = v->error_code;
		vr[i].component = v->component;
		vr[i].op = v->op;
		vr[i].generation = v->generation;
	}

	memcpy(dh->magic, "DBEDDIR", 8);
	dh->component_count = ncomp;
	dh->area_count = listed;
	dh->component_entry_size = sizeof(struct dump_component_entry);
	dh->area_entry_size = sizeof(struct dump_area_entry);
	dh->call_count = ncalls;
	dh->call_entry_size = sizeof(struct dump_call_record);
	dh->violation_count = nviol;
	dh->violation_entry_size = sizeof(struct dump_violation_record);
	dh->level = w->hdr.level;
	dh->generation = w->hdr.generation;
	dh->estimate_bytes = w->hdr.estimate_bytes;

	w->built_ok = ok;
	w->built_components = ncomp;
	w->built_areas = listed;
	w->built_body = at - w->lay->body_offset;
	w->built_crc = ~crc32c_compute(CRC32C_INIT, dir_buf, sizeof(dir_buf));
	return 0;
}

/*
 * The directory for slot s (0: there is no free slot), describing exactly the body written
 * so far, with the table entries the slot will hold: all nchunks when final, else the chunks
 * wholly inside that body. EFAULT (stage directory) if the facility's state and the body
 * disagree.
 */
static int describe(struct writer *w, int s, bool final)
{
	const struct dump_layout *l = w->lay;
	uint32_t want = final ? w->nchunks : (uint32_t)(w->body_pos / l->chunk_size);

	if (!s) {
		printf("dump: no directory slot is free\n");
		fail(w, EFAULT, "directory", 0, false);
		return EFAULT;
	}
	/* The level, generation and estimate may only be known now (dmp_begin ran before). */
	w->hdr.level = dmp_state.level;
	w->hdr.estimate_bytes = dmp_state.estimate_bytes;
	uint64_t t = prof_begin();

	run_unprivileged(build_directory_here, (uintptr_t)w, 0, 0);
	prof_end(PROF_META, t);
	if (w->built_ok && w->built_body == w->body_pos && w->chunks_sealed == want &&
	    (uint64_t)want * 4 <= l->crc_table_bytes)
		return 0;
	printf("dump: the directory describes %llu of %llu body bytes, %u of %u chunks sealed\n",
	       (unsigned long long)w->built_body, (unsigned long long)w->body_pos,
	       w->chunks_sealed, want);
	fail(w, EFAULT, "directory", dir_slot_offset(l, s), false);
	return EFAULT;
}

/*
 * Slot s (a free one) gets the directory in dir_buf and the first chunks_sealed table
 * entries: the table pages that differ from what s holds (the whole table slot the first
 * time: an older dump's bytes may be there), then the whole directory, its last write with a
 * flush when `flush` (which makes the body written before it durable too).
 */
static int write_slot(struct writer *w, int s, bool flush)
{
	const struct dump_layout *l = w->lay;
	struct slot *sl = &w->slots[s];
	uint32_t entries = w->chunks_sealed;
	uint64_t from = 0, to = l->crc_table_bytes;
	int err = 0;

	if (sl->valid) {
		/* Entries [lo, hi) differ; their pages go out whole, from crc_table[], which is
		 * zero past chunks_sealed (hi < the slot's entries after a failure: a short chunk
		 * the final table sealed is not sealed in a FAILED one). */
		uint32_t lo = sl->entries < entries ? sl->entries : entries;
		uint32_t hi = sl->entries < entries ? entries : sl->entries;

		from = (uint64_t)lo * 4 & ~(uint64_t)(DUMP_PAGE - 1);
		to = lo == hi ? from : round_page((uint64_t)hi * 4);
	}
	sl->valid = false;	/* until both writes completed */
	if (to > from)
		err = write_buffer(w, table_slot_offset(l, s) + from, crc_table + from, to - from,
				   false, "crc-table");
	if (!err)
		err = write_buffer(w, dir_slot_offset(l, s), dir_buf, l->dir_bytes, flush,
				   "directory");
	if (err)
		return err;
	sl->valid = true;
	sl->entries = entries;
	uint64_t t = prof_begin();

	sl->table_crc = (uint32_t)run_unprivileged(table_crc_here, entries, l->crc_table_bytes, 0);
	prof_end(PROF_META, t);
	sl->dir_crc = w->built_crc;
	sl->components = w->built_components;
	sl->areas = w->built_areas;
	sl->body = w->built_body;
	return 0;
}

/* --- headers -------------------------------------------------------------------------- */

/* The header vouching for slot s (with its figures; slot 0: none), in header_block. */
static void header_seal(struct writer *w, uint32_t status, int s)
{
	struct dump_header *h = &w->hdr;
	const struct slot *sl = &w->slots[s];
	bool complete = status == DUMP_STATUS_COMPLETE, failed = status == DUMP_STATUS_FAILED;

	h->status = status;
	h->slot = (uint32_t)s;
	h->dir_crc = sl->dir_crc;
	h->crc_table_crc = sl->table_crc;
	h->component_count = sl->components;
	h->area_count = sl->areas;
	h->body_written = sl->body;
	h->chunks_sealed = sl->entries;	/* floor(body / chunk_size); nchunks in the final slot */
	h->body_bytes = complete ? sl->body : 0;
	h->end_offset = complete ? w->lay->body_offset + sl->body : 0;
	h->failure = failed ? (uint32_t)w->res->error : 0;
	h->failure_offset = failed ? w->res->offset : 0;
	h->tsc_done = rdtsc();
	h->header_crc = crc32c(h, offsetof(struct dump_header, header_crc));
	memset(header_block, 0, sizeof(header_block));
	memcpy(header_block, h, sizeof(*h));
}

/* header_block to the leader slot (flush). Until that is done, the disk may hold this leader
 * or the one before. */
static int put_leader(struct writer *w, int s, const char *stage)
{
	int err;

	w->unsure = s;
	err = write_buffer(w, DUMP_LEADER_OFFSET, header_block, DUMP_PAGE, true, stage);
	if (err)
		return err;
	w->leader = s;
	w->unsure = -1;
	return 0;
}

/* header_block to the trailer block (flush). */
static int put_trailer(struct writer *w, const char *stage)
{
	return write_buffer(w, w->lay->trailer_offset, header_block, w->lay->block_size, true,
			    stage);
}

static void progress(struct writer *w)
{
	uint64_t t = prof_begin();

	result_line_unechoed("PROGRESS written=%llu total=%llu body=%llu device=%s generation=%u",
			     (unsigned long long)w->slots[w->leader].body,
			     (unsigned long long)w->hdr.estimate_bytes,
			     (unsigned long long)w->body_pos, w->role, w->hdr.generation);
	/* People at the console get it short (kern/result.h). */
	printf("dump: %llu of %llu MiB written\n", (unsigned long long)(w->slots[w->leader].body >> 20),
	       (unsigned long long)(w->hdr.estimate_bytes >> 20));
	prof_end(PROF_LINES, t);
}

static void header_init(struct writer *w, const struct dmp_query *q, const struct crash_record *cr,
			const struct dump_params *p)
{
	const struct dump_layout *l = w->lay;
	struct dump_header *h = &w->hdr;

	memset(h, 0, sizeof(*h));
	memcpy(h->magic, "DBEDDUMP", 8);
	h->version = DUMP_VERSION;
	h->header_size = DUMP_HEADER_SIZE;
	h->block_size = l->block_size;
	h->status = DUMP_STATUS_IN_PROGRESS;
	memcpy(h->dump_id, p->dump_id, 16);
	h->generation = p->generation;
	h->crash_reason = cr->crash_reason;
	h->crash_vector = cr->crash_vector;
	h->crash_error_code = cr->crash_error_code;
	h->crash_fault_addr = cr->crash_fault_addr;
	h->partition_bytes = l->partition_bytes;
	h->dir_offset = l->dir_offset;
	h->dir_bytes = l->dir_bytes;
	h->crc_table_offset = l->crc_table_offset;
	h->crc_table_bytes = l->crc_table_bytes;
	h->body_offset = l->body_offset;
	h->chunk_size = l->chunk_size;
	h->max_transfer = q->max_tsize;
	h->min_transfer = q->min_tsize;
	h->level = dmp_state.level;
	h->ram_bytes = p->ram_bytes;
	h->tsc_hz = p->tsc_hz;
	h->tsc_crash = cr->tsc_crash;
	h->estimate_bytes = dmp_state.estimate_bytes;
	memcpy(h->registers, cr->registers, sizeof(h->registers));
	h->device_role = p->device_role;
	h->compression = p->compression;
	if (p->generation > 1) {
		h->restart_error = p->restart_error;
		h->restart_offset = p->restart_offset;
	}
}

/* A checkpoint: the free slot describing the body so far (flush), then the leader naming it
 * (flush). */
static int checkpoint(struct writer *w)
{
	int s = free_slot(w);
	int err = describe(w, s, false);

	if (!err)
		err = write_slot(w, s, true);
	if (err)
		return err;
	header_seal(w, DUMP_STATUS_IN_PROGRESS, s);
	err = put_leader(w, s, "progress-leader");
	if (!err)
		progress(w);
	return err;
}

/* --- the body ------------------------------------------------------------------------- */

/*
 * Memory that changes while it is being written must be copied first, so that what is CRC-ed
 * is what the device reads. Only the kernel image changes under the writer's feet: the dump
 * path's state (lib/dumpstate.h: its own state, stacks, rings); other volatile memory (the
 * pinned pool, staged data) changed after the crash but holds still while the writer reads
 * it, and goes straight to the device.
 */
static bool changes_while_written(const struct dmp_area *a)
{
	uint64_t kstart = (uintptr_t)__kernel_start, kend = (uintptr_t)__kernel_end;

	/* Every area of the kernel image is staged, not only the VOLATILE dump path state: the
	 * rest of the image (text, rodata, and .data/.bss outside the dumpstate range) equals
	 * the snapshot, so the staging path itself is held to the ground truth (a copy from the
	 * wrong place shows in the content oracle). */
	return a->phys < kend && kstart < a->phys + a->len;
}

/* The most of `n` bytes one body transfer may take: max_piece, up to the next checkpoint. */
static uint64_t body_piece(const struct writer *w, uint64_t n)
{
	uint64_t to_checkpoint = w->next_checkpoint - w->body_pos;

	if (n > w->max_piece)
		n = w->max_piece;
	return n < to_checkpoint ? n : to_checkpoint;
}

/*
 * One body transfer of the area in progress, at its cur_done: the chunk CRCs fed first, then
 * the write (DUMP_ASYNC when `holds_still`: straight from memory nothing changes until the
 * area's end, and the device takes several at once); at a 64 MiB boundary, a checkpoint
 * (inside the area: the directory lists it as far as written, compressed as far as its whole
 * frames go, its component PARTIAL).
 */
static int body_write(struct writer *w, uint64_t disk_offset, struct iovec *iov, int iovcnt,
		      bool holds_still)
{
	uint64_t n = 0;
	int err;

	for (int i = 0; i < iovcnt; i++) {
		chunk_crc_feed(w, iov[i].iov_base, iov[i].iov_len);
		n += iov[i].iov_len;
	}
	/* Memory that holds still until the write completes may go while others are in flight,
	 * or (a device that takes one at a time, posted) while the writer readies the next. */
	err = write_at(w, disk_offset + w->cur_done, iov, iovcnt, holds_still ? DUMP_ASYNC : 0, "body");
	if (err)
		return err;
	w->body_pos += n;
	w->cur_done += n;
	if (w->body_pos != w->next_checkpoint)
		return 0;
	w->next_checkpoint += DUMP_PROGRESS_STEP;
	return checkpoint(w);
}

static int write_area(struct writer *w, const struct dmp_area *a, uint64_t disk_offset)
{
	uint64_t rounded = round_page(a->len);
	uint64_t full = a->len & ~(uint64_t)(DUMP_PAGE - 1);	/* whole pages of data */
	bool staged = changes_while_written(a);

	while (w->cur_done < rounded) {
		uint64_t pos = w->cur_done;
		uint64_t n = body_piece(w, rounded - pos);
		struct iovec iov[2];
		int iovcnt = 0, err;
		bool still = false;	/* straight from the area's memory, which holds still */

		if (staged) {
			uint64_t copy;

			if (n > STAGE_SIZE)
				n = STAGE_SIZE;
			copy = a->len - pos < n ? a->len - pos : n;
			/* testfault=stage-stuck (deliberately wrong): the copy never advances. */
			stage_copy(stage_buf, a->phys + (testfault(TF_STAGE_STUCK) ? 0 : pos), copy, n);
			iov[iovcnt++] = (struct iovec){ stage_buf, n };
		} else {
			uint64_t direct = pos < full ? (full - pos < n ? full - pos : n) : 0;

			if (direct)
				iov[iovcnt++] = (struct iovec){ (void *)(uintptr_t)(a->phys + pos), direct };
			if (direct < n) {
				/* The last page: the data's tail, then zeros to the page boundary. */
				stage_copy(tail_page, a->phys + full, a->len - full, DUMP_PAGE);
				iov[iovcnt++] = (struct iovec){ tail_page, DUMP_PAGE };
				n = direct + DUMP_PAGE;
			}
			still = direct == n;
		}
		err = body_write(w, disk_offset, iov, iovcnt, still);
		if (err)
			return err;
	}
	return 0;
}

/* --- compressed areas ------------------------------------------------------------------ */

/*
 * One trip: frames of the data at src (len bytes, the area's next) appended to zip_buf while
 * it has room for one more; the area's end padded with zeros to a page. First, what was
 * written leaves the buffer. Returns the data's bytes taken. Pure computation: ring 3.
 */
static uint64_t zip_here(uint64_t writer, uint64_t src, uint64_t len)
{
	struct writer *w = (struct writer *)(uintptr_t)writer;
	const uint8_t *data = (const uint8_t *)(uintptr_t)src;
	uint64_t done = 0;
	uint32_t keep = 0;

	if (w->zip_sent) {
		memcpy(zip_buf, zip_buf + w->zip_sent, w->zip_fill - w->zip_sent);
		w->zip_fill -= w->zip_sent;
		w->zip_sent = 0;
	}
	for (uint32_t i = 0; i < w->zip_nends; i++) {
		if (zip_ends[i] <= w->cur_done)
			w->zip_frames_out++;
		else
			zip_ends[keep++] = zip_ends[i];
	}
	w->zip_nends = keep;

	while (done < len && w->zip_nends < ZIP_MAX_FRAMES &&
	       w->zip_fill + ZIP_FRAME_MAX <= ZIP_BUF_SIZE) {
		uint32_t raw = len - done < DUMP_FRAME_DATA ? (uint32_t)(len - done) : DUMP_FRAME_DATA;
		/* testfault=lz4-stuck (deliberately wrong): every frame from the same bytes. */
		const uint8_t *f = w->zip_stuck ? data : data + done;
		uint8_t *payload = zip_buf + w->zip_fill + sizeof(struct dump_frame_header);
		struct dump_frame_header fh = { DUMP_FRAME_LZ4, raw, 0, 0 };

		/* LZ4 only when strictly smaller, else the data as it is. */
		fh.payload_bytes = (uint32_t)lz4_compress(&zip_lz4, f, raw, payload, raw - 1,
							  w->zip_flags);
		if (!fh.payload_bytes) {
			fh.kind = DUMP_FRAME_RAW;
			fh.payload_bytes = raw;
			memcpy(payload, f, raw);
		}
		fh.raw_crc = ~crc32c_compute(CRC32C_INIT, f, raw);
		memcpy(zip_buf + w->zip_fill, &fh, sizeof(fh));
		w->zip_fill += sizeof(fh) + fh.payload_bytes;
		w->zip_stored += sizeof(fh) + fh.payload_bytes;
		zip_ends[w->zip_nends++] = w->zip_stored;
		done += raw;
	}
	w->zip_in += done;
	if (w->zip_in == w->cur_area->len)
		memset(zip_buf + w->zip_fill, 0, round_page(w->zip_fill) - w->zip_fill);
	return done;
}

static void zip(struct writer *w, const void *src, uint64_t len)
{
	uint64_t t = prof_begin();
	uint64_t done = run_unprivileged(zip_here, (uintptr_t)w, (uintptr_t)src, len);

	prof_end(PROF_ZIP, t);
	prof_zip_in(done);
}

/*
 * zip_buf's whole pages to the body (all of it, zero-padded, at the area's end), in transfers
 * of at most max_piece that never cross a 64 MiB checkpoint. Each write must leave room for
 * the end marker, else E2BIG: the stored size of a compressed area is not known before.
 */
static int zip_drain(struct writer *w, uint64_t disk_offset, bool last)
{
	const struct dump_layout *l = w->lay;
	uint64_t avail = last ? round_page(w->zip_fill) : w->zip_fill & ~(uint64_t)(DUMP_PAGE - 1);

	while (w->zip_sent < avail) {
		uint64_t n = body_piece(w, avail - w->zip_sent);
		struct iovec iov;
		int err;

		if (n > l->body_room - w->body_pos) {
			printf("dump: no room for %llu more bytes of area %.24s at body offset %llu:"
			       " partition full\n", (unsigned long long)n, w->cur_area->name,
			       (unsigned long long)w->body_pos);
			fail(w, E2BIG, "body", l->body_offset + w->body_pos, false);
			return E2BIG;
		}
		iov = (struct iovec){ zip_buf + w->zip_sent, n };
		err = body_write(w, disk_offset, &iov, 1, false);
		if (err)
			return err;
		w->zip_sent += n;
	}
	return 0;
}

/*
 * The area as LZ4 frames (format, "Compressed bodies"): compressed into zip_buf straight from
 * memory that holds still, frame by frame from a staged copy otherwise (the kernel image,
 * zip_buf and the match finder's table included), the buffer written out whenever it has no
 * room for another frame, and at the end.
 */
static int write_area_zip(struct writer *w, struct dmp_area *a, uint64_t disk_offset)
{
	bool staged = changes_while_written(a);

	w->zip_in = w->zip_stored = w->zip_fill = w->zip_sent = w->zip_frames_out = 0;
	w->zip_nends = 0;
	while (w->zip_in < a->len) {
		/* testfault=lz4-stuck (deliberately wrong): the source never advances. */
		uint64_t src = a->phys + (w->zip_stuck ? 0 : w->zip_in), len = a->len - w->zip_in;
		bool last;
		int err;

		if (staged) {
			if (len > DUMP_FRAME_DATA)
				len = DUMP_FRAME_DATA;
			stage_copy(stage_buf, src, len, len);
			src = (uintptr_t)stage_buf;
		}
		zip(w, (const void *)(uintptr_t)src, len);
		last = w->zip_in == a->len;
		if (last || w->zip_nends == ZIP_MAX_FRAMES ||
		    w->zip_fill + ZIP_FRAME_MAX > ZIP_BUF_SIZE) {
			err = zip_drain(w, disk_offset, last);
			if (err)
				return err;
		}
	}
	a->stored = w->zip_stored;
	return 0;
}

/* --- gathered small areas ------------------------------------------------------------- */

/* Whether the gather buffer takes area a now: small, and with the buffer still short of a
 * transfer, of the next checkpoint and of the room the end marker and trailer need. */
static bool gather_takes(const struct writer *w, const struct dmp_area *a)
{
	uint64_t rounded = round_page(a->len), end = w->body_pos + w->gather_len + rounded;
	uint64_t cap = w->max_piece < ZIP_BUF_SIZE ? w->max_piece : ZIP_BUF_SIZE;

	return !w->compress && a->len && rounded <= GATHER_AREA_MAX && w->gather_len + rounded <= cap &&
	       end < w->next_checkpoint && end <= w->lay->body_room;
}

/* The area copied behind the others, zero-padded to its page; its disk offset is where one
 * write of its own would have put it. Counted as written once gather_flush() wrote it. */
static void gather_area(struct writer *w, struct dmp_area *a)
{
	uint64_t rounded = round_page(a->len);

	a->disk_offset = w->lay->body_offset + w->body_pos + w->gather_len;
	stage_copy(zip_buf + w->gather_len, a->phys, a->len, rounded);
	a->stored = a->len;
	w->gather_len += rounded;
	w->gather_areas++;
}

/* The gathered areas as one body transfer (fed to the chunk CRCs first); then they count as
 * written. Never reaches a checkpoint (gather_takes). 0 with nothing gathered. */
static int gather_flush(struct writer *w)
{
	struct iovec iov = { zip_buf, w->gather_len };
	uint32_t areas = w->gather_areas;
	int err;

	if (!iov.iov_len)
		return 0;
	w->gather_len = 0;
	w->gather_areas = 0;
	chunk_crc_feed(w, zip_buf, iov.iov_len);
	err = write_at(w, w->lay->body_offset + w->body_pos, &iov, 1, 0, "body");
	if (err)
		return err;
	w->body_pos += iov.iov_len;
	w->areas_written += areas;
	return 0;
}

static int sink_area(void *ctx, struct dmp_area *a)
{
	struct writer *w = ctx;
	const struct dump_layout *l = w->lay;
	uint64_t rounded = round_page(a->len);
	int err;

	if (w->res->error)
		return w->res->error;
	/* What is gathered goes out before an area the buffer does not take (a small one then
	 * starts a new gathering). */
	if (!gather_takes(w, a)) {
		err = gather_flush(w);
		if (err)
			return err;
	}
	if (gather_takes(w, a)) {
		gather_area(w, a);
		return 0;
	}
	/* The area, the end marker and the trailer must still fit (compressed: each write). */
	if (!w->compress && (a->len > l->body_room || rounded > l->body_room || w->body_pos > l->body_room - rounded)) {
		printf("dump: no room for area %.24s (%llu bytes) at body offset %llu: partition full\n",
		       a->name, (unsigned long long)a->len, (unsigned long long)w->body_pos);
		fail(w, ENOSPC, "body", l->body_offset + w->body_pos, false);
		return ENOSPC;
	}
	a->disk_offset = l->body_offset + w->body_pos;
	w->cur_area = a;
	w->cur_done = 0;
	if (w->compress) {
		err = write_area_zip(w, a, a->disk_offset);
	} else {
		err = write_area(w, a, a->disk_offset);
		if (!err)
			err = wait_writes(w);	/* the area's writes all complete before the next area's */
		a->stored = a->len;
	}
	if (err)
		return err;	/* cur_area stays: the FAILED directory lists what of it was written */
	w->cur_area = 0;
	w->areas_written++;
	return 0;
}

static int sink_component_done(void *ctx, uint32_t index)
{
	struct writer *w = ctx;
	int err;

	if (w->res->error)
		return w->res->error;
	err = gather_flush(w);	/* the checkpoint lists only what is written */
	if (err)
		return err;
	w->comps_done = index + 1;
	/* The facility goes on to the next component only once this checkpoint is done. */
	w->collecting = false;
	err = checkpoint(w);
	w->collecting = err == 0;
	return err;
}

const struct dmp_sink *dump_writer_sink(void)
{
	return &sink;
}

/* --- begin, finish, fail ----------------------------------------------------------------- */

int dump_writer_begin(struct dumpdev *dev, const struct dmp_query *q,
		      const struct crash_record *cr, const struct dump_params *p,
		      struct dump_result *res)
{
	struct writer *w = &W;
	int err;

	memset(w, 0, sizeof(*w));
	memset(res, 0, sizeof(*res));
	res->stage = "none";
	w->dev = dev;
	w->lay = &layout;
	w->res = res;
	w->role = p->device_role == DUMP_ROLE_SECONDARY ? "secondary" : "primary";
	w->min_transfer = q->min_tsize;
	w->max_piece = q->max_tsize & ~(uint64_t)(DUMP_PAGE - 1);
	w->leader = -1;
	w->unsure = -1;
	w->chunk_crc = CRC32C_INIT;
	w->next_checkpoint = DUMP_PROGRESS_STEP;
	w->compress = p->compression == DUMP_COMPRESSION_LZ4;
	w->zip_flags = testfault(TF_LZ4_OFFSET) ? LZ4_BAD_OFFSET : 0;
	w->zip_stuck = testfault(TF_LZ4_STUCK);
	sink.area = sink_area;
	sink.component_done = sink_component_done;
	sink.ctx = w;

	err = dump_layout_plan(dev->part_bytes, dev->block_size, &layout);
	if (err) {
		/* ENOSPC: where the body, which would have been empty, would have begun. */
		printf("dump: partition of %llu bytes is too small for an empty dump\n",
		       (unsigned long long)dev->part_bytes);
		fail(w, err, "plan", layout.body_offset, false);
		return err;
	}
	if (w->max_piece == 0 || q->min_tsize != dev->block_size || q->min_tsize > DUMP_PAGE ||
	    q->max_tsize % q->min_tsize) {
		fail(w, EINVAL, "query", 0, false);
		return EINVAL;
	}
	header_init(w, q, cr, p);
	w->active = true;

	printf("dump: %s %s, generation %u, level %u, %u components, estimate %llu bytes;"
	       " body at %llu, room %llu, chunk %u\n",
	       w->role, dev->name, p->generation, w->hdr.level, dmp_state.ncomponents,
	       (unsigned long long)dmp_state.estimate_bytes, (unsigned long long)layout.body_offset,
	       (unsigned long long)layout.body_room, layout.chunk_size);

	/* The slots are written from crc_table[], which must be zero past chunks_sealed. */
	stage_copy(crc_table, 0, 0, layout.crc_table_bytes);

	/* 1. the first leader, naming no slot: this dump claims the leader slot before it
	 * touches anything an older dump's leader may vouch for */
	header_seal(w, DUMP_STATUS_IN_PROGRESS, 0);
	err = put_leader(w, 0, "progress-leader");
	if (err)
		return err;
	progress(w);
	w->collecting = true;
	return 0;
}

int dump_writer_finish(void)
{
	struct writer *w = &W;
	const struct dump_layout *l = w->lay;
	uint64_t start = rdtsc();
	int s, err;

	if (!w->active)
		return w->res ? w->res->error : EINVAL;
	if (w->res->error)
		return w->res->error;

	/* 5. the table (every chunk, the short last one too) and the directory, final, in the
	 * free slot; the end marker (flush) */
	w->collecting = false;	/* (nothing gathered: each component's checkpoint wrote it) */
	chunk_crc_finish(w);
	w->body_bytes = w->body_pos;
	w->nchunks = (uint32_t)((w->body_bytes + l->chunk_size - 1) / l->chunk_size);
	s = free_slot(w);
	err = describe(w, s, true);
	if (!err)
		err = write_slot(w, s, false);
	if (err)
		return err;

	if (testfault(TF_LEADER_FIRST)) {
		/* Deliberately wrong: the commit before what it vouches for (the slot above is not
		 * flushed, the end marker and the trailer not written yet). */
		header_seal(w, DUMP_STATUS_COMPLETE, s);
		err = put_leader(w, s, "final-leader");
		if (err)
			return err;
	}
	memset(&end_marker, 0, sizeof(end_marker));
	memcpy(end_marker.magic, "DBEDEND", 8);
	end_marker.version = DUMP_VERSION;
	end_marker.generation = w->hdr.generation;
	memcpy(end_marker.dump_id, w->hdr.dump_id, 16);
	end_marker.body_bytes = w->body_bytes;
	end_marker.nchunks = w->nchunks;
	end_marker.crc_table_crc = w->slots[s].table_crc;
	end_marker.crc = crc32c(&end_marker, offsetof(struct dump_end_marker, crc));
	err = write_buffer(w, l->body_offset + w->body_bytes, &end_marker, DUMP_PAGE, true,
			   "end-marker");
	if (err)
		return err;

	/* The trailer, COMPLETE (flush); then the final leader, the same header (flush): the
	 * commit. Before it lands the dump reads partial, after it complete. */
	header_seal(w, DUMP_STATUS_COMPLETE, s);
	if (testfault(TF_LEADER_FIRST))
		err = put_trailer(w, "trailer");	/* the leader went out first, above */
	else if (!(err = put_trailer(w, "trailer")))
		err = put_leader(w, s, "final-leader");
	if (err)
		return err;

	w->res->extent_bytes = l->body_offset + w->body_bytes + DUMP_PAGE - DUMP_LEADER_OFFSET +
			       l->block_size;
	w->res->body_bytes = w->body_bytes;
	printf("dump: complete on the %s device, %u areas, %llu bytes of body; final writes %llu ms\n",
	       w->role, w->slots[s].areas, (unsigned long long)w->body_bytes,
	       (unsigned long long)(tsc_to_us(rdtsc() - start) / 1000));
	return 0;
}

void dump_writer_write_failed(void)
{
	struct writer *w = &W;
	int s, named, err;

	if (!w->active || !w->res || !w->res->error)
		return;
	printf("dump: %s device failed in %s at offset %llu: %s (device status 0x%x, request status 0x%x)\n",
	       w->role, w->res->stage, (unsigned long long)w->res->offset, errno_name(w->res->error),
	       w->stat.device_status, w->stat.request_status);
	chunk_crc_cut_back(w);

	/* The free slot describing the body that completed (the area in progress as far as its
	 * writes completed, its component PARTIAL), made durable. No slot is free before the
	 * first leader is durable, nor after a leader write failed (that leader may name either
	 * slot); then, or if the slot cannot be written, the FAILED leader carries the slot and
	 * figures of the last durable leader. */
	named = w->leader < 0 ? 0 : w->leader;
	s = free_slot(w);
	if (s) {
		err = describe(w, s, false);
		if (!err)
			err = write_slot(w, s, true);
		if (!err)
			named = s;
		else
			printf("dump: the failed dump's directory could not be written: %s\n",
			       errno_name(err));
	}

	/* The FAILED leader (flush), then the identical trailer (flush); their own failures are
	 * printed, not reported (the first failure stands). Each step waits for the one before:
	 * no trailer when its leader did not land (with no leader of this dump on disk, the
	 * trailer block is outside the dump). */
	w->res->body_bytes = w->slots[named].body;
	header_seal(w, DUMP_STATUS_FAILED, named);
	err = put_leader(w, named, "failed-leader");
	if (err) {
		printf("dump: FAILED leader not written: %s\n", errno_name(err));
		return;
	}
	err = put_trailer(w, "failed-trailer");
	if (err)
		printf("dump: FAILED trailer not written: %s\n", errno_name(err));
}
