/*
 * RAS-style dump components, after AIX ras_control()'s system dump callbacks
 * (docs/components.md is the contract).
 */
#ifndef DUMP_RAS_H
#define DUMP_RAS_H

#include <stdint.h>

#define CD_LVL_MINIMAL	1
#define CD_LVL_NORMAL	3
#define CD_LVL_DETAIL	7
#define CD_LVL_MAXIMAL	9
#define CD_LVL_MAX	9

#define RAS_SDMP_STAGING_MAX	(32u << 20)
#define ENOMEM_RAS_SDMP_STAGING	0x2001

/* Commands the callback receives. */
enum ras_callback_cmd {
	RASCD_SDMP_ON = 1,
	RASCD_SDMP_OFF,
	RASCD_SDMP_LVL,		/* arg: the level, (void *)(uintptr_t)level */
	RASCD_SDMP_START,	/* arg: sdmp_start_t * */
	RASCD_SDMP_AGAIN,	/* arg: sdmp_start_t * */
	RASCD_SDMP_FINISHED,
	RASCD_SDMP_ESTIMATE,	/* arg: sysdump_estimate_t * */
};

/* Actions the component asks for with ras_control(). */
enum ras_control_action {
	RASCD_SET_SDMP_ON = 0x101,
	RASCD_SET_SDMP_OFF,
	RASCD_SET_SDMP_LVL,		/* arg: level 0..9 */
	RASCD_SET_SDMP_CALLONRESTART,
	RASCD_SET_SDMP_STAGING,		/* arg: bytes, <= 32 MB, 0 removes */
	RASCD_SET_SDMP_SHARED_STAGING,	/* arg: bytes, <= 32 MB, 0 removes */
	RASCD_SET_SDMP_SERIALIO,
};

typedef struct ras_block *ras_block_t;

typedef struct sdmp_start {
	void *sdmpst_table;		/* out: struct cdt * or struct cdt_u *, or NULL */
	uint32_t sdmpst_level;		/* in */
	uint32_t sdmpst_generation;	/* in: 1, or 2 for a restarted dump */
	void *sdmpst_staging;		/* in: private or shared staging buffer, or NULL */
	uint64_t sdmpst_staging_bytes;	/* in */
} sdmp_start_t;

typedef struct sysdump_estimate {
	uint32_t se_level;		/* in */
	uint64_t se_value;		/* out: bytes */
} sysdump_estimate_t;

typedef long (*ras_callback_t)(ras_block_t rb, int cmd, void *arg, void *priv);

/* 0, or EINVAL (bad name or callback), EEXIST (name taken), ENOMEM (table full). */
int ras_register(ras_block_t *rbp, const char *name, ras_callback_t cb, void *priv);
int ras_unregister(ras_block_t rb);
/* Ends customization: RASCD_SET_SDMP_SERIALIO is refused (EPERM) afterwards. */
int ras_customize(ras_block_t rb);
int ras_control(ras_block_t rb, int action, uint64_t arg);

/* The administrator's side: sends the callback RASCD_SDMP_ON/OFF/LVL. */
int ras_admin_enable(ras_block_t rb, int on);
int ras_admin_level(ras_block_t rb, uint32_t level);
/* Every registered RAS component. */
void ras_admin_level_all(uint32_t level);

#endif
