/*
 * errmsg.c - see errmsg.h.
 */
#include "core/errmsg.h"

#include <stdarg.h>
#include <stdio.h>

void errmsg(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || cap == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}
