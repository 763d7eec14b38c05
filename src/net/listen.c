/*
 * listen.c - per-loop SO_REUSEPORT listeners. See listen.h.
 *
 * Out of file descriptors (EMFILE/ENFILE), a pending connection can be
 * neither accepted nor left alone: left in the queue, it makes the socket
 * readable forever and the loop spins. Each listener therefore keeps one
 * spare descriptor; when accepting fails for lack of descriptors it frees
 * the spare, accepts and closes the pending connection at once (the client
 * sees the connection close rather than hang), and takes the spare again.
 */
#include "net/listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include "ops/log.h"
#include "ops/metrics.h"

typedef struct listener {
    uv_tcp_t tcp;
    loop_t *loop;
    listen_accept_fn cb;
    int spare_fd;                 /* released to shed a connection on EMFILE */
    uint64_t last_warn_ms;
} listener_t;

static void shed_connection(listener_t *ls)
{
    uv_os_fd_t fd;
    int c;

    if (ls->spare_fd >= 0) {
        close(ls->spare_fd);
        ls->spare_fd = -1;
    }
    if (uv_fileno((uv_handle_t *)&ls->tcp, &fd) == 0 &&
        (c = accept4(fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        close(c);
        METRIC_INC(refused_conns);
    }
    ls->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (loop_now(ls->loop) - ls->last_warn_ms > 10000) {
        ls->last_warn_ms = loop_now(ls->loop);
        LOG_WARN("out of file descriptors: refusing connections",
                 "\"loop\":%d", ls->loop->index);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    listener_t *ls = server->data;

    if (status == 0)
        ls->cb(ls->loop, server);
    else if (status == UV_EMFILE || status == UV_ENFILE)
        shed_connection(ls);
}

static int open_socket(const char *host, int port, int *bound_port, char *err,
                       size_t errlen)
{
    struct sockaddr_storage sa;
    socklen_t salen;
    int fd = -1, one = 1;

    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) == 0) {
        salen = sizeof(struct sockaddr_in);
    } else if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) == 0) {
        salen = sizeof(struct sockaddr_in6);
    } else {
        snprintf(err, errlen, "host \"%s\" is not an IP address", host);
        return -1;
    }
    fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&sa, salen) || listen(fd, 1024)) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    salen = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &salen);
    *bound_port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                                 : ((struct sockaddr_in *)&sa)->sin_port);
    return fd;
}

static void free_listener(uv_handle_t *h);

int listen_start(loop_t *l, const char *host, int port, int *bound_port,
                 listen_accept_fn cb, char *err, size_t errlen)
{
    listener_t *ls = calloc(1, sizeof *ls);
    int fd;

    if (!ls) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    fd = open_socket(host, port, bound_port, err, errlen);
    if (fd < 0) {
        free(ls);
        return -1;
    }
    ls->loop = l;
    ls->cb = cb;
    ls->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    uv_tcp_init(&l->uv, &ls->tcp);
    ls->tcp.data = ls;
    if (uv_tcp_open(&ls->tcp, fd) || uv_listen((uv_stream_t *)&ls->tcp, 1024, on_connection)) {
        snprintf(err, errlen, "cannot listen on %s:%d", host, port);
        uv_close((uv_handle_t *)&ls->tcp, free_listener);
        return -1;
    }
    l->listener = ls;
    return 0;
}

static void free_listener(uv_handle_t *h)
{
    listener_t *ls = h->data;

    if (ls->spare_fd >= 0)
        close(ls->spare_fd);
    free(ls);
}

void listen_stop(loop_t *l)
{
    listener_t *ls = l->listener;

    if (!ls)
        return;
    l->listener = NULL;
    uv_close((uv_handle_t *)&ls->tcp, free_listener);
}
