/*
 * errmsg.h - formatting an error message into a caller's buffer, the way
 * every "char *err, size_t errlen" out-parameter here is filled. A NULL
 * or empty buffer is allowed (the message is dropped).
 */
#ifndef SB_ERRMSG_H
#define SB_ERRMSG_H

#include <stddef.h>

void errmsg(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
