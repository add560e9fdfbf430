/*
 * The writer of dump format v1 (docs/dump-format.md).
 *
 * Write order, each write waiting for the previous one:
 *   1. leader (IN_PROGRESS, body_written 0, crc_table_crc 0), then the directory;
 *   2. the body, area by area, in transfers of at most max_transfer that never cross a 64 MiB
 *      boundary of the body, with the leader rewritten at each 64 MiB boundary and after the
 *      last area (body_written updated);
 *   3. the chunk CRC table; 4. the end marker; 5. flush;
 *   6. the final leader (COMPLETE) and the identical trailer; 7. flush.
 * On a failure: the leader and trailer with status FAILED, as far as the device allows.
 *
 * Non-volatile memory is written straight from where it lies; only the partial last page of
 * an area goes through a small zeroed buffer (the format pads areas to a page). Volatile areas
 * (our own .data/.bss, the crash record) change under our feet - this very code writes them -
 * so they are copied into a staging buffer first: what is CRC-ed is exactly what is written.
 *
 * Every write is checked against the dump extent and the partition here, and again by the
 * driver. All state is static (.bss): nothing is allocated after the crash.
 */
#include "dump/writer.h"
#include "arch/x86/cpu.h"
#include "arch/x86/tsc.h"
#include "arch/x86/usermode.h"
#include "dump/dumpsys.h"
#include "kern/result.h"
#include "lib/crc.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"

#define DIR_BUF_SIZE	(((64 + 64 * DMP_MAX_COMPONENTS + 64 * DMP_MAX_AREAS) + 4095) & ~4095)
#define STAGE_SIZE	(16 * 1024)

struct writer {
	struct dumpdev *dev;
	const struct dmp_collection *c;
	struct dump_layout *lay;
	uint32_t min_transfer;
	uint64_t max_piece;		/* max_transfer rounded down to a page */
	struct dump_header hdr;
	uint64_t body_written;
	uint64_t leader_body_written;	/* body_written of the last leader written */
	uint32_t chunk_crc;		/* running CRC32C register of the current chunk */
	uint64_t chunk_fill;		/* bytes of the current chunk fed so far */
	uint32_t chunks_done;
	struct dump_result *res;
	struct dumpio_stat stat;
};

static struct writer W;
static struct dump_layout layout;
static uint8_t dir_buf[DIR_BUF_SIZE] __attribute__((aligned(4096)));
static uint8_t crc_table[DUMP_CRC_TABLE_MAX] __attribute__((aligned(4096)));
static uint8_t header_block[DUMP_PAGE] __attribute__((aligned(4096)));
static uint8_t tail_page[DUMP_PAGE] __attribute__((aligned(4096)));
static uint8_t stage_buf[STAGE_SIZE] __attribute__((aligned(4096)));
static struct dump_end_marker end_marker __attribute__((aligned(4096)));

static uint64_t round_page(uint64_t v)
{
	return (v + DUMP_PAGE - 1) & ~(uint64_t)(DUMP_PAGE - 1);
}

int dump_layout_plan(const struct dmp_collection *c, uint64_t partition_bytes,
		     uint32_t block_size, struct dump_layout *l)
{
	uint64_t off, nchunks;

	memset(l, 0, sizeof(*l));
	l->partition_bytes = partition_bytes;
	l->block_size = block_size;
	l->dir_offset = DUMP_DIR_OFFSET;
	l->dir_bytes = (uint32_t)round_page(64 + 64ull * c->ncomponents + 64ull * c->nareas);

	for (uint32_t i = 0; i < c->nareas; i++)
		l->body_bytes += round_page(c->areas[i].len);

	/* 64 KiB chunks, doubled while the table would exceed 256 KiB. */
	l->chunk_size = DUMP_CHUNK_SIZE_MIN;
	for (;;) {
		nchunks = (l->body_bytes + l->chunk_size - 1) / l->chunk_size;
		if (round_page(4 * nchunks) <= DUMP_CRC_TABLE_MAX)
			break;
		l->chunk_size *= 2;
	}
	l->nchunks = (uint32_t)nchunks;
	l->crc_table_bytes = (uint32_t)round_page(4 * nchunks);
	if (l->crc_table_bytes < DUMP_PAGE)
		l->crc_table_bytes = DUMP_PAGE;

	l->crc_table_offset = l->dir_offset + l->dir_bytes;
	l->body_offset = l->crc_table_offset + l->crc_table_bytes;
	off = l->body_offset;
	for (uint32_t i = 0; i < c->nareas; i++) {
		l->area_offset[i] = off;
		off += round_page(c->areas[i].len);
	}
	l->end_offset = l->body_offset + l->body_bytes;
	l->trailer_offset = partition_bytes - block_size;
	l->extent_bytes = l->end_offset + DUMP_PAGE - DUMP_LEADER_OFFSET + block_size;

	if (partition_bytes < block_size || l->end_offset + DUMP_PAGE > l->trailer_offset)
		return ENOSPC;
	return 0;
}

static void fail(struct writer *w, int err, const char *stage, uint64_t offset)
{
	if (w->res->error)
		return;	/* keep the first failure */
	w->res->error = err;
	w->res->stage = stage;
	w->res->offset = offset;
}

/*
 * The one place a write leaves the writer. Check 1 of 2 (the driver does check 2): the write
 * is block aligned, within the transfer limits, inside the partition, and inside the dump
 * extent [65536, end_offset + 4096) or exactly the trailer block.
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
	in_extent = off >= DUMP_LEADER_OFFSET && end <= l->end_offset + DUMP_PAGE;
	is_trailer = off == l->trailer_offset && total == bs;
	if (total == 0 || off % bs || total % bs || total < w->min_transfer ||
	    total > w->hdr.max_transfer || end < off || end > l->partition_bytes ||
	    !(in_extent || is_trailer)) {
		fail(w, EINVAL, stage, off);
		return EINVAL;
	}
	err = devdump_write(w->dev, off, iov, iovcnt, fsync, &w->stat);
	if (err)
		fail(w, err, w->stat.op == DUMPIO_OP_FLUSH ? "flush" : stage, off);
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

static void header_seal(struct writer *w, uint32_t status)
{
	w->hdr.status = status;
	w->hdr.body_written = w->body_written;
	w->hdr.tsc_done = rdtsc();
	w->hdr.header_crc = crc32c(&w->hdr, offsetof(struct dump_header, header_crc));
	memset(header_block, 0, sizeof(header_block));
	memcpy(header_block, &w->hdr, sizeof(w->hdr));
}

static int write_leader(struct writer *w, const char *stage)
{
	return write_buffer(w, DUMP_LEADER_OFFSET, header_block, DUMP_PAGE, false, stage);
}

static int write_trailer(struct writer *w, bool fsync, const char *stage)
{
	return write_buffer(w, w->lay->trailer_offset, header_block, w->lay->block_size, fsync, stage);
}

static int progress_leader(struct writer *w)
{
	int err;

	header_seal(w, DUMP_STATUS_IN_PROGRESS);
	err = write_leader(w, "progress-leader");
	if (!err) {
		w->leader_body_written = w->body_written;
		result_line("PROGRESS written=%llu total=%llu", (unsigned long long)w->body_written,
			    (unsigned long long)w->lay->body_bytes);
	}
	return err;
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
	h->body_bytes = l->body_bytes;
	h->end_offset = l->end_offset;
	h->chunk_size = l->chunk_size;
	h->component_count = w->c->ncomponents;
	h->area_count = w->c->nareas;
	h->max_transfer = q->max_tsize;
	h->min_transfer = q->min_tsize;
	h->ram_bytes = p->ram_bytes;
	h->tsc_hz = p->tsc_hz;
	h->tsc_crash = cr->tsc_crash;
	memcpy(h->registers, cr->registers, sizeof(h->registers));
}

static void build_directory(struct writer *w)
{
	const struct dmp_collection *c = w->c;
	struct dump_dir_header *dh = (void *)dir_buf;
	struct dump_component_entry *ce = (void *)(dir_buf + 64);
	struct dump_area_entry *ae = (void *)(dir_buf + 64 + 64 * c->ncomponents);

	memset(dir_buf, 0, w->lay->dir_bytes);
	memcpy(dh->magic, "DBEDDIR", 8);
	dh->component_count = c->ncomponents;
	dh->area_count = c->nareas;
	dh->component_entry_size = sizeof(struct dump_component_entry);
	dh->area_entry_size = sizeof(struct dump_area_entry);

	for (uint32_t i = 0; i < c->ncomponents; i++) {
		memcpy(ce[i].name, c->components[i].name, sizeof(ce[i].name));
		ce[i].kind = c->components[i].kind;
		ce[i].status = c->components[i].status;
		ce[i].reason = c->components[i].reason;
		ce[i].first_area = c->components[i].first_area;
		ce[i].area_count = c->components[i].area_count;
	}
	for (uint32_t i = 0; i < c->nareas; i++) {
		memcpy(ae[i].name, c->areas[i].name, sizeof(ae[i].name));
		ae[i].phys_addr = c->areas[i].phys;
		ae[i].length = c->areas[i].len;
		ae[i].disk_offset = w->lay->area_offset[i];
		ae[i].component = c->areas[i].component;
		ae[i].flags = c->areas[i].flags;
	}
	w->hdr.dir_crc = crc32c(dir_buf, w->lay->dir_bytes);
}

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
			table[w->chunks_done++] = ~w->chunk_crc;
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

static void chunk_crc_finish(struct writer *w)
{
	uint32_t *table = (uint32_t *)crc_table;

	if (w->chunk_fill) {
		table[w->chunks_done++] = ~w->chunk_crc;
		w->chunk_crc = CRC32C_INIT;
		w->chunk_fill = 0;
	}
}

/*
 * dst = the first `copy` bytes at src, then zeros up to `len` bytes (the third argument packs
 * len << 32 | copy; len is at most STAGE_SIZE). Runs in ring 3 (docs/guest.md, "Ring 3"): on kvm-pvm ring 0's
 * rep movsb is emulated byte by byte, which made the staging copy of the .data/.bss area cost
 * about 1.5 us a byte. Staging buffers, source areas and the string functions are all
 * identity-mapped and user-accessible.
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

static int write_area(struct writer *w, const struct dmp_area *a, uint64_t disk_offset)
{
	uint64_t rounded = round_page(a->len);
	uint64_t full = a->len & ~(uint64_t)(DUMP_PAGE - 1);	/* whole pages of data */
	bool is_volatile = a->flags & AREA_FLAG_VOLATILE;

	for (uint64_t pos = 0; pos < rounded;) {
		uint64_t to_boundary = DUMP_PROGRESS_STEP - w->body_written % DUMP_PROGRESS_STEP;
		uint64_t n = rounded - pos;
		struct iovec iov[2];
		int iovcnt = 0, err;

		if (n > w->max_piece)
			n = w->max_piece;
		if (n > to_boundary)
			n = to_boundary;

		if (is_volatile) {
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
				uint64_t tail = a->len - full;

				stage_copy(tail_page, a->phys + full, tail, DUMP_PAGE);
				iov[iovcnt++] = (struct iovec){ tail_page, DUMP_PAGE };
			}
		}
		for (int i = 0; i < iovcnt; i++)
			chunk_crc_feed(w, iov[i].iov_base, iov[i].iov_len);

		err = write_at(w, disk_offset + pos, iov, iovcnt, false, "body");
		if (err)
			return err;
		pos += n;
		w->body_written += n;
		if (w->body_written % DUMP_PROGRESS_STEP == 0 && w->body_written != w->leader_body_written) {
			err = progress_leader(w);
			if (err)
				return err;
		}
	}
	return 0;
}

static void write_failed_headers(struct writer *w)
{
	w->hdr.failure = (uint32_t)w->res->error;
	w->hdr.failure_offset = w->res->offset;
	header_seal(w, DUMP_STATUS_FAILED);
	/* Best effort: each may fail too; neither changes the reported failure. */
	write_leader(w, "failed-leader");
	write_trailer(w, true, "failed-trailer");
}

int dump_write(struct dumpdev *dev, const struct dmp_query *q, const struct dmp_collection *c,
	       const struct crash_record *cr, const struct dump_params *p, struct dump_result *res)
{
	struct writer *w = &W;
	uint64_t start = rdtsc();
	int err;

	memset(w, 0, sizeof(*w));
	memset(res, 0, sizeof(*res));
	res->stage = "none";
	w->dev = dev;
	w->c = c;
	w->lay = &layout;
	w->res = res;
	w->min_transfer = q->min_tsize;
	w->max_piece = q->max_tsize & ~(uint64_t)(DUMP_PAGE - 1);
	w->chunk_crc = CRC32C_INIT;

	err = dump_layout_plan(c, dev->part_bytes, dev->block_size, &layout);
	res->extent_bytes = layout.extent_bytes;
	res->body_bytes = layout.body_bytes;
	if (err) {
		printf("dump: needs %llu bytes of partition, have %llu\n",
		       (unsigned long long)(layout.end_offset + DUMP_PAGE + dev->block_size),
		       (unsigned long long)dev->part_bytes);
		fail(w, err, "plan", 0);
		return err;
	}
	if (w->max_piece == 0 || q->min_tsize != dev->block_size || q->min_tsize > DUMP_PAGE) {
		fail(w, EINVAL, "query", 0);
		return EINVAL;
	}
	header_init(w, q, cr, p);
	build_directory(w);
	memset(crc_table, 0, layout.crc_table_bytes);

	printf("dump: %u components, %u areas, body %llu bytes, chunk %u, extent %llu bytes\n",
	       c->ncomponents, c->nareas, (unsigned long long)layout.body_bytes, layout.chunk_size,
	       (unsigned long long)layout.extent_bytes);

	/* 1. leader, directory */
	err = progress_leader(w);
	if (!err)
		err = write_buffer(w, layout.dir_offset, dir_buf, layout.dir_bytes, false, "directory");

	/* 2. body */
	for (uint32_t i = 0; !err && i < c->nareas; i++)
		err = write_area(w, &c->areas[i], layout.area_offset[i]);
	if (!err && w->body_written != w->leader_body_written)
		err = progress_leader(w);

	/* 3. CRC table */
	if (!err) {
		chunk_crc_finish(w);
		if (w->chunks_done != layout.nchunks) {
			fail(w, EFAULT, "crc-table", layout.crc_table_offset);
			err = EFAULT;
		}
	}
	if (!err) {
		w->hdr.crc_table_crc = crc32c(crc_table, layout.crc_table_bytes);
		err = write_buffer(w, layout.crc_table_offset, crc_table, layout.crc_table_bytes, false,
				   "crc-table");
	}

	/* 4. end marker, 5. flush */
	if (!err) {
		memset(&end_marker, 0, sizeof(end_marker));
		memcpy(end_marker.magic, "DBEDEND", 8);
		end_marker.version = DUMP_VERSION;
		end_marker.generation = w->hdr.generation;
		memcpy(end_marker.dump_id, w->hdr.dump_id, 16);
		end_marker.body_bytes = layout.body_bytes;
		end_marker.nchunks = layout.nchunks;
		end_marker.crc_table_crc = w->hdr.crc_table_crc;
		end_marker.crc = crc32c(&end_marker, offsetof(struct dump_end_marker, crc));
		err = write_buffer(w, layout.end_offset, &end_marker, DUMP_PAGE, true, "end-marker");
	}

	/* 6. final leader and trailer, identical, 7. flush */
	if (!err) {
		header_seal(w, DUMP_STATUS_COMPLETE);
		err = write_leader(w, "final-leader");
		if (!err)
			err = write_trailer(w, true, "trailer");
	}

	if (err) {
		printf("dump: failed in %s at offset %llu: %s (device status 0x%x, request status 0x%x)\n",
		       res->stage, (unsigned long long)res->offset, errno_name(res->error),
		       w->stat.device_status, w->stat.request_status);
		write_failed_headers(w);
		return res->error;
	}

	uint64_t us = tsc_to_us(rdtsc() - start);
	printf("dump: complete, %llu bytes of body in %llu ms\n", (unsigned long long)layout.body_bytes,
	       (unsigned long long)(us / 1000));
	return 0;
}
