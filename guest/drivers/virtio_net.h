/*
 * virtio-net (modern virtio-pci only) as a network dump NIC (dump/dumpnic.h): `dumpdev=virtio-net[:N]`.
 * Everything goes through its DUMP_NIC_DRIVER entry; nothing else is exported.
 */
#ifndef DRIVERS_VIRTIO_NET_H
#define DRIVERS_VIRTIO_NET_H

#define VIRTIO_NET_PCI_DEVICE_MODERN		0x1041
#define VIRTIO_NET_PCI_DEVICE_TRANSITIONAL	0x1000

#endif
