/* Kernel command line: dumpdev, dumpdev2, dumplevel, components, pinpool, workload, dumpid,
 * fill, compress, iotimeout, testfault, netaddr, netserver, netmtu, netwindow (docs/guest-interface.md). */
#include "kern/cmdline.h"
#include "arch/x86/usermode.h"
#include "dump/dumpdisk.h"
#include "dump/dumpnic.h"
#include "dump/format.h"
#include "dump/netdump.h"
#include "scsi/hba.h"
#include "lib/testfault.h"
#include "lib/hex.h"
#include "lib/printf.h"
#include "lib/string.h"

struct boot_config boot_config = {
	.iotimeout_ms = IOTIMEOUT_DEFAULT_MS,
	.dump_level = 3,		/* CD_LVL_NORMAL */
	.components = "default",
	.net = { .mtu = NETDUMP_MTU_DEFAULT, .window = NETDUMP_WINDOW_DEFAULT },
};

static bool word_is(const char *key, size_t klen, const char *name)
{
	return klen == strlen(name) && strncmp(key, name, klen) == 0;
}

/* Up to `max` ':'-separated decimal fields after the device name, each within its limit. */
static bool parse_fields(const char *v, size_t vlen, int max, const uint64_t *limit, int *out)
{
	int n = 0;

	while (vlen) {
		size_t len = 0;
		uint64_t x;

		if (*v != ':' || n == max)
			return false;
		v++;
		vlen--;
		while (len < vlen && v[len] != ':')
			len++;
		if (!parse_u64_dec(v, len, &x) || x > limit[n])
			return false;
		out[n++] = (int)x;
		v += len;
		vlen -= len;
	}
	return true;
}

/* A dump device: WORD[:N] for a dump disk driver or a NIC driver, WORD[:N[:T[:L]]] for a disk on
 * a SCSI HBA driver; the word must be a built-in driver's. */
static bool parse_dumpdev(const char *v, size_t vlen, struct dumpdev_addr *addr)
{
	static const uint64_t limit[3] = { 31, 255, 16383 };	/* N, T, L */
	size_t wlen = 0;
	int f[3] = { 0, 0, 0 };

	if (vlen >= sizeof(addr->value))
		return false;
	while (wlen < vlen && v[wlen] != ':')
		wlen++;
	addr->on_hba = addr->on_nic = false;
	if (dump_nic_driver_find(v, wlen))
		addr->on_nic = true;
	else if (scsi_hba_driver_by_word(v, wlen))
		addr->on_hba = true;
	else if (!dump_disk_driver_find(v, wlen))
		return false;
	if (!parse_fields(v + wlen, vlen - wlen, addr->on_hba ? 3 : 1, limit, f))
		return false;
	memcpy(addr->value, v, vlen);
	addr->value[vlen] = '\0';
	addr->word_len = wlen;
	addr->index = f[0];
	addr->target = f[1];
	addr->lun = f[2];
	return true;
}

/* components=: "all", "none", "default", or names [a-z0-9-] separated by commas. */
static bool parse_components(const char *v, size_t vlen)
{
	size_t name = 0;

	if (vlen == 0 || vlen >= sizeof(boot_config.components))
		return false;
	for (size_t i = 0; i < vlen; i++) {
		char c = v[i];

		if (c == ',') {
			if (name == 0)
				return false;	/* an empty name */
			name = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
			name++;
		} else {
			return false;
		}
	}
	if (name == 0)
		return false;
	memcpy(boot_config.components, v, vlen);
	boot_config.components[vlen] = '\0';
	return true;
}

/* An IPv4 address, dotted quad (four decimal numbers 0..255), in host order. */
static bool parse_ipv4(const char *v, size_t vlen, uint32_t *out)
{
	uint32_t ip = 0;

	for (int part = 0; part < 4; part++) {
		size_t len = 0;
		uint64_t x;

		while (len < vlen && v[len] != '.')
			len++;
		if ((part < 3) != (len < vlen) || len > 3 || !parse_u64_dec(v, len, &x) || x > 255)
			return false;
		ip = ip << 8 | (uint32_t)x;
		if (part < 3)
			len++;	/* the dot */
		v += len;
		vlen -= len;
	}
	*out = ip;
	return vlen == 0;
}

/* A decimal number within [min, max]. */
static bool parse_u32_range(const char *v, size_t vlen, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t x;

	if (!parse_u64_dec(v, vlen, &x) || x < min || x > max)
		return false;
	*out = (uint32_t)x;
	return true;
}

/* netserver=: IP:PORT, the port 1..65535. */
static bool parse_ipv4_port(const char *v, size_t vlen, uint32_t *ip, uint16_t *port)
{
	size_t colon = 0;
	uint32_t x;

	while (colon < vlen && v[colon] != ':')
		colon++;
	if (colon == vlen || !parse_ipv4(v, colon, ip) || !parse_u32_range(v + colon + 1, vlen - colon - 1, 1, 65535, &x))
		return false;
	*port = (uint16_t)x;
	return true;
}

/* pinpool=: bytes, with an optional K, M or G suffix (powers of 1024); not 0. */
static bool parse_size(const char *v, size_t vlen, uint64_t *out)
{
	unsigned shift = 0;
	uint64_t x;

	if (vlen > 1) {
		switch (v[vlen - 1]) {
		case 'K': case 'k': shift = 10; break;
		case 'M': case 'm': shift = 20; break;
		case 'G': case 'g': shift = 30; break;
		default: break;
		}
		if (shift)
			vlen--;
	}
	if (!parse_u64_dec(v, vlen, &x) || x == 0 || x > (~0ull >> shift))
		return false;
	*out = x << shift;
	return true;
}

/*
 * The words are parsed in ring 3 (arch/x86/user_entry.S): a pure computation over the
 * string, which costs milliseconds where ring 0 is emulated. It stops at a word it does not
 * know, for cmdline_parse() to say so in ring 0, and goes on from the next one.
 */
enum { PARSE_DONE, PARSE_FAILED, PARSE_UNKNOWN };

struct parse_state {
	const char *p;		/* where the next word starts (or its blanks) */
	bool first;		/* p is at the first word */
	const char *why;	/* PARSE_FAILED */
	const char *word;	/* PARSE_UNKNOWN: the word */
	size_t wlen;
};

static uint64_t parse_words(uint64_t state, uint64_t unused1, uint64_t unused2)
{
	struct parse_state *st = (struct parse_state *)(uintptr_t)state;
	const char *p = st->p;
	bool first = st->first;

	while (*p) {
		const char *word, *eq, *val;
		size_t wlen, klen, vlen;

		while (isspace(*p))
			p++;
		if (!*p)
			break;
		word = p;
		while (*p && !isspace(*p))
			p++;
		wlen = (size_t)(p - word);
		eq = word;
		while (eq < p && *eq != '=')
			eq++;
		klen = (size_t)(eq - word);
		val = eq < p ? eq + 1 : p;
		vlen = (size_t)(p - val);

		/* Multiboot loaders (QEMU's included) put the kernel's file name first. */
		if (first && eq == p) {
			first = false;
			continue;
		}
		first = false;

		if (word_is(word, klen, "dumpdev")) {
			if (!parse_dumpdev(val, vlen, &boot_config.dumpdev)) {
				st->why = "bad-dumpdev";
				return PARSE_FAILED;
			}
			boot_config.dumpdev_set = true;
		} else if (word_is(word, klen, "dumpdev2")) {
			if (!parse_dumpdev(val, vlen, &boot_config.dumpdev2)) {
				st->why = "bad-dumpdev2";
				return PARSE_FAILED;
			}
			boot_config.dumpdev2_set = true;
		} else if (word_is(word, klen, "dumplevel")) {
			uint64_t level;

			if (!parse_u64_dec(val, vlen, &level) || level > 9) {
				st->why = "bad-dumplevel";
				return PARSE_FAILED;
			}
			boot_config.dump_level = (uint32_t)level;
		} else if (word_is(word, klen, "components")) {
			if (!parse_components(val, vlen)) {
				st->why = "bad-components";
				return PARSE_FAILED;
			}
		} else if (word_is(word, klen, "pinpool")) {
			if (!parse_size(val, vlen, &boot_config.pinpool_bytes)) {
				st->why = "bad-pinpool";
				return PARSE_FAILED;
			}
		} else if (word_is(word, klen, "dumpid")) {
			if (!hex_to_bytes(val, vlen, boot_config.dump_id, 16)) {
				st->why = "bad-dumpid";
				return PARSE_FAILED;
			}
		} else if (word_is(word, klen, "fill")) {
			if (vlen == 3 && strncmp(val, "off", 3) == 0) {
				boot_config.fill = false;
			} else if (vlen == 16 && parse_u64_hex(val, vlen, &boot_config.fill_seed)) {
				boot_config.fill = true;
			} else {
				st->why = "bad-fill";
				return PARSE_FAILED;
			}
		} else if (word_is(word, klen, "compress")) {
			if (vlen == 3 && strncmp(val, "lz4", 3) == 0) {
				boot_config.compression = DUMP_COMPRESSION_LZ4;
			} else if (vlen == 3 && strncmp(val, "off", 3) == 0) {
				boot_config.compression = DUMP_COMPRESSION_NONE;
			} else {
				st->why = "bad-compress";
				return PARSE_FAILED;
			}
		} else if (word_is(word, klen, "workload")) {
			if (vlen == 2 && strncmp(val, "on", 2) == 0) {
				boot_config.workload = true;
			} else if (vlen == 3 && strncmp(val, "off", 3) == 0) {
				boot_config.workload = false;
			} else {
				st->why = "bad-workload";
				return PARSE_FAILED;
			}
		} else if (word_is(word, klen, "iotimeout")) {
			uint64_t ms;

			if (!parse_u64_dec(val, vlen, &ms) || ms == 0 || ms > 3600000) {
				st->why = "bad-iotimeout";
				return PARSE_FAILED;
			}
			boot_config.iotimeout_ms = (uint32_t)ms;
		} else if (word_is(word, klen, "netaddr")) {
			if (!parse_ipv4(val, vlen, &boot_config.net.ip)) {
				st->why = "bad-netdump";
				return PARSE_FAILED;
			}
			boot_config.netaddr_set = true;
		} else if (word_is(word, klen, "netserver")) {
			if (!parse_ipv4_port(val, vlen, &boot_config.net.server_ip, &boot_config.net.server_port)) {
				st->why = "bad-netdump";
				return PARSE_FAILED;
			}
			boot_config.netserver_set = true;
		} else if (word_is(word, klen, "netmtu")) {
			if (!parse_u32_range(val, vlen, NETDUMP_MTU_MIN, NETDUMP_MTU_MAX, &boot_config.net.mtu)) {
				st->why = "bad-netdump";
				return PARSE_FAILED;
			}
		} else if (word_is(word, klen, "netwindow")) {
			if (!parse_u32_range(val, vlen, 1, NETDUMP_WINDOW_MAX, &boot_config.net.window)) {
				st->why = "bad-netdump";
				return PARSE_FAILED;
			}
		} else if (word_is(word, klen, "testfault")) {
			if (!testfault_parse(val, vlen)) {
				st->why = "bad-testfault";
				return PARSE_FAILED;
			}
		} else {
			st->word = word;
			st->wlen = wlen;
			st->p = p;
			st->first = false;
			return PARSE_UNKNOWN;
		}
	}
	return PARSE_DONE;
}

bool cmdline_parse(const char *p, const char **why)
{
	struct parse_state st = { .p = p, .first = true };

	for (;;) {
		uint64_t r = run_unprivileged(parse_words, (uintptr_t)&st, 0, 0);

		if (r == PARSE_DONE)
			break;
		if (r == PARSE_FAILED) {
			*why = st.why;
			return false;
		}
		printf("cmdline: ignoring unknown parameter '%.*s'\n", (int)st.wlen, st.word);
	}
	/* A network dump needs both ends of its link. */
	if (((boot_config.dumpdev_set && boot_config.dumpdev.on_nic) ||
	     (boot_config.dumpdev2_set && boot_config.dumpdev2.on_nic)) &&
	    (!boot_config.netaddr_set || !boot_config.netserver_set)) {
		printf("cmdline: a network dumpdev needs netaddr= and netserver=\n");
		*why = "bad-netdump";
		return false;
	}
	return true;
}
