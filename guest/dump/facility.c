/*
 * The system dump facility's dump-time side (dump/facility.h): the registry of components, and
 * the collection that calls every routine and streams each area to the writer at once.
 *
 * Every routine call runs under pin_guarded_call(): a touch of memory that is neither pinned
 * nor being dumped comes back here as a violation charged to that call. Tables are copied
 * inside the same guard, so a table in unpinned memory is the component's fault too.
 * Nothing here allocates: every array is static and every loop is bounded by DMP_MAX_*.
 */
#include "dump/facility.h"
#include "arch/x86/pin.h"
#include "arch/x86/usermode.h"
#include "dump/format.h"
#include "dump/prof.h"
#include "dump/ras.h"
#include "dump/registry.h"
#include "kern/memmap.h"
#include "lib/dumpstate.h"
#include "lib/errno.h"
#include "lib/string.h"

_Static_assert(DMPF_CALL_ON_RESTART == COMPONENT_FLAG_CALL_ON_RESTART &&
	       DMPF_TABLE_REUSED == COMPONENT_FLAG_TABLE_REUSED, "flags are the format's bits");
_Static_assert(DMPCALL_ESTIMATE == CALL_OP_ESTIMATE && DMPCALL_BAD == 7, "call codes");

struct dmp_reg dmp_registry[DMP_MAX_COMPONENTS];
int dmp_nregistry;

/* The dump's state, and below the facility's own (rts, the call in progress, the copied
 * table): written while the dump runs, dump path state (lib/dumpstate.h). The registry above
 * changes only at configuration time. */
struct dmp_state dmp_state __dumpstate;

/*
 * Calls other than DONE leave room for one DONE per component, so the last calls of a dump
 * always have a record.
 */
#define CALLS_FOR_COLLECTION	(DMP_MAX_CALLS - DMP_MAX_COMPONENTS)

/* What the facility keeps about a component beside its directory entry, for one dump. */
struct comp_rt {
	dmp_func_t func;		/* dmp_ctl routine, or NULL */
	struct ras_block *rb;		/* RAS component, or NULL */
	void *buf;			/* the global buffer, if it asked for it */
	void *staging;			/* private or shared staging buffer */
	uint64_t staging_bytes;
	uint32_t cfg_flags;		/* flags known before any call */
	bool restart;			/* call on restart: asked for or assumed */
	bool unlimited;			/* it returned an unlimited table */
	bool reached;			/* generation 1 began collecting it */
	bool got_table;			/* a call returned a table: it gets DONE */
	bool negative;			/* a RAS call returned negative: no FINISHED */
	bool faulted;			/* a call touched unpinned memory: never called again */
	bool stop;			/* no more calls in this generation */
	const void *saved;		/* generation 1's START table, for a restart */
	struct dmp_component after_start;	/* its entry as generation 1's START left it */
};

static struct comp_rt rts[DMP_MAX_COMPONENTS] __dumpstate;
static bool running __dumpstate;

/* The routine call (or saved-table read) in progress, for dmp_note_violation(): -1 for none,
 * which dmp_begin() sets (before it, with `running` false, there is none either). */
static int cur_comp __dumpstate;
static int cur_call __dumpstate;
static uint32_t cur_op __dumpstate;

/* The table a call returned, copied inside the guard. */
static struct {
	uint32_t magic;
	uint32_t kind;
	uint32_t total;			/* entries the table has */
	uint32_t n;			/* entries copied (fewer: cut off at the area limit) */
	struct cdt_entry e[DMP_MAX_AREAS];
} tbl __dumpstate;

/* ---- the registry ---------------------------------------------------------------- */

int dmp_registry_add(const struct dmp_reg *r)
{
	if (dmp_nregistry == DMP_MAX_COMPONENTS)
		return ENOMEM;
	dmp_registry[dmp_nregistry++] = *r;
	return 0;
}

void dmp_registry_remove(int i)
{
	if (i < 0 || i >= dmp_nregistry)
		return;
	memmove(&dmp_registry[i], &dmp_registry[i + 1],
		(size_t)(dmp_nregistry - i - 1) * sizeof(dmp_registry[0]));
	dmp_nregistry--;
}

int dmp_registry_find_func(dmp_func_t func)
{
	for (int i = 0; i < dmp_nregistry; i++)
		if (dmp_registry[i].func && dmp_registry[i].func == func)
			return i;
	return -1;
}

int dmp_registry_find_ras(const struct ras_block *rb)
{
	for (int i = 0; i < dmp_nregistry; i++)
		if (dmp_registry[i].rb && dmp_registry[i].rb == rb)
			return i;
	return -1;
}

int dmp_registry_find_name(const char *name)
{
	for (int i = 0; i < dmp_nregistry; i++)
		if (strncmp(dmp_registry[i].name, name, DMP_NAME_LEN) == 0)
			return i;
	return -1;
}

bool dmp_registry_name_ok(const char *name)
{
	return name && name[0] && strnlen(name, DMP_NAME_LEN) < DMP_NAME_LEN;
}

int dmp_registered_count(void)
{
	return dmp_nregistry;
}

const char *dmp_registered_name(int i)
{
	return i >= 0 && i < dmp_nregistry ? dmp_registry[i].name : 0;
}

/* ---- component state --------------------------------------------------------------- */

static void fail(uint32_t ci, uint32_t reason)
{
	dmp_state.components[ci].status = COMPONENT_FAILED;
	dmp_state.components[ci].reason = reason;
	rts[ci].stop = true;
}

int dmp_report_failure(dmp_func_t func, int rv, uint64_t vaddr, uint64_t handle)
{
	if (!running)
		return EINVAL;
	for (uint32_t i = 0; i < dmp_state.ncomponents; i++) {
		struct dmp_component *c = &dmp_state.components[i];

		if (rts[i].func != func)
			continue;
		c->flags |= DMPF_RTNFAILURE;
		c->failure_rv = rv;
		c->failure_vaddr = vaddr;
		c->failure_handle = handle;
		/* A harder failure (fault, bad table) already recorded keeps its reason. */
		if (c->status != COMPONENT_FAILED) {
			c->status = COMPONENT_FAILED;
			c->reason = EIO;
		}
		return 0;
	}
	return EINVAL;
}

void dmp_note_violation(uint64_t address, uint64_t rip, uint32_t error_code)
{
	int comp = running ? cur_comp : -1;

	if (dmp_state.nviolations < DMP_MAX_VIOLATIONS) {
		struct dmp_violation *v = &dmp_state.violations[dmp_state.nviolations++];

		v->address = address;
		v->rip = rip;
		v->error_code = error_code;
		v->component = comp >= 0 ? (uint32_t)comp : DMP_NO_COMPONENT;
		v->op = comp >= 0 ? cur_op : 0;
		v->generation = dmp_state.generation;
	}
	if (comp < 0)
		return;
	dmp_state.components[comp].flags |= DMPF_PIN_VIOLATION;
	fail((uint32_t)comp, EFAULT);
	rts[comp].faulted = true;
	if (cur_call >= 0) {
		dmp_state.calls[cur_call].outcome = DMPCALL_FAULT;
		dmp_state.calls[cur_call].entries = 0;
		dmp_state.calls[cur_call].value = 0;
	}
}

/* Later components have not started: their (empty) area lists begin where the list ends. */
static void settle_positions(uint32_t from)
{
	for (uint32_t j = from; j < dmp_state.ncomponents; j++)
		dmp_state.components[j].first_area = dmp_state.nareas;
}

/* ---- tables -------------------------------------------------------------------------- */

/*
 * Copy and check the table at `t` (inside the guard: it is the component's memory). `again`:
 * it answered DMPRTN_AGAIN, so it must be unlimited, and one with more entries than there is
 * room for is cut off (E2BIG) instead of refused. 0, EINVAL (a bad table) or E2BIG.
 */
static int read_table(const void *t, bool again)
{
	uint32_t room = DMP_MAX_AREAS - dmp_state.nareas;
	const struct cdt_entry *entries;
	int err = 0;

	tbl.magic = *(const uint32_t *)t;
	tbl.kind = COMPONENT_KIND_OTHER;
	tbl.total = tbl.n = 0;
	if (tbl.magic == DMP_MAGIC && !again) {
		const struct cdt *c = t;

		if (c->cdt_head.cdt_len < sizeof(struct cdt_head))
			return EINVAL;
		if (NUM_ENTRIES(c) > room)
			return EINVAL;
		tbl.total = (uint32_t)NUM_ENTRIES(c);
		entries = c->cdt_entry;
		if (c->cdt_head.cdt_kind >= COMPONENT_KIND_CRASH_RECORD &&
		    c->cdt_head.cdt_kind <= COMPONENT_KIND_OTHER)
			tbl.kind = c->cdt_head.cdt_kind;
	} else if (tbl.magic == DMP_MAGIC_U) {
		const struct cdt_u *u = t;

		tbl.total = u->cdtu_nentries;
		entries = u->cdtu_entries;
		if (tbl.total && !entries)
			return EINVAL;
		if (tbl.total > room) {
			if (!again)
				return EINVAL;
			err = E2BIG;
		}
	} else {
		return EINVAL;
	}

	tbl.n = tbl.total < room ? tbl.total : room;
	for (uint32_t k = 0; k < tbl.n; k++) {
		const struct cdt_entry *e = &tbl.e[k];

		tbl.e[k] = entries[k];
		if (e->d_len == 0 || (uint64_t)(uintptr_t)e->d_ptr + e->d_len <= (uintptr_t)e->d_ptr)
			return EINVAL;
	}
	return err;
}

/* Stream the copied table's areas. 0, or the sink's error (the collection stops). A bad
 * area fails the component instead. */
static int emit_table(uint32_t ci, int call, const struct dmp_sink *sink)
{
	struct dmp_component *c = &dmp_state.components[ci];

	for (uint32_t k = 0; k < tbl.n && !rts[ci].stop; k++) {
		const struct cdt_entry *e = &tbl.e[k];
		struct dmp_area *a = &dmp_state.areas[dmp_state.nareas];
		int err;

		memset(a, 0, sizeof(*a));
		strncpy_pad(a->name, e->d_name, sizeof(a->name));
		a->phys = (uintptr_t)e->d_ptr;
		a->len = e->d_len;
		a->component = ci;
		if (e->d_flags & CDT_STAGED)
			a->flags = AREA_FLAG_VOLATILE | AREA_FLAG_STAGED;
		else if (e->d_flags & CDT_VOLATILE)
			a->flags = AREA_FLAG_VOLATILE;

		/* Only RAM or pinned memory is dumped: never device registers or holes, which the
		 * identity map covers too. */
		err = memmap_is_usable(a->phys, a->len) || pin_is_pinned(a->phys, a->len) ?
		      pin_map_dumped(a->phys, a->len) : EFAULT;
		if (err) {
			/* Not RAM: the table was bad after all. */
			fail(ci, err == EFAULT ? EINVAL : (uint32_t)err);
			if (err == EFAULT && call >= 0) {
				dmp_state.calls[call].outcome = DMPCALL_BAD;
				dmp_state.calls[call].entries = 0;
			}
			break;
		}
		/* Counted once written: a checkpoint inside area() describes only whole areas. */
		err = sink->area(sink->ctx, a);
		if (err)
			return err;
		dmp_state.nareas++;
		c->area_count++;
		c->dumped_bytes += a->len;
		if (c->status == COMPONENT_PENDING)
			c->status = COMPONENT_DUMPED;
		settle_positions(ci + 1);
	}
	return 0;
}

/* ---- guarded calls -------------------------------------------------------------------- */

struct call_ctx {
	uint32_t ci;
	uint8_t op;			/* DMPCALL_* */
	uint32_t level;
	bool read;			/* copy the returned table */
	/* out */
	long rv;			/* RAS callback's return */
	const void *table;
	bool have_value;
	uint64_t value;
	int table_err;
};

static const int dmprtn_ops[] = {
	[DMPCALL_START] = DMPRTN_START,
	[DMPCALL_AGAIN] = DMPRTN_AGAIN,
	[DMPCALL_DONE] = DMPRTN_DONE,
	[DMPCALL_ESTIMATE] = DMPRTN_ESTIMATE,
};

static const int ras_cmds[] = {
	[DMPCALL_START] = RASCD_SDMP_START,
	[DMPCALL_AGAIN] = RASCD_SDMP_AGAIN,
	[DMPCALL_DONE] = RASCD_SDMP_FINISHED,
	[DMPCALL_ESTIMATE] = RASCD_SDMP_ESTIMATE,
};

/* The routine's side of a call; runs under pin_guarded_call(). */
static uint64_t call_routine(uint64_t a0, uint64_t a1, uint64_t a2)
{
	struct call_ctx *cx = (struct call_ctx *)(uintptr_t)a0;
	struct comp_rt *rt = &rts[cx->ci];

	if (rt->rb) {
		struct ras_block *rb = rt->rb;

		if (cx->op == DMPCALL_ESTIMATE) {
			sysdump_estimate_t se = { .se_level = cx->level };

			cx->rv = rb->cb(rb, RASCD_SDMP_ESTIMATE, &se, rb->priv);
			cx->have_value = cx->rv >= 0;
			cx->value = se.se_value;
		} else if (cx->op == DMPCALL_DONE) {
			cx->rv = rb->cb(rb, RASCD_SDMP_FINISHED, 0, rb->priv);
		} else {
			sdmp_start_t st = {
				.sdmpst_level = cx->level,
				.sdmpst_generation = dmp_state.generation,
				.sdmpst_staging = rt->staging,
				.sdmpst_staging_bytes = rt->staging_bytes,
			};

			cx->rv = rb->cb(rb, ras_cmds[cx->op], &st, rb->priv);
			if (cx->rv >= 0)
				cx->table = st.sdmpst_table;
		}
	} else {
		void *r = rt->func(dmprtn_ops[cx->op], rt->buf);

		if (cx->op == DMPCALL_ESTIMATE) {
			cx->have_value = r != 0;
			if (r)
				cx->value = *(const dmp_sizeest_t *)r;
		} else if (cx->op != DMPCALL_DONE) {
			cx->table = r;
		}
	}
	if (cx->read && cx->table)
		cx->table_err = read_table(cx->table, cx->op == DMPCALL_AGAIN);
	return 0;
}

/* A saved table read again for a restart; under pin_guarded_call() too. */
static uint64_t read_saved(uint64_t a0, uint64_t a1, uint64_t a2)
{
	return (uint64_t)read_table((const void *)(uintptr_t)a0, false);
}

/*
 * Make one call, recorded: its record is cx->... outcome is the caller's to set unless it
 * faulted. Returns the record's index; *faulted says whether it touched unpinned memory.
 */
static int make_call(struct call_ctx *cx, bool *faulted)
{
	int idx = (int)dmp_state.ncalls++;
	struct dmp_call *r = &dmp_state.calls[idx];
	bool violated = false;
	uint64_t t;

	memset(r, 0, sizeof(*r));
	r->component = cx->ci;
	r->op = cx->op;
	r->generation = (uint8_t)dmp_state.generation;
	r->level = cx->level;
	cur_comp = (int)cx->ci;
	cur_call = idx;
	cur_op = cx->op;
	t = prof_begin();
	pin_guarded_call(call_routine, (uintptr_t)cx, 0, 0, &violated);
	prof_end(PROF_CALLS, t);
	cur_comp = -1;
	cur_call = -1;
	cur_op = 0;
	*faulted = violated;
	if (violated)
		r->outcome = DMPCALL_FAULT;
	return idx;
}

/* The level a call passes: RAS calls and estimates carry one. */
static void call_init(struct call_ctx *cx, uint32_t ci, uint8_t op)
{
	memset(cx, 0, sizeof(*cx));
	cx->ci = ci;
	cx->op = op;
	cx->level = rts[ci].rb ? dmp_state.components[ci].level : 0;
	cx->read = op == DMPCALL_START || op == DMPCALL_AGAIN;
}

/*
 * A START or AGAIN call and what it returned. Returns the call record's index, or -1 if the
 * component produced no table this time (NULL, negative, fault, bad table: its state says).
 */
static int table_call(uint32_t ci, uint8_t op, struct call_ctx *cx)
{
	struct dmp_component *c = &dmp_state.components[ci];
	struct comp_rt *rt = &rts[ci];
	struct dmp_call *r;
	bool faulted;
	int idx;

	call_init(cx, ci, op);
	idx = make_call(cx, &faulted);
	r = &dmp_state.calls[idx];
	if (faulted)
		return -1;
	if (rt->rb && cx->rv < 0) {
		r->outcome = DMPCALL_NEGATIVE;
		r->value = cx->rv;
		rt->negative = true;
		rt->stop = true;
		if (op == DMPCALL_START) {
			c->status = COMPONENT_EXCLUDED;
			c->reason = ENODATA;
		} else {
			c->flags |= DMPF_ENDED_EARLY;
		}
		return -1;
	}
	if (!cx->table) {
		r->outcome = DMPCALL_NONE;
		rt->stop = true;
		if (op == DMPCALL_START) {
			c->status = COMPONENT_EXCLUDED;
			c->reason = ENODATA;
		}
		return -1;
	}
	rt->got_table = true;
	if (cx->table_err == EINVAL) {
		r->outcome = DMPCALL_BAD;
		fail(ci, EINVAL);
		return -1;
	}
	r->outcome = DMPCALL_TABLE;
	r->entries = tbl.total;
	if (tbl.magic == DMP_MAGIC_U) {
		/* Unlimited: it will be asked again, and again on a restart. */
		c->flags |= DMPF_UNLIMITED | DMPF_CALL_ON_RESTART;
		rt->restart = true;
		rt->unlimited = true;
	} else {
		c->kind = tbl.kind;
	}
	return idx;
}

/* ---- collection ----------------------------------------------------------------------- */

static void finish_component(uint32_t ci, uint32_t generation)
{
	struct dmp_component *c = &dmp_state.components[ci];

	if (c->status == COMPONENT_PENDING)
		c->status = COMPONENT_DUMPED;
	c->table_generation = c->area_count ? generation : 0;
}

/* Call the component's routine: START, then AGAIN while its tables are unlimited. */
static int collect_called(uint32_t ci, const struct dmp_sink *sink)
{
	struct dmp_component *c = &dmp_state.components[ci];
	struct comp_rt *rt = &rts[ci];
	uint32_t gen = dmp_state.generation;
	struct call_ctx cx;
	bool unlimited;
	int idx, err;

	if (gen == 1)
		rt->reached = true;
	if (rt->stop) {
		/* Its estimate call faulted. */
		if (gen == 1)
			rt->after_start = *c;
		return 0;
	}
	if (dmp_state.ncalls >= CALLS_FOR_COLLECTION) {
		fail(ci, E2BIG);
		if (gen == 1)
			rt->after_start = *c;
		return 0;
	}
	idx = table_call(ci, DMPCALL_START, &cx);
	if (gen == 1) {
		rt->saved = idx >= 0 ? cx.table : 0;
		rt->after_start = *c;
	}
	if (idx < 0)
		return 0;
	unlimited = tbl.magic == DMP_MAGIC_U;
	err = emit_table(ci, idx, sink);
	if (err)
		return err;

	while (unlimited && !rt->stop) {
		if (dmp_state.ncalls >= CALLS_FOR_COLLECTION || dmp_state.nareas == DMP_MAX_AREAS) {
			/* A routine that never says it has no more. */
			fail(ci, E2BIG);
			break;
		}
		idx = table_call(ci, DMPCALL_AGAIN, &cx);
		if (idx < 0)
			break;
		err = emit_table(ci, idx, sink);
		if (err)
			return err;
		if (cx.table_err == E2BIG)
			fail(ci, E2BIG);
	}
	return 0;
}

/* A restart without calling: generation 1's START table again. */
static int collect_replayed(uint32_t ci, const struct dmp_sink *sink)
{
	struct dmp_component *c = &dmp_state.components[ci];
	struct comp_rt *rt = &rts[ci];
	bool violated = false;
	uint64_t err;

	*c = rt->after_start;
	c->first_area = dmp_state.nareas;
	c->area_count = 0;
	c->dumped_bytes = 0;
	if (!rt->saved || c->status == COMPONENT_EXCLUDED)
		return 0;
	c->flags |= DMPF_TABLE_REUSED;
	rt->stop = false;
	/* A fault here is charged to the component; op 0: no routine call was in progress. */
	cur_comp = (int)ci;
	cur_call = -1;
	cur_op = 0;
	err = pin_guarded_call(read_saved, (uintptr_t)rt->saved, 0, 0, &violated);
	cur_comp = -1;
	cur_op = 0;
	if (violated)
		return 0;
	if (err) {
		fail(ci, EINVAL);
		return 0;
	}
	return emit_table(ci, -1, sink);
}

/* A restart: the state generation 1 left goes, except what a replay or a fault keeps. */
static void restart_reset(void)
{
	dmp_state.nareas = 0;
	for (uint32_t i = 0; i < dmp_state.ncomponents; i++) {
		struct dmp_component *c = &dmp_state.components[i];
		struct comp_rt *rt = &rts[i];

		c->first_area = 0;
		c->area_count = 0;
		c->dumped_bytes = 0;
		c->table_generation = 0;
		if (c->status == COMPONENT_DISABLED || rt->faulted)
			continue;
		c->status = COMPONENT_PENDING;
		c->reason = 0;
		/* Generation 1's AGAIN records stay: so does what they imply. */
		c->flags = rt->cfg_flags | (rt->restart ? DMPF_CALL_ON_RESTART : 0) |
			   (rt->unlimited ? DMPF_UNLIMITED : 0);
		c->failure_rv = 0;
		c->failure_vaddr = 0;
		c->failure_handle = 0;
		rt->stop = false;
	}
}

int dmp_collect(uint32_t generation, const struct dmp_sink *sink)
{
	if (generation != 1 && generation != 2)
		return EINVAL;
	dmp_state.generation = generation;
	if (generation == 2)
		restart_reset();
	dmp_state.nareas = 0;

	for (uint32_t ci = 0; ci < dmp_state.ncomponents; ci++) {
		struct dmp_component *c = &dmp_state.components[ci];
		struct comp_rt *rt = &rts[ci];
		uint32_t made_by = generation;
		int err;

		settle_positions(ci);
		if (c->status == COMPONENT_DISABLED)
			continue;
		if (generation == 2 && rt->faulted) {
			/* Never called again; generation 1's failure stands, without its areas. */
		} else if (generation == 2 && rt->reached && !rt->restart) {
			err = collect_replayed(ci, sink);
			if (err)
				return err;
			made_by = 1;
		} else {
			err = collect_called(ci, sink);
			if (err)
				return err;
		}
		finish_component(ci, made_by);
		err = sink->component_done(sink->ctx, ci);
		if (err)
			return err;
	}
	settle_positions(dmp_state.ncomponents);
	return 0;
}

/* ---- begin, finish, estimates --------------------------------------------------------- */

/* The facility's state cleared in ring 3 (run_unprivileged): its ~100 KiB took 16 ms in
 * emulated ring 0, where a string store is emulated an iteration at a time (lib/string.c). */
static uint64_t clear_state_here(uint64_t unused0, uint64_t unused1, uint64_t unused2)
{
	memset(&dmp_state, 0, sizeof(dmp_state));
	memset(rts, 0, sizeof(rts));
	return 0;
}

void dmp_begin(uint32_t level)
{
	run_unprivileged(clear_state_here, 0, 0, 0);
	cur_comp = cur_call = -1;
	cur_op = 0;
	dmp_state.generation = 1;
	dmp_state.level = level;
	dmp_state.ncomponents = (uint32_t)dmp_nregistry;
	running = true;

	for (uint32_t i = 0; i < dmp_state.ncomponents; i++) {
		const struct dmp_reg *reg = &dmp_registry[i];
		struct dmp_component *c = &dmp_state.components[i];
		struct comp_rt *rt = &rts[i];

		memcpy(c->name, reg->name, sizeof(c->name));
		c->kind = COMPONENT_KIND_OTHER;
		c->status = COMPONENT_PENDING;
		if (reg->rb) {
			struct ras_block *rb = reg->rb;

			rt->rb = rb;
			c->flags = DMPF_RAS;
			c->level = rb->level;
			if (rb->call_on_restart)
				c->flags |= DMPF_CALL_ON_RESTART;
			if (rb->serialio)
				c->flags |= DMPF_SERIALIO;
			/* Staging space implies call on restart: its data is made at dump time. */
			if (rb->staging) {
				c->flags |= DMPF_PRIVATE_STAGING | DMPF_CALL_ON_RESTART;
				c->staging_bytes = (uint32_t)rb->staging_bytes;
				rt->staging = rb->staging;
				rt->staging_bytes = rb->staging_bytes;
			} else if (rb->shared_request) {
				c->flags |= DMPF_SHARED_STAGING | DMPF_CALL_ON_RESTART;
				c->staging_bytes = (uint32_t)rb->shared_request;
				rt->staging = ras_shared_staging(&rt->staging_bytes);
			}
			if (!rb->enabled) {
				/* Never called: no level it is dumped at. */
				c->status = COMPONENT_DISABLED;
				c->level = 0;
			}
		} else {
			rt->func = reg->func;
			if (reg->dmpc_flags & DMPFUNC_CALL_ON_RESTART)
				c->flags |= DMPF_CALL_ON_RESTART;
			if (reg->dmpc_flags & DMPFUNC_GLOBAL_BUFFER) {
				c->flags |= DMPF_GLOBAL_BUFFER;
				c->global_buffer_bytes = reg->bsize;
				rt->buf = dmp_global_buffer(0);
			}
		}
		rt->cfg_flags = c->flags;
		rt->restart = (c->flags & DMPF_CALL_ON_RESTART) != 0;
	}

	for (uint32_t i = 0; i < dmp_state.ncomponents; i++) {
		struct dmp_component *c = &dmp_state.components[i];
		struct call_ctx cx;
		struct dmp_call *r;
		bool faulted;

		if (c->status == COMPONENT_DISABLED)
			continue;
		call_init(&cx, i, DMPCALL_ESTIMATE);
		cx.level = level;
		r = &dmp_state.calls[make_call(&cx, &faulted)];
		if (faulted)
			continue;
		if (rts[i].rb && cx.rv < 0) {
			r->outcome = DMPCALL_NEGATIVE;
			r->value = cx.rv;
		} else if (!cx.have_value) {
			r->outcome = DMPCALL_NONE;
		} else {
			r->outcome = DMPCALL_VALUE;
			r->value = (int64_t)cx.value;
			c->estimate_bytes = cx.value;
			dmp_state.estimate_bytes += cx.value;
		}
	}
}

void dmp_finish(void)
{
	for (uint32_t i = 0; i < dmp_state.ncomponents; i++) {
		struct comp_rt *rt = &rts[i];
		struct call_ctx cx;
		bool faulted;
		int idx;

		if (!rt->got_table || rt->negative || rt->faulted ||
		    dmp_state.ncalls >= DMP_MAX_CALLS)
			continue;
		call_init(&cx, i, DMPCALL_DONE);
		idx = make_call(&cx, &faulted);
		if (!faulted)
			dmp_state.calls[idx].outcome = DMPCALL_ACK;
	}
	running = false;
}

uint64_t dmp_estimate_at(uint32_t level, void (*each)(const char *name, uint64_t bytes))
{
	uint64_t total = 0;

	for (int i = 0; i < dmp_nregistry; i++) {
		const struct dmp_reg *reg = &dmp_registry[i];
		uint64_t bytes = 0;

		if (reg->rb) {
			sysdump_estimate_t se = { .se_level = level };

			if (!reg->rb->enabled)
				continue;
			if (reg->rb->cb(reg->rb, RASCD_SDMP_ESTIMATE, &se, reg->rb->priv) >= 0)
				bytes = se.se_value;
		} else {
			void *buf = (reg->dmpc_flags & DMPFUNC_GLOBAL_BUFFER) ? dmp_global_buffer(0) : 0;
			const dmp_sizeest_t *e = reg->func(DMPRTN_ESTIMATE, buf);

			if (e)
				bytes = *e;
		}
		if (each)
			each(reg->name, bytes);
		total += bytes;
	}
	return total;
}
