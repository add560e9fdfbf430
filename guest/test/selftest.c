/*
 * The dump facility's API self-tests (docs/components.md): every return code and rule of
 * dmp_ctl and ras_control that can be seen outside a dump, on private registrations (names
 * "selftest-...") that are removed again; the real registrations are snapshotted first and
 * compared at the end. The facility's internal registry (dump/registry.h) is read, never
 * written, to see what the API calls did (a RAS block's level, its staging buffer).
 *
 * Two things cannot be undone, by design of the facility, and the order below keeps them
 * harmless:
 *   - the global buffer never shrinks: global-grow makes it 8 KiB larger for the rest of the
 *     system's life (every routine that asked for it just gets more room). The first-request
 *     test therefore runs before it, and a second `selftest` knows the first one grew it.
 *   - the shared staging buffer keeps its largest size while any requirement remains: with the
 *     ras-shared sample registered, ras-shared-largest leaves it 12 KiB larger (ras-shared only
 *     uses what it asked for). Without another requirement it is released again.
 * A dry start of a dump (dmp_begin, then dmp_finish: ESTIMATE calls only, nothing written)
 * shows what a dump records at its start. The pool-exhaustion tests run after both, take every free page of the pinned pool with
 * pinpool_alloc() and give them all back, so nothing they did outlives them.
 */
#include "test/selftest.h"

#include <stdarg.h>

#include "arch/x86/pin.h"
#include "dump/dumpsys.h"
#include "dump/dumptable.h"
#include "dump/facility.h"
#include "dump/format.h"
#include "dump/ras.h"
#include "dump/registry.h"
#include "lib/errno.h"
#include "kern/pinpool.h"
#include "lib/printf.h"
#include "lib/string.h"

#define PAGE		4096ull
#define PAGES(b)	(((b) + PAGE - 1) / PAGE)

static int npassed, nfailed;
/* This boot's earlier `selftest` runs grew the global buffer: its size no longer says what
 * the first request was. */
static bool global_grown_here;

static void result(const char *name, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void result(const char *name, bool ok, const char *fmt, ...)
{
	char detail[240];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	printf("SELFTEST %s %s %s\n", name, ok ? "pass" : "fail", detail);
	if (ok)
		npassed++;
	else
		nfailed++;
}

/* An error's name; several may appear in one printf. */
static const char *en(int err)
{
	static char buf[8][16];
	static int next;
	char *b = buf[next++ % 8];

	switch (err) {
	case EPERM:
		return "EPERM";
	case ENOMEM:
		return "ENOMEM";
	case ENOMEM_RAS_SDMP_STAGING:
		return "ENOMEM_RAS_SDMP_STAGING";
	}
	if (err == 0 || errno_name(err)[1] != '?')
		return errno_name(err);
	snprintf(b, sizeof(buf[0]), "%d", err);
	return b;
}

/* ---- private dmp_ctl routines: each logs the calls it gets and the buffer it was passed ---- */

/* Routines by role, so the tests read as what they do. */
enum {
	R_BASIC = 0,		/* add / EEXIST / del */
	R_RTNFAIL = 1,		/* RTNFAILURE without a dump */
	R_BADOP = 2,		/* never added */
	R_GLOBAL_A = 3,		/* global buffer users, and one that did not ask */
	R_GLOBAL_B = 4,
	R_GLOBAL_C = 5,
	R_NO_GLOBAL = 6,
	R_GLOBAL_NOMEM = 7,
	R_FILL = 8,		/* 8 ..: filling the table */
};

#define NROUTINES	(R_FILL + DMP_MAX_COMPONENTS)	/* the fill alone can fill the table */

struct routine_log {
	int calls[DMPRTN_ESTIMATE + 1];
	void *buf[DMPRTN_ESTIMATE + 1];
};

static struct routine_log rlog[NROUTINES];
static dmp_sizeest_t routine_estimate = 4096;
static char rname[NROUTINES][16];

static void *routine_common(int n, int op, void *buf)
{
	if (op >= DMPRTN_START && op <= DMPRTN_ESTIMATE) {
		rlog[n].calls[op]++;
		rlog[n].buf[op] = buf;
	}
	return op == DMPRTN_ESTIMATE ? &routine_estimate : 0;
}

#define ROUTINE(n) static void *rtn##n(int op, void *buf) { return routine_common(n, op, buf); }
ROUTINE(0) ROUTINE(1) ROUTINE(2) ROUTINE(3) ROUTINE(4) ROUTINE(5) ROUTINE(6) ROUTINE(7)
ROUTINE(8) ROUTINE(9) ROUTINE(10) ROUTINE(11) ROUTINE(12) ROUTINE(13) ROUTINE(14) ROUTINE(15)
ROUTINE(16) ROUTINE(17) ROUTINE(18) ROUTINE(19) ROUTINE(20) ROUTINE(21) ROUTINE(22) ROUTINE(23)
ROUTINE(24) ROUTINE(25) ROUTINE(26) ROUTINE(27) ROUTINE(28) ROUTINE(29) ROUTINE(30) ROUTINE(31)
ROUTINE(32) ROUTINE(33) ROUTINE(34) ROUTINE(35) ROUTINE(36) ROUTINE(37) ROUTINE(38) ROUTINE(39)

static const dmp_func_t routines[NROUTINES] = {
	rtn0, rtn1, rtn2, rtn3, rtn4, rtn5, rtn6, rtn7, rtn8, rtn9, rtn10, rtn11, rtn12, rtn13,
	rtn14, rtn15, rtn16, rtn17, rtn18, rtn19, rtn20, rtn21, rtn22, rtn23, rtn24, rtn25, rtn26,
	rtn27, rtn28, rtn29, rtn30, rtn31, rtn32, rtn33, rtn34, rtn35, rtn36, rtn37, rtn38, rtn39,
};


static struct dmpctl_data parm(int n, int flags, size_t bsize)
{
	struct dmpctl_data p;

	memset(&p, 0, sizeof(p));
	p.dmpc_magic = DMPC_MAGIC1;
	p.dmpc_flags = flags;
	p.dmpc_func = routines[n];
	p.dmpc_bsize = bsize;
	p.dmpc_name = rname[n];
	return p;
}

static int add(int n, int flags, size_t bsize)
{
	struct dmpctl_data p = parm(n, flags, bsize);

	return dmp_ctl(DMPCTL_ADD, &p);
}

static int del(int n)
{
	struct dmpctl_data p = parm(n, 0, 0);

	return dmp_ctl(DMPCTL_DEL, &p);
}

static bool registered(int n)
{
	return dmp_registry_find_func(routines[n]) >= 0;
}

/* ---- a private RAS callback: performs the administrator's commands, logs everything ------- */

struct ras_log {
	int calls[RASCD_SDMP_ESTIMATE + 1];
	uint64_t last_level_arg;	/* RASCD_SDMP_LVL */
	uint32_t last_estimate_level;	/* RASCD_SDMP_ESTIMATE's se_level */
};

static struct ras_log ras_log_a, ras_log_b, ras_log_c;

#define RAS_ESTIMATE(level)	(1000ull * (level) + 7)

static long st_callback(ras_block_t rb, int cmd, void *arg, void *priv)
{
	struct ras_log *log = priv;
	sysdump_estimate_t *se = arg;

	if (cmd >= RASCD_SDMP_ON && cmd <= RASCD_SDMP_ESTIMATE)
		log->calls[cmd]++;
	switch (cmd) {
	case RASCD_SDMP_ON:
		return ras_control(rb, RASCD_SET_SDMP_ON, 0);
	case RASCD_SDMP_OFF:
		return ras_control(rb, RASCD_SET_SDMP_OFF, 0);
	case RASCD_SDMP_LVL:
		log->last_level_arg = (uintptr_t)arg;
		return ras_control(rb, RASCD_SET_SDMP_LVL, (uintptr_t)arg);
	case RASCD_SDMP_ESTIMATE:
		log->last_estimate_level = se->se_level;
		se->se_value = RAS_ESTIMATE(se->se_level);
		return 0;
	case RASCD_SDMP_START:
		return -1;	/* never called outside a dump; stay out of one anyway */
	default:
		return 0;
	}
}

/* ---- what dmp_estimate_at() reported for one name ------------------------------------------ */

static const char *estimate_watch;
static bool estimate_seen;
static uint64_t estimate_value;

static void estimate_each(const char *name, uint64_t bytes)
{
	if (estimate_watch && strcmp(name, estimate_watch) == 0) {
		estimate_seen = true;
		estimate_value = bytes;
	}
}

static uint64_t estimate_for(uint32_t level, const char *name, bool *seen)
{
	estimate_watch = name;
	estimate_seen = false;
	estimate_value = 0;
	dmp_estimate_at(level, estimate_each);
	estimate_watch = 0;
	*seen = estimate_seen;
	return estimate_value;
}

/* ---- the real registrations, before and after ----------------------------------------------- */

struct snapshot {
	int n;
	struct dmp_reg reg[DMP_MAX_COMPONENTS];
	struct ras_block rb[DMP_MAX_COMPONENTS];
};

static struct snapshot before, after;

static void take_snapshot(struct snapshot *s)
{
	memset(s, 0, sizeof(*s));
	s->n = dmp_nregistry;
	for (int i = 0; i < dmp_nregistry; i++) {
		s->reg[i] = dmp_registry[i];
		if (dmp_registry[i].rb)
			s->rb[i] = *dmp_registry[i].rb;
	}
}

/* The index of the first difference, or -1. */
static int snapshot_diff(const struct snapshot *a, const struct snapshot *b)
{
	if (a->n != b->n)
		return a->n < b->n ? a->n : b->n;
	for (int i = 0; i < a->n; i++)
		if (memcmp(&a->reg[i], &b->reg[i], sizeof(a->reg[i])) ||
		    memcmp(&a->rb[i], &b->rb[i], sizeof(a->rb[i])))
			return i;
	return -1;
}

/* ---- dmp_ctl ------------------------------------------------------------------------------- */

/* An ADD that must fail with `want` and leave the table as it was. */
static void expect_add_fails(const char *name, const char *what, struct dmpctl_data *p, int want)
{
	int n0 = dmp_nregistry, err = dmp_ctl(DMPCTL_ADD, p);
	bool ok = err == want && dmp_nregistry == n0;

	if (p && p->dmpc_func && err == 0)	/* wrongly added: take it out again */
		dmp_ctl(DMPCTL_DEL, p);
	result(name, ok, "%s: %s (want %s), table %d -> %d entries", what, en(err), en(want), n0,
	       dmp_nregistry);
}

static void test_dmpctl(void)
{
	struct dmpctl_data p;
	int n0 = dmp_nregistry, err, err2, idx;
	bool ok;
	static char long_name[DMP_NAME_LEN + 1];

	/* dmpctl-add: appended at the end of the table (registration order), under its name. */
	err = add(R_BASIC, 0, 0);
	idx = dmp_registry_find_func(routines[R_BASIC]);
	ok = err == 0 && dmp_nregistry == n0 + 1 && idx == n0 &&
	     strcmp(dmp_registry[idx].name, rname[R_BASIC]) == 0;
	result("dmpctl-add", ok, "ADD: %s, at index %d of %d", en(err), idx, dmp_nregistry);

	err = add(R_BASIC, 0, 0);
	p = parm(R_BASIC, DMPFUNC_CALL_ON_RESTART, 0);
	p.dmpc_name = "selftest-other";
	err2 = dmp_ctl(DMPCTL_ADD, &p);
	result("dmpctl-add-eexist", err == EEXIST && err2 == EEXIST && dmp_nregistry == n0 + 1,
	       "same routine again: %s, under another name: %s (want EEXIST)", en(err), en(err2));

	expect_add_fails("dmpctl-add-einval-null", "parmp NULL", 0, EINVAL);
	p = parm(R_BADOP, 0, 0);
	p.dmpc_magic = DMPC_MAGIC1 ^ 1;
	expect_add_fails("dmpctl-add-einval-magic", "dmpc_magic not DMPC_MAGIC1", &p, EINVAL);
	p = parm(R_BADOP, 0, 0);
	p.dmpc_func = 0;
	expect_add_fails("dmpctl-add-einval-func", "dmpc_func NULL", &p, EINVAL);
	p = parm(R_BADOP, 0x4, 0);
	expect_add_fails("dmpctl-add-einval-flags", "dmpc_flags 0x4", &p, EINVAL);
	p = parm(R_BADOP, DMPFUNC_GLOBAL_BUFFER, 0);
	expect_add_fails("dmpctl-add-einval-bsize", "GLOBAL_BUFFER with dmpc_bsize 0", &p, EINVAL);
	p = parm(R_BADOP, 0, 0);
	p.dmpc_name = "";
	expect_add_fails("dmpctl-add-einval-name", "empty dmpc_name", &p, EINVAL);
	memset(long_name, 'x', DMP_NAME_LEN);
	p = parm(R_BADOP, 0, 0);
	p.dmpc_name = long_name;
	expect_add_fails("dmpctl-add-einval-long-name", "a 32-character dmpc_name (31 at most)", &p,
			 EINVAL);

	err = del(R_BASIC);
	result("dmpctl-del", err == 0 && dmp_nregistry == n0 && !registered(R_BASIC),
	       "DEL: %s, table back to %d entries", en(err), dmp_nregistry);

	err = del(R_BASIC);
	err2 = dmp_ctl(DMPCTL_DEL, 0);
	p = parm(R_BASIC, 0, 0);
	p.dmpc_func = 0;
	{
		int err3 = dmp_ctl(DMPCTL_DEL, &p);

		result("dmpctl-del-unknown", err == EINVAL && err2 == EINVAL && err3 == EINVAL &&
		       dmp_nregistry == n0, "not in the table: %s, parmp NULL: %s, dmpc_func NULL: %s "
		       "(want EINVAL)", en(err), en(err2), en(err3));
	}

	/* RTNFAILURE outside a dump: refused for a registered routine and an unknown one alike. */
	err = add(R_RTNFAIL, 0, 0);
	p = parm(R_RTNFAIL, 0, 0);
	p.dmpcf_rV = -5;
	p.dmpcf_vaddr = &p;
	p.dmpcf_handle = 0x5e1f7e57;
	err2 = dmp_ctl(DMPCTL_RTNFAILURE, &p);
	p = parm(R_BADOP, 0, 0);
	{
		int err3 = dmp_ctl(DMPCTL_RTNFAILURE, &p);
		int err4 = del(R_RTNFAIL);

		result("dmpctl-rtnfailure-no-dump", err == 0 && err2 == EINVAL && err3 == EINVAL &&
		       err4 == 0, "registered routine: %s, unknown routine: %s (want EINVAL)",
		       en(err2), en(err3));
	}

	/* Unknown operations: EINVAL, and nothing added. */
	{
		static const int ops[] = { 0, 4, -1, 99 };
		int bad = 0, bad_op = 0, got = 0;

		for (unsigned i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
			p = parm(R_BADOP, 0, 0);
			err = dmp_ctl(ops[i], &p);
			if (err != EINVAL || registered(R_BADOP)) {
				bad++;
				bad_op = ops[i];
				got = err;
			}
			if (registered(R_BADOP))
				del(R_BADOP);
		}
		if (bad)
			result("dmpctl-bad-op", false, "%d of ops 0, 4, -1, 99 not refused (op %d: %s, want "
			       "EINVAL and nothing added)", bad, bad_op, en(got));
		else
			result("dmpctl-bad-op", true, "ops 0, 4, -1, 99: EINVAL, nothing added");
	}
}

/* Fill the table with private routines: ENOMEM exactly when it holds DMP_MAX_COMPONENTS
 * entries (dmp_ctl and RAS components share it); ras_register is refused then too. */
static void test_table_full(void)
{
	int n0 = dmp_nregistry, added = 0, err = 0, next = R_FILL, rerr, left = 0;
	ras_block_t rb = 0;

	while (next < NROUTINES) {
		err = add(next, 0, 0);
		if (err)
			break;
		added++;
		next++;
	}
	rerr = ras_register(&rb, "selftest-full", st_callback, &ras_log_c);
	if (rerr == 0)
		ras_unregister(rb);
	for (int n = R_FILL; n < next; n++)
		if (del(n) != 0)
			left++;
	result("dmpctl-table-full", err == ENOMEM && n0 + added == DMP_MAX_COMPONENTS && left == 0 &&
	       dmp_nregistry == n0, "%d entries + %d added, then %s (want ENOMEM at %d); "
	       "removed again: %d entries", n0, added, en(err), DMP_MAX_COMPONENTS, dmp_nregistry);
	result("ras-register-table-full", rerr == ENOMEM, "ras_register with %d entries: %s "
	       "(want ENOMEM)", n0 + added, en(rerr));
}

/* ---- the global buffer ------------------------------------------------------------------------ */

static uint64_t largest_registered_bsize(void)
{
	uint64_t m = 0;

	for (int i = 0; i < dmp_nregistry; i++)
		if (dmp_registry[i].func && dmp_registry[i].bsize > m)
			m = dmp_registry[i].bsize;
	return m;
}

static void test_global_buffer(void)
{
	size_t size0, size1, size2;
	void *buf0, *buf1, *buf2;
	uint64_t largest = largest_registered_bsize();
	int err, errs[4];
	bool ok;

	/* The first request allocates it at the requested size. If it exists already, it was
	 * allocated at boot by the first registration that asked (and, with no DEL of such a
	 * routine anywhere but here, it is as large as the largest registered request). */
	buf0 = dmp_global_buffer(&size0);
	if (!buf0) {
		err = add(R_GLOBAL_A, DMPFUNC_GLOBAL_BUFFER, 8192);
		buf1 = dmp_global_buffer(&size1);
		result("global-first-request", err == 0 && buf1 && size1 == 8192,
		       "no buffer yet; ADD with 8192: %s, buffer %#llx of %llu bytes", en(err),
		       (unsigned long long)(uintptr_t)buf1, (unsigned long long)size1);
	} else {
		err = add(R_GLOBAL_A, DMPFUNC_GLOBAL_BUFFER, 4096);
		buf1 = dmp_global_buffer(&size1);
		if (global_grown_here)
			ok = size0 >= largest;
		else
			ok = size0 == largest;
		result("global-first-request", ok && err == 0 && buf1 == buf0 && size1 == size0,
		       "allocated at boot: %llu bytes, largest registered request %llu%s; ADD with "
		       "4096: %s", (unsigned long long)size0, (unsigned long long)largest,
		       global_grown_here ? " (an earlier selftest grew it)" : "", en(err));
	}

	/* A larger request reallocates it at the larger size: for good (it never shrinks). */
	buf1 = dmp_global_buffer(&size1);
	err = add(R_GLOBAL_B, DMPFUNC_GLOBAL_BUFFER, size1 + 8192);
	buf2 = dmp_global_buffer(&size2);
	if (err == 0)
		global_grown_here = true;
	result("global-grow", err == 0 && buf2 && size2 == size1 + 8192,
	       "ADD with %llu: %s, buffer %llu -> %llu bytes", (unsigned long long)(size1 + 8192),
	       en(err), (unsigned long long)size1, (unsigned long long)size2);

	/* A smaller request keeps it as it is. */
	buf1 = dmp_global_buffer(&size1);
	err = add(R_GLOBAL_C, DMPFUNC_GLOBAL_BUFFER, 4096);
	buf2 = dmp_global_buffer(&size2);
	result("global-keep-smaller", err == 0 && buf2 == buf1 && size2 == size1,
	       "ADD with 4096: %s, buffer %llu -> %llu bytes, %s", en(err), (unsigned long long)size1,
	       (unsigned long long)size2, buf2 == buf1 ? "same address" : "MOVED");

	/* Passed as buf to the routines that asked, NULL to the others: ESTIMATE calls are the
	 * ones that can be seen outside a dump. */
	err = add(R_NO_GLOBAL, 0, 0);
	memset(rlog, 0, sizeof(rlog));
	dmp_estimate_at(CD_LVL_NORMAL, estimate_each);
	buf2 = dmp_global_buffer(&size2);
	ok = err == 0;
	for (int n = R_GLOBAL_A; n <= R_GLOBAL_C; n++)
		ok = ok && rlog[n].calls[DMPRTN_ESTIMATE] == 1 && rlog[n].buf[DMPRTN_ESTIMATE] == buf2;
	ok = ok && rlog[R_NO_GLOBAL].calls[DMPRTN_ESTIMATE] == 1 &&
	     rlog[R_NO_GLOBAL].buf[DMPRTN_ESTIMATE] == 0;
	result("global-passed-to-askers", ok, "ESTIMATE calls: askers got %#llx %#llx %#llx, the "
	       "other %#llx (buffer %#llx)",
	       (unsigned long long)(uintptr_t)rlog[R_GLOBAL_A].buf[DMPRTN_ESTIMATE],
	       (unsigned long long)(uintptr_t)rlog[R_GLOBAL_B].buf[DMPRTN_ESTIMATE],
	       (unsigned long long)(uintptr_t)rlog[R_GLOBAL_C].buf[DMPRTN_ESTIMATE],
	       (unsigned long long)(uintptr_t)rlog[R_NO_GLOBAL].buf[DMPRTN_ESTIMATE],
	       (unsigned long long)(uintptr_t)buf2);

	/* DEL does not shrink it. */
	buf1 = dmp_global_buffer(&size1);
	errs[0] = del(R_GLOBAL_A);
	errs[1] = del(R_GLOBAL_B);
	errs[2] = del(R_GLOBAL_C);
	errs[3] = del(R_NO_GLOBAL);
	buf2 = dmp_global_buffer(&size2);
	result("global-del-keeps", !errs[0] && !errs[1] && !errs[2] && !errs[3] && buf2 == buf1 &&
	       size2 == size1, "DEL of its users: %s %s %s; buffer %llu -> %llu bytes, %s",
	       en(errs[0]), en(errs[1]), en(errs[2]), (unsigned long long)size1,
	       (unsigned long long)size2, buf2 == buf1 ? "same address" : "MOVED");
}

/* ---- ras_control ------------------------------------------------------------------------------ */

static ras_block_t rb_a, rb_b, rb_c, rb_d;

static void test_ras_register(void)
{
	int n0 = dmp_nregistry, err, e[5], idx;
	ras_block_t rb = 0;
	static char long_name[DMP_NAME_LEN + 1];

	memset(&ras_log_a, 0, sizeof(ras_log_a));
	err = ras_register(&rb_a, "selftest-ras-a", st_callback, &ras_log_a);
	idx = rb_a ? dmp_registry_find_ras(rb_a) : -1;
	result("ras-register", err == 0 && rb_a && idx == n0 && dmp_nregistry == n0 + 1,
	       "ras_register: %s, at index %d of %d", en(err), idx, dmp_nregistry);

	e[0] = ras_register(&rb, "selftest-ras-a", st_callback, &ras_log_b);
	/* Names are one namespace with the dmp_ctl routines'. */
	e[1] = dmp_nregistry ? ras_register(&rb, dmp_registry[0].name, st_callback, &ras_log_b) : EEXIST;
	result("ras-register-eexist", e[0] == EEXIST && e[1] == EEXIST && dmp_nregistry == n0 + 1,
	       "the same name: %s, %s's name: %s (want EEXIST)", en(e[0]),
	       dmp_nregistry ? dmp_registry[0].name : "-", en(e[1]));

	memset(long_name, 'x', DMP_NAME_LEN);
	e[0] = ras_register(&rb, "selftest-ras-x", 0, &ras_log_b);
	e[1] = ras_register(&rb, "", st_callback, &ras_log_b);
	e[2] = ras_register(0, "selftest-ras-x", st_callback, &ras_log_b);
	e[3] = ras_register(&rb, long_name, st_callback, &ras_log_b);
	result("ras-register-einval", e[0] == EINVAL && e[1] == EINVAL && e[2] == EINVAL &&
	       e[3] == EINVAL && dmp_nregistry == n0 + 1, "no callback: %s, empty name: %s, "
	       "rbp NULL: %s, 32-character name: %s (want EINVAL)", en(e[0]), en(e[1]), en(e[2]),
	       en(e[3]));
}

static void test_ras_levels(void)
{
	static const uint64_t bad[] = { CD_LVL_MAX + 1, 0xffffffffull, (1ull << 32) | CD_LVL_NORMAL,
					~0ull };
	int failures = 0, first_bad = -1, err = 0;
	bool ok;

	result("ras-level-default", rb_a->level == CD_LVL_NORMAL,
	       "a new component's level: %u (want CD_LVL_NORMAL, 3)", rb_a->level);

	for (int v = 0; v <= CD_LVL_MAX; v++) {
		err = ras_control(rb_a, RASCD_SET_SDMP_LVL, (uint64_t)v);
		if (err || rb_a->level != (uint32_t)v) {
			failures++;
			if (first_bad < 0)
				first_bad = v;
		}
	}
	if (failures)
		result("ras-level-valid", false, "%d of levels 0..9 refused or not kept (first: %d, %s)",
		       failures, first_bad, en(err));
	else
		result("ras-level-valid", true, "levels 0..9 accepted and kept");

	ok = true;
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = ras_control(rb_a, RASCD_SET_SDMP_LVL, bad[i]);
		if (err != EINVAL || rb_a->level != CD_LVL_MAX) {
			ok = false;
			break;
		}
	}
	result("ras-level-invalid", ok, "levels 10, 2^32-1, 2^32+3, 2^64-1: %s%s (want EINVAL, "
	       "level kept at 9: %u)", ok ? "EINVAL" : "got ", ok ? "" : en(err), rb_a->level);
}

static void test_ras_actions(void)
{
	static const int bad[] = { 0, RASCD_SET_SDMP_ON - 1, RASCD_SET_SDMP_SERIALIO + 1, 0x7fffffff,
				   -1, RASCD_SDMP_ON };
	int err = 0, bad_action = 0, e1, e2;
	bool ok = true, seen;
	uint64_t value;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]) && ok; i++) {
		err = ras_control(rb_a, bad[i], 0);
		if (err != EINVAL) {
			ok = false;
			bad_action = bad[i];
		}
	}
	if (ok)
		result("ras-bad-action", true, "actions 0, 0x100, 0x108, 0x7fffffff, -1 and a callback "
		       "command (RASCD_SDMP_ON): EINVAL");
	else
		result("ras-bad-action", false, "action %#x: %s (want EINVAL)", bad_action, en(err));

	e1 = ras_control(rb_a, RASCD_SET_SDMP_OFF, 0);
	ok = e1 == 0 && !rb_a->enabled;
	e2 = ras_control(rb_a, RASCD_SET_SDMP_ON, 0);
	result("ras-on-off", ok && e2 == 0 && rb_a->enabled, "RASCD_SET_SDMP_OFF: %s, ON: %s",
	       en(e1), en(e2));

	/* The administrator's side: the callback is sent the command and performs it. */
	memset(&ras_log_a, 0, sizeof(ras_log_a));
	e1 = ras_admin_level(rb_a, CD_LVL_DETAIL);
	e2 = ras_admin_level(rb_a, CD_LVL_MAX + 1);
	result("ras-admin-level", e1 == 0 && ras_log_a.calls[RASCD_SDMP_LVL] == 1 &&
	       ras_log_a.last_level_arg == CD_LVL_DETAIL && rb_a->level == CD_LVL_DETAIL && e2 == EINVAL,
	       "ras_admin_level(7): %s, RASCD_SDMP_LVL calls %d with %llu, level %u; "
	       "ras_admin_level(10): %s (want EINVAL, not sent)", en(e1),
	       ras_log_a.calls[RASCD_SDMP_LVL], (unsigned long long)ras_log_a.last_level_arg,
	       rb_a->level, en(e2));

	/* Each enabled component is asked for its estimate at the level given. */
	memset(&ras_log_a, 0, sizeof(ras_log_a));
	value = estimate_for(5, "selftest-ras-a", &seen);
	result("ras-estimate-level", seen && value == RAS_ESTIMATE(5) &&
	       ras_log_a.calls[RASCD_SDMP_ESTIMATE] == 1 && ras_log_a.last_estimate_level == 5,
	       "estimate at level 5: %s %llu (want %llu), RASCD_SDMP_ESTIMATE calls %d, se_level %u",
	       seen ? "listed," : "NOT listed,", (unsigned long long)value,
	       (unsigned long long)RAS_ESTIMATE(5), ras_log_a.calls[RASCD_SDMP_ESTIMATE],
	       ras_log_a.last_estimate_level);

	/* Off: not asked, not listed; on again. */
	memset(&ras_log_a, 0, sizeof(ras_log_a));
	e1 = ras_admin_enable(rb_a, 0);
	ok = e1 == 0 && ras_log_a.calls[RASCD_SDMP_OFF] == 1 && !rb_a->enabled;
	value = estimate_for(5, "selftest-ras-a", &seen);
	ok = ok && !seen && ras_log_a.calls[RASCD_SDMP_ESTIMATE] == 0;
	e2 = ras_admin_enable(rb_a, 1);
	result("ras-admin-off-on", ok && e2 == 0 && ras_log_a.calls[RASCD_SDMP_ON] == 1 && rb_a->enabled,
	       "ras_admin_enable(0): %s, RASCD_SDMP_OFF calls %d, estimate %s; ras_admin_enable(1): "
	       "%s, RASCD_SDMP_ON calls %d", en(e1), ras_log_a.calls[RASCD_SDMP_OFF],
	       seen ? "STILL ASKED" : "not asked", en(e2), ras_log_a.calls[RASCD_SDMP_ON]);

	e1 = ras_control(rb_a, RASCD_SET_SDMP_CALLONRESTART, 0);
	result("ras-callonrestart", e1 == 0 && rb_a->call_on_restart,
	       "RASCD_SET_SDMP_CALLONRESTART: %s", en(e1));

	e1 = ras_control(rb_a, RASCD_SET_SDMP_SERIALIO, 0);
	result("ras-serialio-before-customize", e1 == 0 && rb_a->serialio,
	       "RASCD_SET_SDMP_SERIALIO before ras_customize: %s", en(e1));
	e1 = ras_customize(rb_a);
	e2 = ras_control(rb_a, RASCD_SET_SDMP_SERIALIO, 0);
	result("ras-serialio-after-customize", e1 == 0 && e2 == EPERM,
	       "ras_customize: %s, then RASCD_SET_SDMP_SERIALIO: %s (want EPERM)", en(e1), en(e2));
}

/* ---- staging buffers ------------------------------------------------------------------------ */

static bool in_pool(const void *p, uint64_t bytes)
{
	uint64_t base, size, a = (uintptr_t)p;

	return pinpool_range(&base, &size) && a >= base && a + bytes <= base + size;
}

static uint64_t shared_size(void)
{
	uint64_t bytes;

	ras_shared_staging(&bytes);
	return bytes;
}

static uint64_t largest_shared_request(void)
{
	uint64_t m = 0;

	for (int i = 0; i < dmp_nregistry; i++)
		if (dmp_registry[i].rb && dmp_registry[i].rb->shared_request > m)
			m = dmp_registry[i].rb->shared_request;
	return m;
}

static void test_staging(void)
{
	int e1, e2, e3, e4;
	uint64_t free0, free1, s0, s1, s2, s3;
	bool ok;

	e1 = ras_register(&rb_b, "selftest-ras-b", st_callback, &ras_log_b);
	e2 = ras_register(&rb_c, "selftest-ras-c", st_callback, &ras_log_c);
	if (e1 || e2) {
		if (!e1)
			ras_unregister(rb_b);
		if (!e2)
			ras_unregister(rb_c);
		rb_b = rb_c = 0;
		result("ras-staging-setup", false, "ras_register: %s, %s", en(e1), en(e2));
		return;
	}

	e1 = ras_control(rb_b, RASCD_SET_SDMP_STAGING, RAS_SDMP_STAGING_MAX + 1);
	e2 = ras_control(rb_b, RASCD_SET_SDMP_SHARED_STAGING, RAS_SDMP_STAGING_MAX + 1);
	e3 = ras_control(rb_b, RASCD_SET_SDMP_STAGING, 1ull << 40);
	result("ras-staging-over-max", e1 == EINVAL && e2 == EINVAL && e3 == EINVAL && !rb_b->staging &&
	       !rb_b->shared_request, "32 MB + 1 private: %s, shared: %s; 1 TiB: %s (want EINVAL)",
	       en(e1), en(e2), en(e3));

	/* Exactly 32 MB is allowed: it is either supplied or refused for want of pool. */
	free0 = pinpool_free_bytes();
	e1 = ras_control(rb_b, RASCD_SET_SDMP_STAGING, RAS_SDMP_STAGING_MAX);
	ok = e1 == 0 ? rb_b->staging && rb_b->staging_bytes == RAS_SDMP_STAGING_MAX :
	     e1 == ENOMEM_RAS_SDMP_STAGING && free0 < RAS_SDMP_STAGING_MAX && !rb_b->staging;
	e2 = ras_control(rb_b, RASCD_SET_SDMP_STAGING, 0);
	result("ras-staging-max", ok && e2 == 0 && !rb_b->staging && pinpool_free_bytes() == free0,
	       "32 MB private with %llu KiB of pool free: %s; removed: %s", (unsigned long long)(free0 >> 10),
	       en(e1), en(e2));

	free0 = pinpool_free_bytes();
	e1 = ras_control(rb_b, RASCD_SET_SDMP_STAGING, 65536);
	free1 = pinpool_free_bytes();
	result("ras-staging-private", e1 == 0 && rb_b->staging && rb_b->staging_bytes == 65536 &&
	       in_pool(rb_b->staging, 65536) && free0 - free1 == 65536,
	       "64 KiB private: %s, at %#llx (in the pinned pool: %s), pool %llu -> %llu KiB free",
	       en(e1), (unsigned long long)(uintptr_t)rb_b->staging,
	       in_pool(rb_b->staging, 65536) ? "yes" : "NO", (unsigned long long)(free0 >> 10),
	       (unsigned long long)(free1 >> 10));

	s0 = shared_size();
	e1 = ras_control(rb_b, RASCD_SET_SDMP_SHARED_STAGING, 8192);
	result("ras-private-then-shared-eexist", e1 == EEXIST && !rb_b->shared_request &&
	       shared_size() == s0, "shared request with a private buffer: %s (want EEXIST)", en(e1));

	e1 = ras_control(rb_b, RASCD_SET_SDMP_STAGING, 0);
	result("ras-staging-remove", e1 == 0 && !rb_b->staging && !rb_b->staging_bytes &&
	       pinpool_free_bytes() == free0, "size 0: %s, pool back to %llu KiB free", en(e1),
	       (unsigned long long)(pinpool_free_bytes() >> 10));

	e1 = ras_control(rb_b, RASCD_SET_SDMP_SHARED_STAGING, 8192);
	e2 = ras_control(rb_b, RASCD_SET_SDMP_STAGING, 4096);
	ok = e1 == 0 && rb_b->shared_request == 8192 && e2 == EEXIST && !rb_b->staging;
	e3 = ras_control(rb_b, RASCD_SET_SDMP_SHARED_STAGING, 0);
	e4 = ras_control(rb_b, RASCD_SET_SDMP_STAGING, 4096);
	ok = ok && e3 == 0 && !rb_b->shared_request && e4 == 0 && rb_b->staging;
	result("ras-shared-then-private-eexist", ok, "after removing the private buffer, shared: %s; "
	       "then private: %s (want EEXIST); shared removed: %s, then private: %s",
	       en(e1), en(e2), en(e3), en(e4));
	e1 = ras_control(rb_b, RASCD_SET_SDMP_STAGING, 0);
	if (e1 || rb_b->staging)
		result("ras-staging-remove-again", false, "size 0: %s", en(e1));

	/* One shared buffer, as large as the largest request. */
	s0 = shared_size();
	e1 = ras_control(rb_b, RASCD_SET_SDMP_SHARED_STAGING, s0 + 4096);
	s1 = shared_size();
	e2 = ras_control(rb_c, RASCD_SET_SDMP_SHARED_STAGING, s0 + 12288);
	s2 = shared_size();
	e3 = ras_control(rb_b, RASCD_SET_SDMP_SHARED_STAGING, s0 + 8192);
	s3 = shared_size();
	ok = !e1 && !e2 && !e3 && s1 == s0 + 4096 && s2 == s0 + 12288 && s3 == s0 + 12288 &&
	     s3 == largest_shared_request();
	{
		void *b;
		uint64_t bytes;

		b = ras_shared_staging(&bytes);
		ok = ok && b && in_pool(b, bytes);
	}
	e1 = ras_control(rb_b, RASCD_SET_SDMP_SHARED_STAGING, 0);
	e2 = ras_control(rb_c, RASCD_SET_SDMP_SHARED_STAGING, 0);
	result("ras-shared-largest", ok && !e1 && !e2, "shared buffer %llu; requests +4 KiB -> %llu, "
	       "+12 KiB -> %llu, first one to +8 KiB -> %llu bytes (largest request %llu); both "
	       "removed: %s, %s, buffer %llu bytes", (unsigned long long)s0, (unsigned long long)s1,
	       (unsigned long long)s2, (unsigned long long)s3,
	       (unsigned long long)(s0 + 12288), en(e1), en(e2), (unsigned long long)shared_size());
}

/* ---- a dry start of a dump ------------------------------------------------------------------- */

/*
 * Some rules show only in what the facility records when a dump starts: the level each RAS
 * component is dumped at, call-on-restart assumed for staging users, and DMPCTL_RTNFAILURE
 * accepted while a dump runs. dmp_begin() starts one (it lists the components and asks each
 * for its estimate, nothing else) and dmp_finish() ends it at once: no START call, nothing
 * written, no DONE (no component returned a table). The crash path's dmp_begin() resets
 * dmp_state again.
 */
static int comp_index(const char *name)
{
	for (uint32_t i = 0; i < dmp_state.ncomponents; i++)
		if (strncmp(dmp_state.components[i].name, name, DMP_NAME_LEN) == 0)
			return (int)i;
	return -1;
}

static void test_dry_start(void)
{
	int e1, e2, e3, e4, e5, ia, ib, ic, id, ir;
	uint32_t fa = 0, fb = 0, fc = 0, fd = 0, want_a, want_b, want_c;
	const struct dmp_component *cr;
	struct dmpctl_data p;
	bool ok;

	e1 = ras_register(&rb_d, "selftest-ras-d", st_callback, &ras_log_c);
	if (e1)
		rb_d = 0;
	e2 = ras_control(rb_b, RASCD_SET_SDMP_STAGING, 4096);
	e3 = ras_control(rb_c, RASCD_SET_SDMP_SHARED_STAGING, 4096);
	e4 = add(R_RTNFAIL, 0, 0);
	if (e1 || e2 || e3 || e4) {
		result("dump-start-setup", false, "ras_register: %s, private staging: %s, shared: %s, "
		       "ADD: %s", en(e1), en(e2), en(e3), en(e4));
		return;
	}

	dmp_begin(CD_LVL_NORMAL);
	ia = comp_index("selftest-ras-a");
	ib = comp_index("selftest-ras-b");
	ic = comp_index("selftest-ras-c");
	id = comp_index("selftest-ras-d");
	ir = comp_index(rname[R_RTNFAIL]);
	p = parm(R_RTNFAIL, 0, 0);
	p.dmpcf_rV = -5;
	p.dmpcf_vaddr = (void *)(uintptr_t)0x5e1f000;
	p.dmpcf_handle = 0x5e1f7e57ull;
	e5 = dmp_ctl(DMPCTL_RTNFAILURE, &p);
	if (ia >= 0 && ib >= 0 && ic >= 0 && id >= 0) {
		fa = dmp_state.components[ia].flags;
		fb = dmp_state.components[ib].flags;
		fc = dmp_state.components[ic].flags;
		fd = dmp_state.components[id].flags;
	}
	/* a: asked for call-on-restart and SERIALIO; b: private staging; c: shared staging; d:
	 * nothing (and never asked for a level). */
	want_a = DMPF_RAS | DMPF_CALL_ON_RESTART | DMPF_SERIALIO;
	want_b = DMPF_RAS | DMPF_CALL_ON_RESTART | DMPF_PRIVATE_STAGING;
	want_c = DMPF_RAS | DMPF_CALL_ON_RESTART | DMPF_SHARED_STAGING;
	result("ras-callonrestart-assumed", fa == want_a && fb == want_b && fc == want_c &&
	       fd == DMPF_RAS, "flags at dump start: asked %#x (want %#x), private staging %#x "
	       "(want %#x), shared staging %#x (want %#x), neither %#x (want %#x)", fa, want_a, fb,
	       want_b, fc, want_c, fd, DMPF_RAS);
	ok = ia >= 0 && id >= 0 && dmp_state.components[ia].level == CD_LVL_DETAIL &&
	     dmp_state.components[id].level == CD_LVL_NORMAL;
	result("ras-level-at-dump-start", ok, "dumped at: the one set to 7: %u, the one never set: "
	       "%u (want 7 and CD_LVL_NORMAL)", ia >= 0 ? dmp_state.components[ia].level : 99,
	       id >= 0 ? dmp_state.components[id].level : 99);

	cr = ir >= 0 ? &dmp_state.components[ir] : 0;
	ok = e5 == 0 && cr && (cr->flags & DMPF_RTNFAILURE) && cr->status == COMPONENT_FAILED &&
	     cr->reason == EIO && cr->failure_rv == -5 && cr->failure_vaddr == 0x5e1f000 &&
	     cr->failure_handle == 0x5e1f7e57ull;
	result("dmpctl-rtnfailure-recorded", ok, "while a dump runs: %s; entry flags %#x status %u "
	       "reason %u rV %d vaddr %#llx handle %#llx", en(e5), cr ? cr->flags : 0,
	       cr ? cr->status : 0, cr ? cr->reason : 0, cr ? cr->failure_rv : 0,
	       (unsigned long long)(cr ? cr->failure_vaddr : 0),
	       (unsigned long long)(cr ? cr->failure_handle : 0));
	dmp_finish();

	e1 = dmp_ctl(DMPCTL_RTNFAILURE, &p);
	e2 = del(R_RTNFAIL);
	e3 = ras_control(rb_b, RASCD_SET_SDMP_STAGING, 0);
	e4 = ras_control(rb_c, RASCD_SET_SDMP_SHARED_STAGING, 0);
	result("dmpctl-rtnfailure-after-dump", e1 == EINVAL && !e2 && !e3 && !e4,
	       "after dmp_finish: %s (want EINVAL); cleanup: %s %s %s", en(e1), en(e2), en(e3),
	       en(e4));
}

/* ---- the pool exhausted ----------------------------------------------------------------------- */

#define MAX_HOGS	48
static void *hogs[MAX_HOGS];
static int nhogs;

/* Take every free page of the pool (halving the request whenever it does not fit). */
static void pool_exhaust(void)
{
	uint64_t size = pinpool_free_bytes() & ~(PAGE - 1);

	nhogs = 0;
	while (size >= PAGE && nhogs < MAX_HOGS) {
		void *p = pinpool_alloc(size);

		if (p) {
			hogs[nhogs++] = p;
			if (size > pinpool_free_bytes())
				size = pinpool_free_bytes() & ~(PAGE - 1);
		} else {
			size = (size / 2) & ~(PAGE - 1);
		}
	}
}

static void pool_release(void)
{
	while (nhogs)
		pinpool_free(hogs[--nhogs]);
}

static void test_pool_exhausted(void)
{
	uint64_t free0 = pinpool_free_bytes(), left, s0, s1;
	size_t g0, g1;
	void *gb0, *gb1;
	int e1, e2, e3;

	pool_exhaust();
	left = pinpool_free_bytes();

	e1 = ras_control(rb_b, RASCD_SET_SDMP_STAGING, 4096);
	result("ras-staging-enomem", left == 0 && e1 == ENOMEM_RAS_SDMP_STAGING && !rb_b->staging,
	       "pool exhausted (%llu bytes left, %d blocks taken): 4 KiB private: %s "
	       "(want ENOMEM_RAS_SDMP_STAGING)", (unsigned long long)left, nhogs, en(e1));

	s0 = shared_size();
	e2 = ras_control(rb_b, RASCD_SET_SDMP_SHARED_STAGING, s0 + 4096);
	s1 = shared_size();
	result("ras-shared-staging-enomem", left == 0 && e2 == ENOMEM_RAS_SDMP_STAGING &&
	       s1 == s0 && !rb_b->shared_request, "pool exhausted: shared %llu bytes (buffer %llu): "
	       "%s (want ENOMEM_RAS_SDMP_STAGING), buffer still %llu", (unsigned long long)(s0 + 4096),
	       (unsigned long long)s0, en(e2), (unsigned long long)s1);

	gb0 = dmp_global_buffer(&g0);
	e3 = add(R_GLOBAL_NOMEM, DMPFUNC_GLOBAL_BUFFER, g0 + 4096);
	gb1 = dmp_global_buffer(&g1);
	{
		bool ok = left == 0 && e3 == ENOMEM && !registered(R_GLOBAL_NOMEM) && gb1 == gb0 &&
			  g1 == g0;
		int e4;

		if (registered(R_GLOBAL_NOMEM))
			del(R_GLOBAL_NOMEM);
		pool_release();
		/* Beyond any pool: the pool lies below 4 GiB. */
		e4 = add(R_GLOBAL_NOMEM, DMPFUNC_GLOBAL_BUFFER, (size_t)4 << 30);
		ok = ok && e4 == ENOMEM && !registered(R_GLOBAL_NOMEM);
		if (registered(R_GLOBAL_NOMEM))
			del(R_GLOBAL_NOMEM);
		result("global-enomem", ok, "pool exhausted: ADD with %llu (buffer %llu): %s; "
		       "ADD with 4 GiB: %s (want ENOMEM, not added, buffer kept)",
		       (unsigned long long)(g0 + 4096), (unsigned long long)g0, en(e3), en(e4));
	}
	result("pool-restored", pinpool_free_bytes() == free0, "pool %llu KiB free before, %llu after",
	       (unsigned long long)(free0 >> 10), (unsigned long long)(pinpool_free_bytes() >> 10));
}

/* ---- cleanup ---------------------------------------------------------------------------------- */

/*
 * Reference 000: DUMPINIT pins what the driver's dump path needs, DUMPTERM unpins it. The
 * primary dump device is terminated and initialised again: the pinned pages drop, then come
 * back to the same count (and the device is a dump device again, as before).
 */
static void test_dumpterm_unpins(void)
{
	struct dumpdev *dev = dump_device;
	struct dumpio_stat st;
	struct dmp_query q;
	uint64_t before, after_term, after_init;
	int err;

	if (!dev) {
		result("dumpterm-unpins", true, "no dump device configured: nothing to terminate");
		return;
	}
	before = pin_pinned_pages();
	err = devdump_term(dev);
	after_term = pin_pinned_pages();
	memset(&st, 0, sizeof(st));
	if (!err)
		err = devdump_init(dev, &st);
	if (!err)
		err = devdump_query(dev, &q);
	after_init = pin_pinned_pages();
	result("dumpterm-unpins", !err && after_term < before && after_init == before,
	       "%s: %llu pinned pages, %llu after DUMPTERM, %llu after DUMPINIT again (%s)", dev->name,
	       (unsigned long long)before, (unsigned long long)after_term, (unsigned long long)after_init,
	       errno_name(err));
}

static void test_unregister(void)
{
	int n0 = dmp_nregistry, e1 = ras_unregister(rb_a), e2 = rb_b ? ras_unregister(rb_b) : 0,
	    e3 = rb_c ? ras_unregister(rb_c) : 0, e6 = rb_d ? ras_unregister(rb_d) : 0, e4, e5;
	int nprivate = 1 + !!rb_b + !!rb_c + !!rb_d;

	e4 = ras_control(rb_a, RASCD_SET_SDMP_ON, 0);
	e5 = ras_unregister(rb_a);
	result("ras-unregister", !e1 && !e2 && !e3 && !e6 && dmp_nregistry == n0 - nprivate &&
	       e4 == EINVAL && e5 == EINVAL, "ras_unregister: %s %s %s %s, table %d -> %d; ras_control "
	       "on it afterwards: %s, ras_unregister again: %s (want EINVAL)", en(e1), en(e2), en(e3),
	       en(e6), n0, dmp_nregistry, en(e4), en(e5));
	rb_a = rb_b = rb_c = rb_d = 0;
}

int selftest_run(void)
{
	uint64_t free0 = pinpool_free_bytes(), g0b, s0, s1, expect;
	size_t g0, g1;
	int diff, err;

	npassed = nfailed = 0;
	for (int n = 0; n < NROUTINES; n++)
		snprintf(rname[n], sizeof(rname[n]), "selftest-%d", n);
	take_snapshot(&before);
	dmp_global_buffer(&g0);
	g0b = g0;
	s0 = shared_size();

	test_dmpctl();
	test_table_full();
	test_global_buffer();	/* grows the global buffer: after the first-request check */
	test_ras_register();
	if (rb_a) {
		test_ras_levels();
		test_ras_actions();
		test_staging();	/* may grow the shared staging buffer (kept while others need it) */
		if (rb_b && rb_c) {
			test_dry_start();
			test_pool_exhausted();	/* the last pool user: gives back all it took */
		}
		test_unregister();
	}

	err = pin_selftest();
	result("pin-selftest", err == 0, "pin_selftest(): %d", err);
	test_dumpterm_unpins();

	/* Everything private is gone and the real registrations are as they were. The pool lost
	 * only what the global and shared buffers grew by. */
	take_snapshot(&after);
	diff = snapshot_diff(&before, &after);
	dmp_global_buffer(&g1);
	s1 = shared_size();
	expect = free0 - (PAGES(g1) - PAGES(g0b)) * PAGE - (PAGES(s1) - PAGES(s0)) * PAGE;
	result("registrations-untouched", diff < 0 && pinpool_free_bytes() == expect,
	       "%d components before, %d after, first difference at %d (%s); pool %llu KiB free, "
	       "expected %llu (global buffer %llu -> %llu, shared staging %llu -> %llu bytes)",
	       before.n, after.n, diff, diff >= 0 && diff < before.n ? before.reg[diff].name : "none",
	       (unsigned long long)(pinpool_free_bytes() >> 10), (unsigned long long)(expect >> 10),
	       (unsigned long long)g0b, (unsigned long long)g1, (unsigned long long)s0,
	       (unsigned long long)s1);

	printf("SELFTEST-END passed=%d failed=%d\n", npassed, nfailed);
	return nfailed;
}
