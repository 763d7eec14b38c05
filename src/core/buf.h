/*
 * buf.h - capped growable byte buffers and refcounted shared buffers.
 *
 * buf_t is the one growable buffer of the code base. Every buffer gets a cap
 * when it is initialised; an append that would pass the cap fails with
 * BUF_ETOOBIG and leaves the buffer unchanged, so a length read from the
 * wire can never make us allocate without bound.
 *
 * sbuf_t is an immutable, atomically refcounted block of bytes. A published
 * message is encoded once per protocol into an sbuf and every subscriber's
 * write queue holds a reference to the same bytes, on any loop thread.
 */
#ifndef SB_BUF_H
#define SB_BUF_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define BUF_ENOMEM (-1)
#define BUF_ETOOBIG (-2)

typedef struct buf {
    char *data;    /* NUL-terminated when non-NULL, for convenience */
    size_t len;
    size_t cap;    /* allocated bytes */
    size_t max;    /* cap on len, fixed at init */
} buf_t;

void buf_init(buf_t *b, size_t max);
void buf_free(buf_t *b);
void buf_reset(buf_t *b);                       /* len = 0, keeps memory */
int buf_reserve(buf_t *b, size_t extra);        /* 0 / BUF_E* */
int buf_append(buf_t *b, const void *p, size_t n);
int buf_append_str(buf_t *b, const char *s);
int buf_append_byte(buf_t *b, char c);
int buf_printf(buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf_t *b, const char *fmt, va_list ap);
int buf_append_u64(buf_t *b, uint64_t v);
void buf_consume(buf_t *b, size_t n);           /* drop n bytes from the front */
/* Hands the bytes to the caller (who frees them); the buffer becomes empty. */
char *buf_steal(buf_t *b, size_t *len);

typedef struct sbuf {
    atomic_int refs;
    size_t len;
    char data[];
} sbuf_t;

/* A new sbuf with one reference; NULL on allocation failure. */
sbuf_t *sbuf_new(size_t len);
sbuf_t *sbuf_from(const void *p, size_t len);
static inline sbuf_t *sbuf_ref(sbuf_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}
void sbuf_unref(sbuf_t *s);

#endif
