/* Virtio 1.x definitions shared by the transport and the device drivers (split rings only). */
#ifndef DRIVERS_VIRTIO_H
#define DRIVERS_VIRTIO_H

#include <stdint.h>

#define VIRTIO_STATUS_ACKNOWLEDGE	0x01
#define VIRTIO_STATUS_DRIVER		0x02
#define VIRTIO_STATUS_DRIVER_OK		0x04
#define VIRTIO_STATUS_FEATURES_OK	0x08
#define VIRTIO_STATUS_NEEDS_RESET	0x40
#define VIRTIO_STATUS_FAILED		0x80

#define VIRTIO_F_VERSION_1		32
#define VIRTIO_F_ACCESS_PLATFORM	33

#define VIRTIO_MSI_NO_VECTOR		0xffff

#define VIRTQ_DESC_F_NEXT		1
#define VIRTQ_DESC_F_WRITE		2	/* device writes this buffer */
#define VIRTQ_AVAIL_F_NO_INTERRUPT	1
#define VIRTQ_USED_F_NO_NOTIFY		1	/* the device asks not to be kicked (spec 2.7.7) */

#define VIRTQ_MAX_SIZE			256

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[VIRTQ_MAX_SIZE];
	uint16_t used_event;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct virtq_used {
	uint16_t flags;
	uint16_t idx;
	struct virtq_used_elem ring[VIRTQ_MAX_SIZE];
	uint16_t avail_event;
};

/* Backing memory of one split virtqueue, each part on its own page (alignment rules of the
 * spec are 16/2/4 bytes; pages keep things simple to inspect in a dump). */
struct virtq_memory {
	struct virtq_desc desc[VIRTQ_MAX_SIZE];
	struct virtq_avail avail __attribute__((aligned(4096)));
	struct virtq_used used __attribute__((aligned(4096)));
} __attribute__((aligned(4096)));

struct virtq {
	uint16_t index;			/* queue number on the device */
	uint16_t size;			/* number of descriptors in use (power of two) */
	struct virtq_memory *mem;
	uintptr_t notify_addr;		/* where to write `index` to kick the device */
	uint16_t avail_idx;		/* our copy of avail.idx */
	uint16_t last_used_idx;		/* next used entry to consume */
};

#endif
