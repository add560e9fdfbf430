/* Kernel command line: dumpdev, dumpid, fill, iotimeout (docs/guest-interface.md). */
#include "kern/cmdline.h"
#include "lib/hex.h"
#include "lib/printf.h"
#include "lib/string.h"

struct boot_config boot_config = {
	.iotimeout_ms = IOTIMEOUT_DEFAULT_MS,
};

static bool word_is(const char *key, size_t klen, const char *name)
{
	return klen == strlen(name) && strncmp(key, name, klen) == 0;
}

static bool parse_dumpdev(const char *v, size_t vlen)
{
	static const char prefix[] = "virtio-blk";
	size_t plen = sizeof(prefix) - 1;
	uint64_t n = 0;

	if (vlen >= sizeof(boot_config.dumpdev) || vlen < plen || strncmp(v, prefix, plen) != 0)
		return false;
	if (vlen > plen) {
		if (v[plen] != ':' || !parse_u64_dec(v + plen + 1, vlen - plen - 1, &n) || n > 31)
			return false;
	}
	memcpy(boot_config.dumpdev, v, vlen);
	boot_config.dumpdev[vlen] = '\0';
	boot_config.dumpdev_index = (int)n;
	boot_config.dumpdev_set = true;
	return true;
}

bool cmdline_parse(const char *p, const char **why)
{
	bool first = true;

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
			if (!parse_dumpdev(val, vlen)) {
				*why = "bad-dumpdev";
				return false;
			}
		} else if (word_is(word, klen, "dumpid")) {
			if (!hex_to_bytes(val, vlen, boot_config.dump_id, 16)) {
				*why = "bad-dumpid";
				return false;
			}
		} else if (word_is(word, klen, "fill")) {
			if (vlen == 3 && strncmp(val, "off", 3) == 0) {
				boot_config.fill = false;
			} else if (vlen == 16 && parse_u64_hex(val, vlen, &boot_config.fill_seed)) {
				boot_config.fill = true;
			} else {
				*why = "bad-fill";
				return false;
			}
		} else if (word_is(word, klen, "iotimeout")) {
			uint64_t ms;

			if (!parse_u64_dec(val, vlen, &ms) || ms == 0 || ms > 3600000) {
				*why = "bad-iotimeout";
				return false;
			}
			boot_config.iotimeout_ms = (uint32_t)ms;
		} else {
			printf("cmdline: ignoring unknown parameter '%.*s'\n", (int)wlen, word);
		}
	}
	return true;
}
