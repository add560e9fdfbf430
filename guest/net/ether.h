/* Ethernet II sizes, for the NIC drivers (dump/dumpnic.h) and the frames of net/inet.h. */
#ifndef NET_ETHER_H
#define NET_ETHER_H

#define ETHER_ADDR_LEN		6
#define ETHER_HEADER		14	/* destination, source, type */
#define ETHER_MIN_FRAME		60	/* without the FCS: a NIC's DUMPQUERY min_tsize */

#endif
