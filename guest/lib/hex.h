#ifndef LIB_HEX_H
#define LIB_HEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses exactly 2*n hex digits into n bytes (in text order). */
bool hex_to_bytes(const char *s, size_t slen, uint8_t *out, size_t n);
/* Parses a decimal number (no sign); false on overflow or non-digit. */
bool parse_u64_dec(const char *s, size_t slen, uint64_t *out);
/* Parses up to 16 hex digits (no 0x prefix) as a 64-bit number. */
bool parse_u64_hex(const char *s, size_t slen, uint64_t *out);

#endif
