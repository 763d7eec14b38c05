/*
 * cidr.h - IPv4 and IPv6 CIDR allowlists.
 *
 * One address space: every address is held as 16 bytes, IPv4 as its
 * IPv4-mapped IPv6 form ::ffff:a.b.c.d, and an IPv4 prefix /n becomes /96+n.
 * So a peer the server sees as "::ffff:10.1.2.3" (a dual-stack socket)
 * matches "10.0.0.0/8" exactly as "10.1.2.3" does, and matching is one
 * masked compare whatever the families. Consequences, by design:
 *   - "::/0" matches every peer, IPv4 ones included; "0.0.0.0/0" matches
 *     every IPv4 peer (and ::ffff:0:0/96) but no other IPv6 peer;
 *   - "::ffff:0:0/96" written in IPv6 form means the same as "0.0.0.0/0";
 *   - other IPv6 embeddings of IPv4 (deprecated ::a.b.c.d, NAT64
 *     64:ff9b::/96, 6to4) are plain IPv6 addresses here.
 *
 * Syntax, strict (parsed with inet_pton):
 *   entry  = address [ "/" prefix ]
 *   address: dotted quad with exactly four decimal parts (no leading zeros,
 *            no shorthand such as "10.1"), or any RFC 4291 IPv6 text form
 *            (no zone "%eth0", no brackets);
 *   prefix : 0..32 for IPv4, 0..128 for IPv6, decimal without sign or
 *            leading zero; absent means a single host (/32 or /128).
 * Host bits below the prefix are accepted and masked off: "10.1.2.3/8" is
 * the network 10.0.0.0/8 (cidr_format shows the normalised form, so a
 * config UI can show the user what was meant).
 *
 * A list is entries separated by a comma and/or whitespace (spaces, tabs,
 * newlines): "10.0.0.0/8, 192.168.1.7 ::1". Whitespace around entries is
 * free; an empty entry (",,", a leading or trailing ',') is an error. An
 * empty or all-whitespace string is a valid empty list, which matches
 * nothing: whether "no list" means "allow all" is the caller's decision.
 *
 * All functions are thread-safe; a parsed list is read-only and may be
 * shared by any number of threads.
 */
#ifndef SB_CIDR_H
#define SB_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CIDR_LIST_MAX 1024         /* entries in one list */
#define CIDR_TEXT_MAX 64           /* longest entry text accepted */
#define CIDR_FORMAT_LEN 50         /* cidr_format: "<ipv6 text>/128" + NUL */

/* Errors of cidr_parse / cidr_addr_parse (negative) */
#define CIDR_EEMPTY (-1)           /* empty text */
#define CIDR_EADDR (-2)            /* not an IPv4 or IPv6 address */
#define CIDR_EPREFIX (-3)          /* prefix missing, not a number, or too long */
#define CIDR_ETOOLONG (-4)         /* text longer than CIDR_TEXT_MAX */

typedef struct cidr {              /* public, plain value */
    uint8_t net[16];               /* network, host bits zero (mapped IPv4) */
    uint8_t bits;                  /* prefix in the 128-bit space */
    bool v4;                       /* written as IPv4 (for cidr_format) */
} cidr_t;

typedef struct cidr_list {         /* public, read-only after parse */
    cidr_t *v;                     /* owned; NULL when n == 0 */
    size_t n;
} cidr_list_t;

/* Parses one entry s[0..len) (no surrounding whitespace) into *out.
 * Returns 0, or a CIDR_E* code (*out unspecified). */
int cidr_parse(const char *s, size_t len, cidr_t *out);

/* A short English text for a CIDR_E* code ("unknown error" otherwise). */
const char *cidr_strerror(int err);

/* Parses a bare address s[0..len) into its 16-byte form (IPv4 mapped).
 * Returns 0 or a CIDR_E* code. */
int cidr_addr_parse(const char *s, size_t len, uint8_t out[16]);

/* True when addr (16-byte form) lies inside c. */
bool cidr_match(const cidr_t *c, const uint8_t addr[16]);

/* Writes the normalised text of c ("10.0.0.0/8", "2001:db8::/32") with a
 * NUL into out, which holds CIDR_FORMAT_LEN bytes. Returns its length. */
size_t cidr_format(const cidr_t *c, char out[CIDR_FORMAT_LEN]);

/*
 * Parses a list s[0..len) into *out (any previous content is not freed).
 * Returns 0, the caller then owns out->v (cidr_list_free). On error
 * returns -1, leaves *out empty, and when err is not NULL writes a
 * NUL-terminated message of at most errcap bytes naming the entry, e.g.
 * `entry 2 "10.0.0.0/33": bad prefix length`; an entry's bytes are echoed
 * truncated and with non-printable bytes as '?'. Errors: a bad entry, an
 * empty entry, more than CIDR_LIST_MAX entries, out of memory.
 */
int cidr_list_parse(const char *s, size_t len, cidr_list_t *out, char *err,
                    size_t errcap);

/* Frees the entries and leaves the list empty; NULL or empty is fine. */
void cidr_list_free(cidr_list_t *l);

/* True when the peer address ip[0..len) (text as the server has it:
 * "127.0.0.1", "::1", "::ffff:10.1.2.3") is in some entry of l. False for
 * an empty list and for text that is not an address. */
bool cidr_list_match(const cidr_list_t *l, const char *ip, size_t len);

/* The same for an address already in 16-byte form. */
bool cidr_list_match_addr(const cidr_list_t *l, const uint8_t addr[16]);

#endif
