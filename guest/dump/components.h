#ifndef DUMP_COMPONENTS_H
#define DUMP_COMPONENTS_H

/*
 * The built-in components, registered in this order (the directory order):
 *   crash-record  the crash record (VOLATILE)
 *   kernel        text and rodata, then data+bss (VOLATILE: stacks, rings, buffers, ...)
 *   ram           every usable RAM region of the memory map minus the kernel image
 */
int dump_components_register(void);

#endif
