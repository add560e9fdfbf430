#ifndef KERN_MULTIBOOT_H
#define KERN_MULTIBOOT_H

#include <stdbool.h>
#include <stdint.h>

#define MULTIBOOT_BOOTLOADER_MAGIC	0x2badb002
#define BOOT_CMDLINE_MAX		1024
#define BOOT_MMAP_MAX			64

#define MMAP_TYPE_USABLE		1

struct boot_mmap_entry {
	uint64_t base;
	uint64_t len;
	uint32_t type;
};

/* The kernel's own copy of what the loader handed over. */
struct boot_info {
	uint32_t magic;
	uint32_t mbi_addr;
	uint32_t flags;
	uint32_t mem_lower_kb, mem_upper_kb;
	char cmdline[BOOT_CMDLINE_MAX];
	bool cmdline_truncated;
	char loader_name[64];
	struct boot_mmap_entry mmap[BOOT_MMAP_MAX];
	int nmmap;
	bool mmap_truncated;
	/* Highest address the loader's data reached (to check it is not inside our image). */
	uint64_t loader_data_end;
};

extern struct boot_info boot_info;

/*
 * Copy the multiboot info, command line and memory map into boot_info. Must run before
 * anything writes RAM outside the kernel image: QEMU puts these right after the image, where
 * the fill pattern goes. Returns false (with a reason) if the handover is unusable.
 */
bool multiboot_copy(uint32_t magic, uint32_t mbi_phys, const char **why);

#endif
