/*
 * listen.h - listening sockets, one per loop, sharing a port with
 * SO_REUSEPORT so the kernel balances new connections across loops
 * without a shared accept lock.
 */
#ifndef SB_LISTEN_H
#define SB_LISTEN_H

#include <stddef.h>

#include <uv.h>

#include "net/loop.h"

typedef void (*listen_accept_fn)(loop_t *l, uv_stream_t *server);

/* Opens a listening socket on host:port for loop l (port 0: any free port;
 * *bound_port receives the port actually bound). Must run before the loop
 * thread starts. 0, or -1 with err filled. */
int listen_start(loop_t *l, const char *host, int port, int *bound_port,
                 listen_accept_fn cb, char *err, size_t errlen);
/* Closes loop l's listener (on l's thread). */
void listen_stop(loop_t *l);

#endif
