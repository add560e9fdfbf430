/*
 * The sample dump components of docs/components.md ("The sample components"). Each one
 * exercises one feature of the facility's interfaces, and every byte it hands to the dump
 * follows the documented pattern, so the harness (harness/dumpbed/oracles/samples.py) can predict the whole
 * dump from the component names alone.
 *
 * Data the samples keep in .bss is filled with the pattern when the sample is registered (it is
 * in memory at the crash, like any kernel data, and compared with it); staged data (the global
 * buffer, a private staging buffer) is generated at START time into the buffer the facility
 * passed. Tables live in .bss (part of the pinned kernel image), except ras-shared's, which
 * live in the shared staging buffer as the reference intends it to be used (metadata only).
 * What the routines write while the dump runs - the tables they build at START or AGAIN, their
 * positions, their DONE counts - is dump path state (lib/dumpstate.h); what they set up at
 * registration is not.
 */
#include "test/samples.h"
#include "arch/x86/boot.h"
#include "arch/x86/pin.h"
#include "arch/x86/usermode.h"
#include "dump/dumptable.h"
#include "dump/ras.h"
#include "kern/memmap.h"
#include "kern/multiboot.h"
#include "lib/crc.h"
#include "lib/dumpstate.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"

#define PAGE		4096u

/* A classic table with room for N entries: the same layout as struct cdt (head, then the
 * entries at the flexible member's offset). */
#define CDT_STORAGE(n)	struct { struct cdt_head head; struct cdt_entry entry[n]; }
_Static_assert(sizeof(struct cdt) == sizeof(CDT_STORAGE(1)) - sizeof(struct cdt_entry),
	       "CDT_STORAGE lays out entries where struct cdt's flexible member is");

#define CDT_LEN(n)	((uint32_t)(sizeof(struct cdt_head) + (n) * sizeof(struct cdt_entry)))

/* ---- the pattern ------------------------------------------------------------------------ */

uint64_t samples_seed(const char *name, uint32_t k)
{
	return (uint64_t)crc32c(name, strlen(name)) << 32 | k;
}

static uint64_t pattern_fill_here(uint64_t seed, uint64_t dst, uint64_t len)
{
	uint64_t x = seed ^ 0x9E3779B97F4A7C15ull;
	uint8_t *p = (uint8_t *)(uintptr_t)dst;

	while (len) {
		uint64_t word;
		unsigned n = len < 8 ? (unsigned)len : 8;

		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		word = x * 0x2545F4914F6CDD1Dull;
		for (unsigned i = 0; i < n; i++)	/* little-endian */
			p[i] = (uint8_t)(word >> (8 * i));
		p += n;
		len -= n;
	}
	return 0;
}

/* A pure loop over memory: in ring 3, which runs natively where ring 0 is emulated
 * (arch/x86/user_entry.S); it fills ~150 KiB at boot and the staging buffers in the dump. */
void pattern_fill_seed(uint64_t seed, void *dst, uint64_t len)
{
	run_unprivileged(pattern_fill_here, seed, (uintptr_t)dst, len);
}

/* ---- bookkeeping ------------------------------------------------------------------------ */

enum sample_id {
	S_CLASSIC, S_UNLIMITED, S_GLOBAL, S_LEVELS, S_PRIVATE, S_SHARED, S_RTNFAIL, S_NEGATIVE,
	S_EARLY, S_OFF, S_PINVIOLATOR, NSAMPLES
};

/* What each sample is, and what it is set to (RAS: as its callback last set it). */
struct sample_state {
	const char *name;
	const char *interface;		/* "dmp_ctl" or "ras" */
	const char *features;
	bool registered;
	bool ras;
	ras_block_t rb;
	bool enabled;
	uint32_t level;
	size_t global_request;		/* its DMPCTL_ADD dmpc_bsize, 0 if none */
};

struct sample {
	struct sample_state st;
	const char *shortname;
	bool in_default;
	uint32_t crc;			/* crc32c(name): the high half of every area's seed */
};

static struct sample samples[NSAMPLES] = {
	[S_CLASSIC]	= { { "smp-classic", "dmp_ctl", "classic" }, "cls", true },
	[S_UNLIMITED]	= { { "smp-unlimited", "dmp_ctl", "unlimited" }, "unl", true },
	[S_GLOBAL]	= { { "smp-global", "dmp_ctl", "global-buffer,call-on-restart,staged" }, "glb", true },
	[S_LEVELS]	= { { "ras-levels", "ras", "classic,levels,serialio" }, "lvl", true },
	[S_PRIVATE]	= { { "ras-private", "ras", "private-staging,staged" }, "prv", true },
	[S_SHARED]	= { { "ras-shared", "ras", "unlimited,shared-staging" }, "shr", true },
	[S_RTNFAIL]	= { { "smp-rtnfail", "dmp_ctl", "classic,rtnfailure" }, "rtf", true },
	[S_NEGATIVE]	= { { "ras-negative", "ras", "start-negative" }, "neg", true },
	[S_EARLY]	= { { "ras-early", "ras", "unlimited,again-negative" }, "erl", true },
	[S_OFF]		= { { "ras-off", "ras", "switched-off" }, "off", true },
	[S_PINVIOLATOR]	= { { "smp-pinviolator", "dmp_ctl", "classic,pin-violation" }, "pin", false },
};

/* DONE / FINISHED calls seen, per sample: counted while the dump runs. */
static uint32_t finished[NSAMPLES] __dumpstate;

static uint64_t seed_of(enum sample_id id, uint32_t k)
{
	return (uint64_t)samples[id].crc << 32 | k;
}

static void set_entry(struct cdt_entry *e, enum sample_id id, uint32_t k, void *ptr, uint64_t len,
		      uint32_t flags)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->d_name, sizeof(e->d_name), "%s.%u", samples[id].shortname, k);
	e->d_len = len;
	e->d_ptr = ptr;
	e->d_flags = flags;
}

static void init_head(struct cdt_head *h, enum sample_id id, uint32_t nentries)
{
	memset(h, 0, sizeof(*h));
	h->cdt_magic = DMP_MAGIC;
	strncpy_pad(h->cdt_name, samples[id].st.name, sizeof(h->cdt_name));
	h->cdt_kind = 0;	/* COMPONENT_KIND_OTHER */
	h->cdt_len = CDT_LEN(nentries);
}

static void init_head_u(struct cdt_u *u, enum sample_id id, struct cdt_entry *entries, uint32_t n)
{
	u->cdtu_magic = DMP_MAGIC_U;
	strncpy_pad(u->cdtu_name, samples[id].st.name, sizeof(u->cdtu_name));
	u->cdtu_nentries = n;
	u->cdtu_entries = entries;
}

static uint32_t clamp_level(uint64_t level)
{
	return level > CD_LVL_MAX ? CD_LVL_MAX : (uint32_t)level;
}

/* ---- smp-classic: 3 areas in .bss, a classic table --------------------------------------- */

static const uint32_t cls_len[3] = { 4096, 10000, 512 };
static uint8_t cls_area0[4096] __attribute__((aligned(PAGE)));
static uint8_t cls_area1[10000] __attribute__((aligned(64)));
static uint8_t cls_area2[512] __attribute__((aligned(64)));
static uint8_t *const cls_area[3] = { cls_area0, cls_area1, cls_area2 };
static CDT_STORAGE(3) cls_cdt;
static dmp_sizeest_t cls_estimate;

static void cls_setup(void)
{
	init_head(&cls_cdt.head, S_CLASSIC, 3);
	cls_estimate = 0;
	for (uint32_t k = 0; k < 3; k++) {
		pattern_fill_seed(seed_of(S_CLASSIC, k), cls_area[k], cls_len[k]);
		set_entry(&cls_cdt.entry[k], S_CLASSIC, k, cls_area[k], cls_len[k], 0);
		cls_estimate += cls_len[k];
	}
}

static void *cls_routine(int op, void *buf)
{
	switch (op) {
	case DMPRTN_START:
		return &cls_cdt;
	case DMPRTN_ESTIMATE:
		return &cls_estimate;
	case DMPRTN_DONE:
		finished[S_CLASSIC]++;
		return 0;
	default:
		return 0;
	}
}

/* ---- smp-unlimited: 300 small areas, 16 per DMP_MAGIC_U table ----------------------------- */

#define UNL_AREAS	300
#define UNL_PER_TABLE	16
#define UNL_LEN(k)	(64u + 8u * ((k) % 16u))
#define UNL_BYTES	37008u		/* sum of UNL_LEN(k), k < 300 */

static uint8_t unl_data[UNL_BYTES] __attribute__((aligned(PAGE)));
static uint32_t unl_offset[UNL_AREAS];
static struct cdt_u unl_cdt __dumpstate;
static struct cdt_entry unl_entry[UNL_PER_TABLE] __dumpstate;
static uint32_t unl_next __dumpstate;	/* first area of the next table */
static dmp_sizeest_t unl_estimate;

static uint64_t unl_setup_here(uint64_t unused0, uint64_t unused1, uint64_t unused2)
{
	uint32_t off = 0;

	for (uint32_t k = 0; k < UNL_AREAS; k++) {
		unl_offset[k] = off;
		pattern_fill_here(seed_of(S_UNLIMITED, k), (uintptr_t)(unl_data + off), UNL_LEN(k));
		off += UNL_LEN(k);
	}
	return off;
}

/* All 300 areas in one trip to ring 3 (a trip per area took 25 ms where ring 0 is emulated). */
static void unl_setup(void)
{
	unl_estimate = run_unprivileged(unl_setup_here, 0, 0, 0);
}

/* The next table's entries (up to 16); how many. Ring 3: where ring 0 is emulated, the names'
 * snprintf there cost some 6 ms a table, the 19 tables of a dump 0.13 s of its calls. */
static uint64_t unl_entries_here(uint64_t unused0, uint64_t unused1, uint64_t unused2)
{
	uint32_t n = 0;

	while (n < UNL_PER_TABLE && unl_next < UNL_AREAS) {
		uint32_t k = unl_next++;

		set_entry(&unl_entry[n++], S_UNLIMITED, k, unl_data + unl_offset[k], UNL_LEN(k), 0);
	}
	return n;
}

/* The next table of up to 16 areas, or NULL when all 300 were handed out. */
static void *unl_table(void)
{
	uint32_t n = (uint32_t)run_unprivileged(unl_entries_here, 0, 0, 0);

	if (!n)
		return 0;
	init_head_u(&unl_cdt, S_UNLIMITED, unl_entry, n);
	return &unl_cdt;
}

static void *unl_routine(int op, void *buf)
{
	switch (op) {
	case DMPRTN_START:	/* also on a restart: everything again from the first area */
		unl_next = 0;
		return unl_table();
	case DMPRTN_AGAIN:
		return unl_table();
	case DMPRTN_ESTIMATE:
		return &unl_estimate;
	case DMPRTN_DONE:
		finished[S_UNLIMITED]++;
		return 0;
	default:
		return 0;
	}
}

/* ---- smp-global: 12288 bytes staged in the global buffer ------------------------------------ */

#define GLB_BSIZE	16384u
#define GLB_BYTES	12288u

static CDT_STORAGE(1) glb_cdt __dumpstate;
static dmp_sizeest_t glb_estimate = GLB_BYTES;

static void *glb_routine(int op, void *buf)
{
	size_t bytes = 0;

	switch (op) {
	case DMPRTN_START:
		if (!buf || dmp_global_buffer(&bytes) != buf || bytes < GLB_BYTES)
			return 0;	/* no (big enough) buffer: nothing to show, EXCLUDED */
		pattern_fill_seed(seed_of(S_GLOBAL, 0), buf, GLB_BYTES);
		init_head(&glb_cdt.head, S_GLOBAL, 1);
		set_entry(&glb_cdt.entry[0], S_GLOBAL, 0, buf, GLB_BYTES, CDT_STAGED | CDT_VOLATILE);
		return &glb_cdt;
	case DMPRTN_ESTIMATE:
		return &glb_estimate;
	case DMPRTN_DONE:
		finished[S_GLOBAL]++;
		return 0;
	default:
		return 0;
	}
}

/* ---- the RAS samples' common part --------------------------------------------------------- */

/*
 * The administrator's commands (ON, OFF, LVL) are performed with the matching action, as the
 * reference describes; the sample's state mirrors what the facility accepted. Returns true if
 * `cmd` was one of them (*rc is then the callback's return value).
 */
static bool ras_admin_cmd(struct sample *s, ras_block_t rb, int cmd, void *arg, long *rc)
{
	uint32_t level;

	switch (cmd) {
	case RASCD_SDMP_ON:
		*rc = ras_control(rb, RASCD_SET_SDMP_ON, 0);
		if (!*rc)
			s->st.enabled = true;
		return true;
	case RASCD_SDMP_OFF:
		*rc = ras_control(rb, RASCD_SET_SDMP_OFF, 0);
		if (!*rc)
			s->st.enabled = false;
		return true;
	case RASCD_SDMP_LVL:
		level = (uint32_t)(uintptr_t)arg;
		*rc = ras_control(rb, RASCD_SET_SDMP_LVL, level);
		if (!*rc)
			s->st.level = level;
		return true;
	case RASCD_SDMP_FINISHED:
		finished[s - samples]++;
		*rc = 0;
		return true;
	default:
		return false;
	}
}

/* ---- ras-levels: v + 1 areas of 1024 (k + 1) bytes, classic table, SERIALIO ----------------- */

#define LVL_AREAS	(CD_LVL_MAX + 1)
#define LVL_LEN(k)	(1024u * ((k) + 1))
#define LVL_OFF(k)	(1024u * (k) * ((k) + 1) / 2)
#define LVL_BYTES	LVL_OFF(LVL_AREAS)

static uint8_t lvl_data[LVL_BYTES] __attribute__((aligned(PAGE)));
static CDT_STORAGE(LVL_AREAS) lvl_cdt __dumpstate;

static uint64_t lvl_setup_here(uint64_t unused0, uint64_t unused1, uint64_t unused2)
{
	for (uint32_t k = 0; k < LVL_AREAS; k++)
		pattern_fill_here(seed_of(S_LEVELS, k), (uintptr_t)(lvl_data + LVL_OFF(k)), LVL_LEN(k));
	return 0;
}

/* Every area in one trip to ring 3 (as unl_setup). */
static void lvl_setup(void)
{
	run_unprivileged(lvl_setup_here, 0, 0, 0);
}

static long lvl_callback(ras_block_t rb, int cmd, void *arg, void *priv)
{
	sysdump_estimate_t *se = arg;
	sdmp_start_t *st = arg;
	uint32_t n;
	long rc;

	if (ras_admin_cmd(priv, rb, cmd, arg, &rc))
		return rc;
	switch (cmd) {
	case RASCD_SDMP_ESTIMATE:
		se->se_value = LVL_OFF(clamp_level(se->se_level) + 1);
		return 0;
	case RASCD_SDMP_START:
		n = clamp_level(st->sdmpst_level) + 1;
		init_head(&lvl_cdt.head, S_LEVELS, n);
		for (uint32_t k = 0; k < n; k++)
			set_entry(&lvl_cdt.entry[k], S_LEVELS, k, lvl_data + LVL_OFF(k), LVL_LEN(k), 0);
		st->sdmpst_table = &lvl_cdt;
		return 0;
	case RASCD_SDMP_AGAIN:	/* never for a classic table */
		st->sdmpst_table = 0;
		return 0;
	default:
		return 0;
	}
}

/* ---- ras-private: 16384 (v + 1) bytes staged in a private 256 KiB staging buffer ------------ */

#define PRV_STAGING	262144u
#define PRV_BYTES(v)	(16384u * ((v) + 1))

static CDT_STORAGE(1) prv_cdt __dumpstate;

static long prv_callback(ras_block_t rb, int cmd, void *arg, void *priv)
{
	sysdump_estimate_t *se = arg;
	sdmp_start_t *st = arg;
	uint32_t bytes;
	long rc;

	if (ras_admin_cmd(priv, rb, cmd, arg, &rc))
		return rc;
	switch (cmd) {
	case RASCD_SDMP_ESTIMATE:
		se->se_value = PRV_BYTES(clamp_level(se->se_level));
		return 0;
	case RASCD_SDMP_START:
		bytes = PRV_BYTES(clamp_level(st->sdmpst_level));
		if (!st->sdmpst_staging || st->sdmpst_staging_bytes < bytes)
			return -1;	/* no staging space: leave me out */
		pattern_fill_seed(seed_of(S_PRIVATE, 0), st->sdmpst_staging, bytes);
		init_head(&prv_cdt.head, S_PRIVATE, 1);
		set_entry(&prv_cdt.entry[0], S_PRIVATE, 0, st->sdmpst_staging, bytes,
			  CDT_STAGED | CDT_VOLATILE);
		st->sdmpst_table = &prv_cdt;
		return 0;
	case RASCD_SDMP_AGAIN:
		st->sdmpst_table = 0;
		return 0;
	default:
		return 0;
	}
}

/* ---- ras-shared: 4 (v + 1) areas of 2048 bytes, 3 per unlimited table kept in the shared
 * staging buffer (with the position between START and AGAIN) ----------------------------------- */

#define SHR_STAGING	65536u
#define SHR_PER_TABLE	3
#define SHR_LEN		2048u
#define SHR_AREAS(v)	(4u * ((v) + 1))
#define SHR_MAX_AREAS	SHR_AREAS(CD_LVL_MAX)

struct shr_meta {
	uint32_t next;			/* first area of the next table */
	uint32_t total;			/* areas at this dump's level */
	struct cdt_u table;
	struct cdt_entry entry[SHR_PER_TABLE];
};
_Static_assert(sizeof(struct shr_meta) <= SHR_STAGING, "ras-shared's metadata fits its request");

static uint8_t shr_data[SHR_MAX_AREAS * SHR_LEN] __attribute__((aligned(PAGE)));
static struct shr_meta *shr_meta_at_start __dumpstate;	/* in case AGAIN comes without the buffer */

static uint64_t shr_setup_here(uint64_t unused0, uint64_t unused1, uint64_t unused2)
{
	for (uint32_t k = 0; k < SHR_MAX_AREAS; k++)
		pattern_fill_here(seed_of(S_SHARED, k), (uintptr_t)(shr_data + k * SHR_LEN), SHR_LEN);
	return 0;
}

/* Every area in one trip to ring 3 (as unl_setup). */
static void shr_setup(void)
{
	run_unprivileged(shr_setup_here, 0, 0, 0);
}

static void *shr_table(struct shr_meta *m)
{
	uint32_t n = 0;

	while (n < SHR_PER_TABLE && m->next < m->total) {
		uint32_t k = m->next++;

		set_entry(&m->entry[n++], S_SHARED, k, shr_data + k * SHR_LEN, SHR_LEN, 0);
	}
	if (!n)
		return 0;
	init_head_u(&m->table, S_SHARED, m->entry, n);
	return &m->table;
}

static long shr_callback(ras_block_t rb, int cmd, void *arg, void *priv)
{
	sysdump_estimate_t *se = arg;
	sdmp_start_t *st = arg;
	struct shr_meta *m;
	long rc;

	if (ras_admin_cmd(priv, rb, cmd, arg, &rc))
		return rc;
	switch (cmd) {
	case RASCD_SDMP_ESTIMATE:
		se->se_value = (uint64_t)SHR_AREAS(clamp_level(se->se_level)) * SHR_LEN;
		return 0;
	case RASCD_SDMP_START:
		if (!st->sdmpst_staging || st->sdmpst_staging_bytes < sizeof(struct shr_meta))
			return -1;
		m = shr_meta_at_start = st->sdmpst_staging;
		m->next = 0;
		m->total = SHR_AREAS(clamp_level(st->sdmpst_level));
		st->sdmpst_table = shr_table(m);
		return 0;
	case RASCD_SDMP_AGAIN:
		m = st->sdmpst_staging ? st->sdmpst_staging : shr_meta_at_start;
		if (!m)
			return -1;
		st->sdmpst_table = shr_table(m);
		return 0;
	default:
		return 0;
	}
}

/* ---- smp-rtnfail: reports DMPCTL_RTNFAILURE, then dumps what it has ------------------------ */

#define RTF_RV		(-5)
#define RTF_HANDLE	0xD0B5EDF00Dull

static uint8_t rtf_data[4096] __attribute__((aligned(PAGE)));
/* Stands for data the component could not get hold of (say, an adapter's log): its address is
 * what DMPCTL_RTNFAILURE reports as dmpcf_vaddr. Never dumped. */
static uint8_t rtf_missing[512];
static CDT_STORAGE(1) rtf_cdt;
static dmp_sizeest_t rtf_estimate = sizeof(rtf_data);
static int rtf_report_result __dumpstate;	/* what the last RTNFAILURE report returned */

static void *rtf_routine(int op, void *buf);

static void rtf_setup(void)
{
	pattern_fill_seed(seed_of(S_RTNFAIL, 0), rtf_data, sizeof(rtf_data));
	init_head(&rtf_cdt.head, S_RTNFAIL, 1);
	set_entry(&rtf_cdt.entry[0], S_RTNFAIL, 0, rtf_data, sizeof(rtf_data), 0);
}

static void *rtf_routine(int op, void *buf)
{
	struct dmpctl_data report;

	switch (op) {
	case DMPRTN_START:
		memset(&report, 0, sizeof(report));
		report.dmpc_magic = DMPC_MAGIC1;
		report.dmpc_func = rtf_routine;
		report.dmpc_name = samples[S_RTNFAIL].st.name;
		report.dmpcf_rV = RTF_RV;
		report.dmpcf_vaddr = rtf_missing;
		report.dmpcf_handle = RTF_HANDLE;
		rtf_report_result = dmp_ctl(DMPCTL_RTNFAILURE, &report);
		return &rtf_cdt;
	case DMPRTN_ESTIMATE:
		return &rtf_estimate;
	case DMPRTN_DONE:
		finished[S_RTNFAIL]++;
		return 0;
	default:
		return 0;
	}
}

/* ---- ras-negative: START returns -1 ------------------------------------------------------- */

static long neg_callback(ras_block_t rb, int cmd, void *arg, void *priv)
{
	sysdump_estimate_t *se = arg;
	long rc;

	if (ras_admin_cmd(priv, rb, cmd, arg, &rc))
		return rc;
	switch (cmd) {
	case RASCD_SDMP_ESTIMATE:
		se->se_value = 4096;
		return 0;
	case RASCD_SDMP_START:
	case RASCD_SDMP_AGAIN:
		return -1;
	default:
		return 0;
	}
}

/* ---- ras-early: unlimited tables of 4 pages; the second AGAIN returns -2 -------------------- */

#define ERL_PER_TABLE	4
#define ERL_TABLES	3		/* what it believes it has (the estimate) */
#define ERL_AREAS	(ERL_PER_TABLE * ERL_TABLES)

static uint8_t erl_data[ERL_AREAS][4096] __attribute__((aligned(PAGE)));
static struct cdt_u erl_cdt __dumpstate;
static struct cdt_entry erl_entry[ERL_PER_TABLE] __dumpstate;
static uint32_t erl_tables __dumpstate;	/* tables handed out in this dump */

static uint64_t erl_setup_here(uint64_t unused0, uint64_t unused1, uint64_t unused2)
{
	for (uint32_t k = 0; k < ERL_AREAS; k++)
		pattern_fill_here(seed_of(S_EARLY, k), (uintptr_t)erl_data[k], sizeof(erl_data[k]));
	return 0;
}

/* Every area in one trip to ring 3 (as unl_setup). */
static void erl_setup(void)
{
	run_unprivileged(erl_setup_here, 0, 0, 0);
}

static long erl_callback(ras_block_t rb, int cmd, void *arg, void *priv)
{
	sysdump_estimate_t *se = arg;
	sdmp_start_t *st = arg;
	long rc;

	if (ras_admin_cmd(priv, rb, cmd, arg, &rc))
		return rc;
	switch (cmd) {
	case RASCD_SDMP_ESTIMATE:
		se->se_value = (uint64_t)ERL_AREAS * sizeof(erl_data[0]);
		return 0;
	case RASCD_SDMP_START:
		erl_tables = 0;
		/* fall through */
	case RASCD_SDMP_AGAIN:
		if (erl_tables == 2)
			return -2;	/* it "loses" its third table */
		for (uint32_t i = 0; i < ERL_PER_TABLE; i++) {
			uint32_t k = erl_tables * ERL_PER_TABLE + i;

			set_entry(&erl_entry[i], S_EARLY, k, erl_data[k], sizeof(erl_data[k]), 0);
		}
		init_head_u(&erl_cdt, S_EARLY, erl_entry, ERL_PER_TABLE);
		erl_tables++;
		st->sdmpst_table = &erl_cdt;
		return 0;
	default:
		return 0;
	}
}

/* ---- ras-off: switched off at boot; if switched on (dumpctl on ras-off), one page ---------- */

static uint8_t off_data[4096] __attribute__((aligned(PAGE)));
static CDT_STORAGE(1) off_cdt;

static void off_setup(void)
{
	pattern_fill_seed(seed_of(S_OFF, 0), off_data, sizeof(off_data));
	init_head(&off_cdt.head, S_OFF, 1);
	set_entry(&off_cdt.entry[0], S_OFF, 0, off_data, sizeof(off_data), 0);
}

static long off_callback(ras_block_t rb, int cmd, void *arg, void *priv)
{
	sysdump_estimate_t *se = arg;
	sdmp_start_t *st = arg;
	long rc;

	if (ras_admin_cmd(priv, rb, cmd, arg, &rc))
		return rc;
	switch (cmd) {
	case RASCD_SDMP_ESTIMATE:
		se->se_value = sizeof(off_data);
		return 0;
	case RASCD_SDMP_START:
		st->sdmpst_table = &off_cdt;
		return 0;
	case RASCD_SDMP_AGAIN:
		st->sdmpst_table = 0;
		return 0;
	default:
		return 0;
	}
}

/* ---- smp-pinviolator: START writes to memory that is not pinned -------------------------- */

/*
 * The victim page: the first page 1 MiB past the end of the kernel image that is usable RAM
 * and not pinned (the pinned pool sits at the top of low RAM, far above it; the 1 MiB keeps
 * clear of whatever the loader left just past the image). It is neither pinned nor one of this
 * component's areas. The `ram` component, registered before the samples, dumps it earlier in
 * the same dump, so by our START the page is either unmapped again or mapped read-only for
 * that area: the write faults either way (not-present or write-protection), which is the
 * violation the facility must catch. The write only happens while pinning is enforced, so
 * nothing scribbles on RAM if the routine is ever called outside a dump.
 */
static uint8_t pin_data[4096] __attribute__((aligned(PAGE)));
static CDT_STORAGE(1) pin_cdt;
static dmp_sizeest_t pin_estimate = sizeof(pin_data);
static uint64_t pin_victim;

static bool usable_page(uint64_t phys)
{
	for (int i = 0; i < memmap_count(); i++) {
		const struct mem_region *r = memmap_region(i);

		if (r->type == MMAP_TYPE_USABLE && phys >= r->base && phys + PAGE <= r->base + r->len)
			return true;
	}
	return false;
}

static uint64_t pin_find_victim(void)
{
	uint64_t kend = ((uintptr_t)__kernel_end + PAGE - 1) & ~(uint64_t)(PAGE - 1);
	uint64_t end = memmap_ram_end();

	for (uint64_t p = kend + (1u << 20); p + PAGE <= end; p += PAGE)
		if (usable_page(p) && !pin_is_pinned(p, PAGE))
			return p;
	return 0;
}

static void pin_setup(void)
{
	pattern_fill_seed(seed_of(S_PINVIOLATOR, 0), pin_data, sizeof(pin_data));
	init_head(&pin_cdt.head, S_PINVIOLATOR, 1);
	set_entry(&pin_cdt.entry[0], S_PINVIOLATOR, 0, pin_data, sizeof(pin_data), 0);
	pin_victim = pin_find_victim();
}

static void *pin_routine(int op, void *buf)
{
	switch (op) {
	case DMPRTN_START:
		if (pin_enforcing() && pin_victim && !pin_is_pinned(pin_victim, PAGE))
			*(volatile uint64_t *)(uintptr_t)pin_victim = 0xBADC0FFEE0DDF00Dull;
		return &pin_cdt;
	case DMPRTN_ESTIMATE:
		return &pin_estimate;
	case DMPRTN_DONE:
		finished[S_PINVIOLATOR]++;
		return 0;
	default:
		return 0;
	}
}

/* ---- registration ------------------------------------------------------------------------- */

struct dmpctl_sample {
	dmp_func_t routine;
	int flags;
	size_t bsize;
};

static const struct dmpctl_sample dmpctl_samples[NSAMPLES] = {
	[S_CLASSIC]	= { cls_routine, 0, 0 },
	[S_UNLIMITED]	= { unl_routine, 0, 0 },
	[S_GLOBAL]	= { glb_routine, DMPFUNC_GLOBAL_BUFFER | DMPFUNC_CALL_ON_RESTART, GLB_BSIZE },
	[S_RTNFAIL]	= { rtf_routine, 0, 0 },
	[S_PINVIOLATOR]	= { pin_routine, 0, 0 },
};

struct ras_sample {
	ras_callback_t callback;
	bool serialio;
	uint64_t staging;		/* RASCD_SET_SDMP_STAGING bytes */
	uint64_t shared_staging;	/* RASCD_SET_SDMP_SHARED_STAGING bytes */
	bool switched_off;		/* the administrator turns it off at boot */
};

static const struct ras_sample ras_samples[NSAMPLES] = {
	[S_LEVELS]	= { lvl_callback, .serialio = true },
	[S_PRIVATE]	= { prv_callback, .staging = PRV_STAGING },
	[S_SHARED]	= { shr_callback, .shared_staging = SHR_STAGING },
	[S_NEGATIVE]	= { neg_callback },
	[S_EARLY]	= { erl_callback },
	[S_OFF]		= { off_callback, .switched_off = true },
};

static void (*const setups[NSAMPLES])(void) = {
	[S_CLASSIC] = cls_setup, [S_UNLIMITED] = unl_setup, [S_LEVELS] = lvl_setup,
	[S_SHARED] = shr_setup, [S_RTNFAIL] = rtf_setup, [S_EARLY] = erl_setup,
	[S_OFF] = off_setup, [S_PINVIOLATOR] = pin_setup,
};

static int register_dmpctl(enum sample_id id)
{
	const struct dmpctl_sample *d = &dmpctl_samples[id];
	struct dmpctl_data parm;
	int err;

	memset(&parm, 0, sizeof(parm));
	parm.dmpc_magic = DMPC_MAGIC1;
	parm.dmpc_flags = d->flags;
	parm.dmpc_func = d->routine;
	parm.dmpc_bsize = d->bsize;
	parm.dmpc_name = samples[id].st.name;
	err = dmp_ctl(DMPCTL_ADD, &parm);
	if (err)
		printf("samples: %s: dmp_ctl(DMPCTL_ADD) failed: %s\n", samples[id].st.name,
		       errno_name(err));
	else
		samples[id].st.global_request = d->bsize;
	return err;
}

static int ras_step(enum sample_id id, const char *what, int err)
{
	if (err)
		printf("samples: %s: %s failed: %s (%d)\n", samples[id].st.name, what, errno_name(err), err);
	return err;
}

static int register_ras(enum sample_id id)
{
	const struct ras_sample *r = &ras_samples[id];
	struct sample *s = &samples[id];
	ras_block_t rb = 0;
	int err;

	s->st.level = CD_LVL_NORMAL;	/* until the administrator sets one */
	err = ras_step(id, "ras_register", ras_register(&rb, s->st.name, r->callback, s));
	if (err)
		return err;
	s->st.rb = rb;
	/* SERIALIO is only accepted before ras_customize(). */
	if (r->serialio && (err = ras_step(id, "RASCD_SET_SDMP_SERIALIO",
					   ras_control(rb, RASCD_SET_SDMP_SERIALIO, 0))))
		return err;
	if (r->staging && (err = ras_step(id, "RASCD_SET_SDMP_STAGING",
					  ras_control(rb, RASCD_SET_SDMP_STAGING, r->staging))))
		return err;
	if (r->shared_staging &&
	    (err = ras_step(id, "RASCD_SET_SDMP_SHARED_STAGING",
			    ras_control(rb, RASCD_SET_SDMP_SHARED_STAGING, r->shared_staging))))
		return err;
	if ((err = ras_step(id, "RASCD_SET_SDMP_ON", ras_control(rb, RASCD_SET_SDMP_ON, 0))))
		return err;
	s->st.enabled = true;
	if ((err = ras_step(id, "ras_customize", ras_customize(rb))))
		return err;
	/* The administrator's side (as components=... or dumpctl would): RASCD_SDMP_OFF. */
	if (r->switched_off && (err = ras_step(id, "ras_admin_enable(off)", ras_admin_enable(rb, 0))))
		return err;
	return 0;
}

static int find_sample(const char *name, size_t len)
{
	for (int i = 0; i < NSAMPLES; i++)
		if (strlen(samples[i].st.name) == len && strncmp(samples[i].st.name, name, len) == 0)
			return i;
	return -1;
}

static bool token_is(const char *tok, size_t len, const char *word)
{
	return strlen(word) == len && strncmp(tok, word, len) == 0;
}

/* Which samples `list` names: a pure computation, run in ring 3 (parse_list). */
struct list_parse {
	const char *list;
	bool *want;
	const char *bad;	/* false: the unknown name */
	size_t bad_len;
};

static uint64_t parse_list_here(uint64_t arg, uint64_t unused1, uint64_t unused2)
{
	struct list_parse *lp = (struct list_parse *)(uintptr_t)arg;
	const char *p = lp->list;
	bool *want = lp->want;

	memset(want, 0, NSAMPLES * sizeof(want[0]));
	while (*p) {
		const char *tok, *end;
		size_t len;
		int id;

		while (*p == ',' || isspace(*p))
			p++;
		if (!*p)
			break;
		tok = p;
		while (*p && *p != ',')
			p++;
		end = p;
		while (end > tok && isspace(end[-1]))
			end--;
		len = (size_t)(end - tok);
		if (token_is(tok, len, "none"))
			continue;
		if (token_is(tok, len, "all") || token_is(tok, len, "default")) {
			bool all = token_is(tok, len, "all");

			for (int i = 0; i < NSAMPLES; i++)
				if (all || samples[i].in_default)
					want[i] = true;
			continue;
		}
		id = find_sample(tok, len);
		if (id < 0) {
			lp->bad = tok;
			lp->bad_len = len;
			return false;
		}
		want[id] = true;
	}
	return true;
}

/* Which samples `list` names; false (and a message) for an unknown name. The parsing is in
 * ring 3 (arch/x86/user_entry.S): milliseconds of string compares where ring 0 is emulated. */
static bool parse_list(const char *list, bool want[NSAMPLES])
{
	struct list_parse lp = { .list = list, .want = want };

	if (run_unprivileged(parse_list_here, (uintptr_t)&lp, 0, 0))
		return true;
	printf("components=%s: unknown component '%.*s'; known: default, all, none,", list, (int)lp.bad_len,
	       lp.bad);
	for (int i = 0; i < NSAMPLES; i++)
		printf(" %s", samples[i].st.name);
	printf("\n");
	return false;
}

/* Every sample's crc32c(name), in one trip to ring 3. */
static uint64_t name_crcs_here(uint64_t unused0, uint64_t unused1, uint64_t unused2)
{
	for (int i = 0; i < NSAMPLES; i++)
		samples[i].crc = ~crc32c_compute(CRC32C_INIT, samples[i].st.name, strlen(samples[i].st.name));
	return 0;
}

int samples_register(const char *components_list)
{
	bool want[NSAMPLES];
	int count = 0;

	if (!parse_list(components_list ? components_list : "default", want))
		return EINVAL;
	run_unprivileged(name_crcs_here, 0, 0, 0);

	/* In the table's order: the directory lists them so. */
	for (int i = 0; i < NSAMPLES; i++) {
		int err;

		if (!want[i] || samples[i].st.registered)
			continue;
		if (setups[i])
			setups[i]();
		samples[i].st.ras = ras_samples[i].callback != 0;
		err = samples[i].st.ras ? register_ras(i) : register_dmpctl(i);
		if (err)
			return err;
		samples[i].st.registered = true;
		count++;
	}
	printf("samples: %d registered (components=%s)", count,
	       components_list ? components_list : "default");
	if (samples[S_PINVIOLATOR].st.registered)
		printf(", smp-pinviolator writes to %#llx", (unsigned long long)pin_victim);
	printf("\n");
	return 0;
}
