#ifndef DUMP_COMPONENTS_H
#define DUMP_COMPONENTS_H

/*
 * The built-in components, dmp_ctl routines registered in this order (the directory order),
 * each with a classic table:
 *   crash-record  the crash record (VOLATILE)
 *   kernel        text, rodata, data, dumpstate (VOLATILE: the dump path's own state,
 *                 lib/dumpstate.h: stacks, rings, buffers, ...), bss
 *   ram           every usable RAM region of the memory map minus the kernel image and the
 *                 pinned pool
 * Needs the memory map, paging and the pinned pool. 0, or dmp_ctl's error.
 */
int dump_components_register(void);

#endif
