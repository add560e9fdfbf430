/* Multiboot (v1) handover: copied into the kernel's storage first thing. */
#include "kern/multiboot.h"
#include "arch/x86/boot.h"
#include "lib/string.h"

#define MBI_FLAG_MEM		(1u << 0)
#define MBI_FLAG_CMDLINE	(1u << 2)
#define MBI_FLAG_MMAP		(1u << 6)
#define MBI_FLAG_LOADER_NAME	(1u << 9)

struct multiboot_info {
	uint32_t flags;
	uint32_t mem_lower;
	uint32_t mem_upper;
	uint32_t boot_device;
	uint32_t cmdline;
	uint32_t mods_count;
	uint32_t mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length;
	uint32_t mmap_addr;
	uint32_t drives_length;
	uint32_t drives_addr;
	uint32_t config_table;
	uint32_t boot_loader_name;
} __attribute__((packed));

struct multiboot_mmap {
	uint32_t size;	/* of the rest of the entry */
	uint64_t base;
	uint64_t len;
	uint32_t type;
} __attribute__((packed));

struct boot_info boot_info;

static bool inside_image(uint64_t addr, uint64_t len)
{
	return addr < (uintptr_t)__kernel_end && addr + len > (uintptr_t)__kernel_start;
}

static void note_end(uint64_t addr, uint64_t len)
{
	if (addr + len > boot_info.loader_data_end)
		boot_info.loader_data_end = addr + len;
}

static void copy_string(char *dst, size_t size, uint32_t src, bool *truncated)
{
	const char *s = (const char *)(uintptr_t)src;
	size_t n = strnlen(s, size);

	if (truncated)
		*truncated = n == size;
	if (n == size)
		n = size - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
	note_end(src, n + 1);
}

bool multiboot_copy(uint32_t magic, uint32_t mbi_phys, const char **why)
{
	const struct multiboot_info *mbi = (const void *)(uintptr_t)mbi_phys;

	memset(&boot_info, 0, sizeof(boot_info));
	boot_info.magic = magic;
	boot_info.mbi_addr = mbi_phys;
	if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
		*why = "not-booted-by-multiboot";
		return false;
	}
	/* .bss was zeroed at entry: the handover must not have been inside it. */
	if (inside_image(mbi_phys, sizeof(*mbi))) {
		*why = "multiboot-info-inside-kernel-image";
		return false;
	}
	note_end(mbi_phys, sizeof(*mbi));
	boot_info.flags = mbi->flags;

	if (mbi->flags & MBI_FLAG_MEM) {
		boot_info.mem_lower_kb = mbi->mem_lower;
		boot_info.mem_upper_kb = mbi->mem_upper;
	}
	if (mbi->flags & MBI_FLAG_CMDLINE) {
		if (inside_image(mbi->cmdline, 1)) {
			*why = "cmdline-inside-kernel-image";
			return false;
		}
		copy_string(boot_info.cmdline, sizeof(boot_info.cmdline), mbi->cmdline,
			    &boot_info.cmdline_truncated);
	}
	if (mbi->flags & MBI_FLAG_LOADER_NAME)
		copy_string(boot_info.loader_name, sizeof(boot_info.loader_name),
			    mbi->boot_loader_name, 0);

	if (mbi->flags & MBI_FLAG_MMAP) {
		uint64_t p = mbi->mmap_addr, end = (uint64_t)mbi->mmap_addr + mbi->mmap_length;

		if (inside_image(p, mbi->mmap_length)) {
			*why = "memory-map-inside-kernel-image";
			return false;
		}
		note_end(p, mbi->mmap_length);
		while (p + sizeof(struct multiboot_mmap) <= end) {
			const struct multiboot_mmap *e = (const void *)(uintptr_t)p;

			if (boot_info.nmmap == BOOT_MMAP_MAX) {
				boot_info.mmap_truncated = true;
				break;
			}
			boot_info.mmap[boot_info.nmmap++] =
				(struct boot_mmap_entry){ e->base, e->len, e->type };
			p += (uint64_t)e->size + 4;
		}
	} else if (mbi->flags & MBI_FLAG_MEM) {
		/* No map: synthesise one from the two classic numbers. */
		boot_info.mmap[0] = (struct boot_mmap_entry){ 0, (uint64_t)mbi->mem_lower * 1024,
							      MMAP_TYPE_USABLE };
		boot_info.mmap[1] = (struct boot_mmap_entry){ 1ull << 20, (uint64_t)mbi->mem_upper * 1024,
							      MMAP_TYPE_USABLE };
		boot_info.nmmap = 2;
	} else {
		*why = "no-memory-information";
		return false;
	}
	return true;
}
