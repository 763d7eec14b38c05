/*
 * siphash.h - SipHash-1-3, the keyed hash for tables whose keys come from
 * clients (subjects, client IPs, key ids): with a random per-table key an
 * attacker cannot aim many keys at one bucket.
 */
#ifndef SB_SIPHASH_H
#define SB_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t siphash13(uint64_t k0, uint64_t k1, const void *p, size_t len);

#endif
