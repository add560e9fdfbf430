/*
 * The streaming writer of dump format v2 (docs/dump-format.md).
 *
 * Write order, each write waiting for the previous one:
 *   1. the CRC table slot (zeros: stale bytes of an older dump must not stay in it), the
 *      directory (every component PENDING or DISABLED), the leader (IN_PROGRESS, body_written 0);
 *   2. each area the facility hands to the sink, at once, at the end of the body, in transfers
 *      of at most max_transfer that never cross a 64 MiB boundary of the body; a checkpoint
 *      (changed CRC table pages, directory, leader) after every component and at every 64 MiB;
 *   3. (the facility's DONE calls, recorded in the directory);
 *   4. the CRC table and the directory, final; 5. the end marker, flush;
 *   6. the final leader (COMPLETE) and the identical trailer, flush.
 * On a failure: the table and directory as far as the body was written (the area in progress
 * with the length written), then the leader and the trailer with status FAILED, as far as the
 * device allows.
 *
 * What a checkpoint describes: the components reached so far with the areas completely
 * written (the facility counts an area once the sink returned; a component being written is
 * DUMPED with its areas so far), which form a prefix of the body; body_written is that
 * prefix's length and chunks_sealed the chunks wholly inside it (the table on disk holds
 * exactly those, zeros after). A 64 MiB checkpoint falls inside an area: it lists that area
 * with the length written so far (a page multiple), so body_written there is the 64 MiB
 * multiple and a leader on disk is never more than 64 MiB behind the body written. A FAILED
 * directory does the same with the writes that succeeded (so it never describes less than a
 * checkpoint before it); the final directory lists whole areas. Components not reached, and
 * everything after the one being written, are PENDING.
 *
 * Non-volatile memory is written straight from where it lies; only the partial last page of an
 * area goes through a small zeroed buffer (areas are padded to a page). Volatile and staged
 * areas change under our feet (or are reused right after), so they are copied into a staging
 * buffer first: what is CRC-ed is exactly what is written. The copies, every CRC and the
 * directory build run in ring 3 (docs/guest.md, "Ring 3").
 *
 * Every write is checked against the dump extent and the partition here, and again by the
 * driver. All state is static (.bss): nothing is allocated after the crash.
 */
#include "dump/writer.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/tsc.h"
#include "arch/x86/usermode.h"
#include "dump/dumpsys.h"
#include "kern/result.h"
#include "lib/crc.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"

#define STAGE_SIZE	(64 * 1024)

_Static_assert(DMP_MAX_COMPONENTS <= DUMP_DIR_MAX_COMPONENTS, "directory holds every component");
_Static_assert(DMP_MAX_AREAS <= DUMP_DIR_MAX_AREAS, "directory holds every area");
_Static_assert(DMP_MAX_CALLS <= DUMP_DIR_MAX_CALLS, "directory holds every call");
_Static_assert(DMP_MAX_VIOLATIONS <= DUMP_DIR_MAX_VIOLATIONS, "directory holds every violation");
_Static_assert(COMPONENT_FLAG_TABLE_REUSED == DMPF_TABLE_REUSED, "flag bits agree");
_Static_assert(COMPONENT_FLAG_CALL_ON_RESTART == DMPF_CALL_ON_RESTART, "flag bits agree");
_Static_assert(CALL_OP_ESTIMATE == DMPCALL_ESTIMATE && CALL_OUTCOME_BAD == DMPCALL_BAD,
	       "call codes agree");
_Static_assert(VIOLATION_NO_COMPONENT == DMP_NO_COMPONENT, "no-component marker agrees");

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
	uint64_t extent_end;		/* no write may end past this (the dump extent so far) */

	/* The body. */
	uint64_t body_pos;		/* bytes of body written (areas padded to pages) */
	uint64_t next_checkpoint;	/* body_pos of the next 64 MiB checkpoint */
	uint32_t areas_written;		/* areas of this generation completely written */
	const struct dmp_area *cur_area; /* the area being written, NULL between areas */
	uint64_t cur_done;		/* its bytes on disk (page multiple) */
	bool partial_ok;		/* this checkpoint may describe cur_area as far as written */
	uint32_t chunk_crc;		/* running CRC32C register of the current chunk */
	uint64_t chunk_fill;		/* bytes of the current chunk fed so far */
	uint32_t chunks_sealed;		/* entries computed in crc_table[] */

	/* The directory as last built (dir_buf). */
	uint32_t built_components;
	uint32_t built_areas;
	uint64_t built_body;		/* the body it describes */
	uint32_t built_crc;

	/* What is on disk. */
	uint32_t disk_dir_crc;
	uint32_t disk_components;
	uint32_t disk_areas;
	uint64_t disk_body;
	uint32_t disk_published;	/* table entries on disk; zeros after them */
	uint32_t disk_table_crc;
	uint64_t body_bytes;		/* final */
	uint32_t nchunks;		/* final */
};

static struct writer W;
static struct dump_layout layout;
static struct dmp_sink sink;
static uint8_t dir_buf[DUMP_DIR_BYTES] __attribute__((aligned(4096)));
static uint8_t crc_table[DUMP_CRC_TABLE_MAX] __attribute__((aligned(4096)));
static uint8_t table_tail[DUMP_PAGE] __attribute__((aligned(4096)));
static uint8_t header_block[DUMP_PAGE] __attribute__((aligned(4096)));
static uint8_t tail_page[DUMP_PAGE] __attribute__((aligned(4096)));
static uint8_t stage_buf[STAGE_SIZE] __attribute__((aligned(4096)));
static uint8_t zero_page[DUMP_PAGE] __attribute__((aligned(4096)));
static struct dump_end_marker end_marker __attribute__((aligned(4096)));

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
	l->crc_table_offset = l->dir_offset + l->dir_bytes;
	l->body_offset = l->crc_table_offset + l->crc_table_bytes;
	l->trailer_offset = partition_bytes >= block_size ? partition_bytes - block_size : 0;

	/* Room for the empty dump: the slots, an end marker and the trailer. */
	if (block_size == 0 || partition_bytes < block_size || partition_bytes % block_size ||
	    l->body_offset + DUMP_PAGE > l->trailer_offset)
		return ENOSPC;
	l->body_room = l->trailer_offset - DUMP_PAGE - l->body_offset;
	return 0;
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

/*
 * The one place a write leaves the writer. Check 1 of 2 (the driver does check 2): the write
 * is block aligned, within the transfer limits, inside the partition, and inside the dump
 * extent so far [65536, extent_end) without touching the trailer block, or exactly the
 * trailer block.
 */
static int write_at(struct writer *w, uint64_t off, struct iovec *iov, int iovcnt, bool fsync,
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
	in_extent = off >= DUMP_LEADER_OFFSET && end <= w->extent_end && end <= l->trailer_offset;
	is_trailer = off == l->trailer_offset && total == bs;
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
	err = devdump_write(w->dev, off, iov, iovcnt, fsync, &w->stat);
	w->in_write = false;
	if (err)
		fail(w, err, w->stat.op == DUMPIO_OP_FLUSH ? "flush" : stage, off, true);
	return err;
}

/* A contiguous buffer, in transfers of at most max_transfer; fsync after the last one. */
static int write_buffer(struct writer *w, uint64_t off, const void *buf, uint64_t len, bool fsync,
			const char *stage)
{
	while (len) {
		uint64_t n = len < w->max_piece ? len : w->max_piece;
		struct iovec iov = { (void *)buf, n };
		int err = write_at(w, off, &iov, 1, fsync && n == len, stage);

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
	run_unprivileged(stage_copy_here, (uintptr_t)dst, src, len << 32 | copy);
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
	run_unprivileged(chunk_crc_feed_here, (uintptr_t)w, (uintptr_t)buf, len);
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

/*
 * Publish the first `entries` entries: write the table pages that changed since the last
 * time (entries beyond `entries` stay zero on disk: the page holding the boundary goes out
 * through a masked copy).
 */
static int write_table(struct writer *w, uint32_t entries)
{
	const struct dump_layout *l = w->lay;
	uint64_t first, end, full_end;
	int err = 0;

	if (entries <= w->disk_published)
		return 0;
	first = (uint64_t)w->disk_published * 4 & ~(uint64_t)(DUMP_PAGE - 1);
	end = (uint64_t)entries * 4;
	full_end = end & ~(uint64_t)(DUMP_PAGE - 1);
	if (full_end > first)
		err = write_buffer(w, l->crc_table_offset + first, crc_table + first, full_end - first,
				   false, "crc-table");
	if (!err && end > full_end) {
		stage_copy(table_tail, (uintptr_t)(crc_table + full_end), end - full_end, DUMP_PAGE);
		err = write_buffer(w, l->crc_table_offset + full_end, table_tail, DUMP_PAGE, false,
				   "crc-table");
	}
	if (err)
		return err;
	w->disk_published = entries;
	w->disk_table_crc = (uint32_t)run_unprivileged(table_crc_here, entries, l->crc_table_bytes, 0);
	return 0;
}

/* --- the directory -------------------------------------------------------------------- */

/*
 * Build the directory from the facility's state (dmp_state), describing only what has been
 * written: the components whose status is final and whose areas are all written, in order;
 * the first component that is not (in progress, or not reached) and every later one are
 * PENDING without areas (DISABLED ones stay DISABLED). Pure memory work: runs in ring 3.
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
	uint64_t expect = w->lay->body_offset;
	uint32_t listed = 0;
	bool stop = false;
	/* A mid-area checkpoint: the area being written, described as far as it is on disk. */
	const struct dmp_area *pa = w->partial_ok ? w->cur_area : 0;
	uint32_t pi = pa ? (uint32_t)(pa - s->areas) : 0;
	uint64_t plen = 0;
	bool pused = false;
	struct dump_dir_header *dh = (void *)dir_buf;
	struct dump_component_entry *ce;
	struct dump_area_entry *ae;
	struct dump_call_record *cr;
	struct dump_violation_record *vr;

	if (written > DUMP_DIR_MAX_AREAS)
		written = DUMP_DIR_MAX_AREAS;
	memset(dir_buf, 0, sizeof(dir_buf));

	if (pa && (pa < s->areas || pi != s->nareas || pi != written || pi >= DUMP_DIR_MAX_AREAS ||
		   w->cur_done == 0))
		pa = 0;
	if (pa)
		plen = pa->len < w->cur_done ? pa->len : w->cur_done;

	/* Which components are described, and how many areas that makes. */
	ce = (void *)(dir_buf + sizeof(*dh));
	for (uint32_t c = 0; c < ncomp; c++) {
		const struct dmp_component *sc = &s->components[c];
		struct dump_component_entry *e = &ce[c];
		bool mine = pa && pa->component == c;	/* its area is being written */
		bool ok = !stop && ((sc->status >= COMPONENT_DUMPED && sc->status <= COMPONENT_FAILED) ||
				    (mine && sc->status == COMPONENT_PENDING));
		uint32_t count = sc->area_count;
		uint64_t bytes = 0, at = expect;

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

		if (ok && sc->area_count) {
			/* Its areas must be the next ones written, back to back. */
			if (sc->first_area != listed || sc->area_count > written - listed) {
				ok = false;
			} else {
				for (uint32_t k = 0; k < sc->area_count; k++) {
					const struct dmp_area *a = &s->areas[listed + k];

					if (a->component != c || a->disk_offset != at) {
						ok = false;
						break;
					}
					bytes += a->len;
					at += round_page(a->len);
				}
			}
		}
		if (ok && mine && sc->first_area + sc->area_count == pi && pi == listed + count &&
		    pa->disk_offset == at) {
			count++;
			bytes += plen;
			at += round_page(plen);
			pused = true;
		}
		if (sc->status == COMPONENT_DISABLED) {
			e->status = COMPONENT_DISABLED;
			continue;
		}
		if (!ok) {
			/* Not reached, in progress, or not all written: PENDING, no areas. */
			stop = true;
			e->status = COMPONENT_PENDING;
			continue;
		}
		e->status = sc->status == COMPONENT_PENDING ? COMPONENT_DUMPED : sc->status;
		e->reason = e->status == COMPONENT_DUMPED ? 0 : sc->reason;
		e->area_count = count;
		e->dumped_bytes = bytes;
		/* Set by the facility once the component is done; for one still being written
		 * (its areas so far, in a checkpoint or a FAILED dump), the generation at work. */
		if (!count)
			e->table_generation = 0;
		else if (sc->table_generation)
			e->table_generation = sc->table_generation;
		else
			e->table_generation = (sc->flags & DMPF_TABLE_REUSED) ? 1 : w->hdr.generation;
		listed += count;
		expect = at;
		if (mine)
			stop = true;	/* the components after it are not reached yet */
	}

	ae = (void *)(dir_buf + sizeof(*dh) + sizeof(*ce) * ncomp);
	for (uint32_t i = 0; i < listed; i++) {
		const struct dmp_area *a = &s->areas[i];
		uint32_t flags = a->flags & (AREA_FLAG_VOLATILE | AREA_FLAG_STAGED);

		if (flags & AREA_FLAG_STAGED)
			flags |= AREA_FLAG_VOLATILE;	/* staged data is volatile too */
		memcpy(ae[i].name, a->name, sizeof(ae[i].name));
		ae[i].phys_addr = a->phys;
		ae[i].length = pused && i == pi ? plen : a->len;
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

	w->built_components = ncomp;
	w->built_areas = listed;
	w->built_body = expect - w->lay->body_offset;
	w->built_crc = ~crc32c_compute(CRC32C_INIT, dir_buf, sizeof(dir_buf));
	return 0;
}

static void build_directory(struct writer *w)
{
	/* The level, generation and estimate may only be known now (dmp_begin ran before). */
	w->hdr.level = dmp_state.level;
	w->hdr.estimate_bytes = dmp_state.estimate_bytes;
	run_unprivileged(build_directory_here, (uintptr_t)w, 0, 0);
}

static int write_directory(struct writer *w)
{
	int err = write_buffer(w, w->lay->dir_offset, dir_buf, w->lay->dir_bytes, false, "directory");

	if (err)
		return err;
	w->disk_dir_crc = w->built_crc;
	w->disk_components = w->built_components;
	w->disk_areas = w->built_areas;
	w->disk_body = w->built_body;
	return 0;
}

/* --- headers -------------------------------------------------------------------------- */

/* The header describing what is on disk, in header_block. */
static void header_seal(struct writer *w, uint32_t status)
{
	struct dump_header *h = &w->hdr;
	uint32_t sealed = (uint32_t)(w->disk_body / w->lay->chunk_size);

	h->status = status;
	h->dir_crc = w->disk_dir_crc;
	h->component_count = w->disk_components;
	h->area_count = w->disk_areas;
	h->crc_table_crc = w->disk_table_crc;
	h->body_written = w->disk_body;
	if (status == DUMP_STATUS_COMPLETE) {
		h->body_bytes = w->body_bytes;
		h->end_offset = w->lay->body_offset + w->body_bytes;
		h->chunks_sealed = w->nchunks;
	} else {
		h->body_bytes = 0;
		h->end_offset = 0;
		h->chunks_sealed = w->disk_published < sealed ? w->disk_published : sealed;
	}
	h->tsc_done = rdtsc();
	h->header_crc = crc32c(h, offsetof(struct dump_header, header_crc));
	memset(header_block, 0, sizeof(header_block));
	memcpy(header_block, h, sizeof(*h));
}

static int write_leader(struct writer *w, const char *stage)
{
	return write_buffer(w, DUMP_LEADER_OFFSET, header_block, DUMP_PAGE, false, stage);
}

static int write_trailer(struct writer *w, bool fsync, const char *stage)
{
	return write_buffer(w, w->lay->trailer_offset, header_block, w->lay->block_size, fsync, stage);
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
	if (p->generation > 1) {
		h->restart_error = p->restart_error;
		h->restart_offset = p->restart_offset;
	}
}

/* Table pages that changed, directory, leader (IN_PROGRESS): each describes the body before. */
static int checkpoint(struct writer *w)
{
	int err;

	build_directory(w);
	err = write_table(w, (uint32_t)(w->built_body / w->lay->chunk_size));
	if (!err)
		err = write_directory(w);
	if (err)
		return err;
	header_seal(w, DUMP_STATUS_IN_PROGRESS);
	err = write_leader(w, "progress-leader");
	if (!err)
		result_line("PROGRESS written=%llu total=%llu body=%llu device=%s generation=%u",
			    (unsigned long long)w->disk_body,
			    (unsigned long long)w->hdr.estimate_bytes,
			    (unsigned long long)w->body_pos, w->role, w->hdr.generation);
	return err;
}

/* --- the body ------------------------------------------------------------------------- */

/*
 * Memory that changes while it is being written must be copied first, so that what is CRC-ed
 * is what the device reads. Only the kernel image changes under the writer's feet (its own
 * state, stacks, rings); other volatile memory (the pinned pool, staged data) changed after
 * the crash but holds still while the writer reads it, and goes straight to the device.
 */
static bool changes_while_written(const struct dmp_area *a)
{
	uint64_t kstart = (uintptr_t)__kernel_start, kend = (uintptr_t)__kernel_end;

	return (a->flags & (AREA_FLAG_VOLATILE | AREA_FLAG_STAGED)) && a->phys < kend &&
	       kstart < a->phys + a->len;
}

static int write_area(struct writer *w, const struct dmp_area *a, uint64_t disk_offset)
{
	uint64_t rounded = round_page(a->len);
	uint64_t full = a->len & ~(uint64_t)(DUMP_PAGE - 1);	/* whole pages of data */
	bool staged = changes_while_written(a);

	for (uint64_t pos = 0; pos < rounded;) {
		uint64_t to_checkpoint = w->next_checkpoint - w->body_pos;
		uint64_t n = rounded - pos;
		struct iovec iov[2];
		int iovcnt = 0, err;

		if (n > w->max_piece)
			n = w->max_piece;
		if (n > to_checkpoint)
			n = to_checkpoint;

		if (staged) {
			uint64_t copy;

			if (n > STAGE_SIZE)
				n = STAGE_SIZE;
			copy = a->len - pos < n ? a->len - pos : n;
			stage_copy(stage_buf, a->phys + pos, copy, n);
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
		}
		for (int i = 0; i < iovcnt; i++)
			chunk_crc_feed(w, iov[i].iov_base, iov[i].iov_len);

		err = write_at(w, disk_offset + pos, iov, iovcnt, false, "body");
		if (err)
			return err;
		pos += n;
		w->body_pos += n;
		w->cur_done = pos;
		if (w->body_pos == w->next_checkpoint) {
			w->next_checkpoint += DUMP_PROGRESS_STEP;
			w->partial_ok = true;
			err = checkpoint(w);
			w->partial_ok = false;
			if (err)
				return err;
		}
	}
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
	if (a->len > l->body_room || rounded > l->body_room || w->body_pos > l->body_room - rounded) {
		printf("dump: no room for area %.24s (%llu bytes) at body offset %llu: partition full\n",
		       a->name, (unsigned long long)a->len, (unsigned long long)w->body_pos);
		fail(w, ENOSPC, "body", l->body_offset + w->body_pos, false);
		return ENOSPC;
	}
	a->disk_offset = l->body_offset + w->body_pos;
	w->extent_end = a->disk_offset + rounded;
	w->cur_area = a;
	w->cur_done = 0;
	err = write_area(w, a, a->disk_offset);
	if (err)
		return err;	/* cur_area stays: the FAILED directory lists what of it was written */
	w->cur_area = 0;
	w->areas_written++;
	return 0;
}

static int sink_component_done(void *ctx, uint32_t index)
{
	struct writer *w = ctx;

	if (w->res->error)
		return w->res->error;
	return checkpoint(w);
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
	w->chunk_crc = CRC32C_INIT;
	w->next_checkpoint = DUMP_PROGRESS_STEP;
	sink.area = sink_area;
	sink.component_done = sink_component_done;
	sink.ctx = w;

	err = dump_layout_plan(dev->part_bytes, dev->block_size, &layout);
	if (err) {
		printf("dump: partition of %llu bytes is too small for an empty dump\n",
		       (unsigned long long)dev->part_bytes);
		fail(w, err, "plan", 0, false);
		return err;
	}
	if (w->max_piece == 0 || q->min_tsize != dev->block_size || q->min_tsize > DUMP_PAGE ||
	    q->max_tsize % q->min_tsize) {
		fail(w, EINVAL, "query", 0, false);
		return EINVAL;
	}
	header_init(w, q, cr, p);
	w->active = true;
	w->extent_end = layout.body_offset;

	printf("dump: %s %s, generation %u, level %u, %u components, estimate %llu bytes;"
	       " body at %llu, room %llu, chunk %u\n",
	       w->role, dev->name, p->generation, w->hdr.level, dmp_state.ncomponents,
	       (unsigned long long)dmp_state.estimate_bytes, (unsigned long long)layout.body_offset,
	       (unsigned long long)layout.body_room, layout.chunk_size);

	/* 1. the table slot (zeros), the directory, the leader */
	stage_copy(crc_table, 0, 0, layout.crc_table_bytes);
	err = write_buffer(w, layout.crc_table_offset, crc_table, layout.crc_table_bytes, false,
			   "crc-table");
	if (err)
		return err;
	w->disk_published = 0;
	w->disk_table_crc = (uint32_t)run_unprivileged(table_crc_here, 0, layout.crc_table_bytes, 0);
	return checkpoint(w);
}

int dump_writer_finish(void)
{
	struct writer *w = &W;
	const struct dump_layout *l = w->lay;
	uint64_t start = rdtsc();
	int err;

	if (!w->active)
		return w->res ? w->res->error : EINVAL;
	if (w->res->error)
		return w->res->error;

	/* 4. the table and the directory, final */
	w->partial_ok = false;
	chunk_crc_finish(w);
	w->body_bytes = w->body_pos;
	w->nchunks = (uint32_t)((w->body_bytes + l->chunk_size - 1) / l->chunk_size);
	build_directory(w);
	if (w->chunks_sealed != w->nchunks || w->built_body != w->body_bytes) {
		printf("dump: the directory describes %llu of %llu body bytes, %u of %u chunks sealed\n",
		       (unsigned long long)w->built_body, (unsigned long long)w->body_bytes,
		       w->chunks_sealed, w->nchunks);
		fail(w, EFAULT, "directory", l->dir_offset, false);
		return EFAULT;
	}
	err = write_table(w, w->nchunks);
	if (!err)
		err = write_directory(w);
	if (err)
		return err;

	/* 5. end marker, flush */
	w->extent_end = l->body_offset + w->body_bytes + DUMP_PAGE;
	memset(&end_marker, 0, sizeof(end_marker));
	memcpy(end_marker.magic, "DBEDEND", 8);
	end_marker.version = DUMP_VERSION;
	end_marker.generation = w->hdr.generation;
	memcpy(end_marker.dump_id, w->hdr.dump_id, 16);
	end_marker.body_bytes = w->body_bytes;
	end_marker.nchunks = w->nchunks;
	end_marker.crc_table_crc = w->disk_table_crc;
	end_marker.crc = crc32c(&end_marker, offsetof(struct dump_end_marker, crc));
	err = write_buffer(w, l->body_offset + w->body_bytes, &end_marker, DUMP_PAGE, true,
			   "end-marker");
	if (err)
		return err;

	/* 6. final leader and trailer, identical, flush */
	header_seal(w, DUMP_STATUS_COMPLETE);
	err = write_leader(w, "final-leader");
	if (!err)
		err = write_trailer(w, true, "trailer");
	if (err)
		return err;

	w->res->extent_bytes = l->body_offset + w->body_bytes + DUMP_PAGE - DUMP_LEADER_OFFSET +
			       l->block_size;
	w->res->body_bytes = w->body_bytes;
	printf("dump: complete on the %s device, %u areas, %llu bytes of body; final writes %llu ms\n",
	       w->role, w->disk_areas, (unsigned long long)w->body_bytes,
	       (unsigned long long)(tsc_to_us(rdtsc() - start) / 1000));
	return 0;
}

void dump_writer_write_failed(void)
{
	struct writer *w = &W;
	int err;

	if (!w->active || !w->res || !w->res->error)
		return;
	/* As far as the body was written: the area in progress with the length written, like a
	 * 64 MiB checkpoint (never less than a leader on disk already described). */
	w->partial_ok = true;
	printf("dump: %s device failed in %s at offset %llu: %s (device status 0x%x, request status 0x%x)\n",
	       w->role, w->res->stage, (unsigned long long)w->res->offset, errno_name(w->res->error),
	       w->stat.device_status, w->stat.request_status);
	w->res->body_bytes = w->disk_body;

	/* The table and the directory as at the last completed area (not past the extent). */
	build_directory(w);
	err = write_table(w, (uint32_t)(w->built_body / w->lay->chunk_size));
	if (!err)
		err = write_directory(w);
	if (err)
		printf("dump: the failed dump's directory could not be written: %s\n", errno_name(err));

	/* Best effort: each may fail too; neither changes the reported failure. */
	w->hdr.failure = (uint32_t)w->res->error;
	w->hdr.failure_offset = w->res->offset;
	header_seal(w, DUMP_STATUS_FAILED);
	err = write_leader(w, "failed-leader");
	if (err)
		printf("dump: FAILED leader not written: %s\n", errno_name(err));
	err = write_trailer(w, true, "failed-trailer");
	if (err)
		printf("dump: FAILED trailer not written: %s\n", errno_name(err));
	w->res->body_bytes = w->disk_body;
}
