/*
 * loop.h - event loop threads.
 *
 * Switchboard runs N libuv loops, one thread each (one per core by
 * default). A loop owns its connections, its listener socket (the kernel
 * spreads new connections over the loops with SO_REUSEPORT), its hub and
 * its timers; nothing a loop owns is touched by another thread. Other
 * threads talk to a loop only through loop_post(), which queues a task and
 * wakes the loop.
 *
 * Output is batched: connections with something to write put themselves
 * on the loop's flush list, and a prepare hook (run just before the loop
 * sleeps) flushes them all, each with one writev.
 *
 * Timers: one wheel per loop (100 ms resolution) driven by one uv timer;
 * connections embed a loop_timer_t, so arming a timeout never allocates
 * and costs O(1).
 */
#ifndef SB_LOOP_H
#define SB_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "core/list.h"

typedef struct loop loop_t;

typedef struct loop_timer {
    list_node_t node;
    uint64_t expire;                    /* loop time in ms */
    void (*cb)(struct loop_timer *t);
} loop_timer_t;

#define LOOP_READBUF 65536
#define LOOP_WHEEL_SLOTS 512
#define LOOP_TICK_MS 100

struct loop {
    uv_loop_t uv;
    int index;
    uv_thread_t thread;
    /* cross-thread tasks */
    uv_async_t wakeup;
    uv_mutex_t lock;
    struct loop_task *tasks_head, *tasks_tail;
    /* output batching */
    uv_prepare_t flush;
    list_node_t flush_list;
    void (*flush_cb)(list_node_t *node);  /* set by conn.c */
    /* timers */
    uv_timer_t tick;
    list_node_t wheel[LOOP_WHEEL_SLOTS];
    uint64_t wheel_now;                   /* last processed tick, ms */
    /* owned objects, by other modules (public, read by owners only) */
    list_node_t conns;                    /* conn_t.all_node */
    uint64_t nconns;
    void *hub;                            /* hub_t of this loop */
    void *listener;                       /* listener of this loop */
    bool stopping;
    char readbuf[LOOP_READBUF];           /* shared by this loop's reads */
};

/* Initialises loop i (not yet running). 0 or a libuv error. */
int loop_init(loop_t *l, int index);
/* Starts the loop's thread. */
int loop_start(loop_t *l);
/* Asks the loop to stop once it runs out of handles, joins its thread and
 * closes it. Every handle the loop owns must be closing already. */
void loop_stop_join(loop_t *l);

/* Runs fn(arg) on loop l's thread, soon. Thread-safe; never blocks on the
 * loop. Returns 0, or -1 on allocation failure (fn is then not called). */
int loop_post(loop_t *l, void (*fn)(void *), void *arg);

/* The loop running on the calling thread, or NULL off-loop. */
loop_t *loop_current(void);
uint64_t loop_now(loop_t *l);

void loop_timer_init(loop_timer_t *t, void (*cb)(loop_timer_t *t));
/* (Re)arms t to fire after delay_ms, rounded up to the tick. */
void loop_timer_start(loop_t *l, loop_timer_t *t, uint64_t delay_ms);
void loop_timer_stop(loop_timer_t *t);
static inline bool loop_timer_active(const loop_timer_t *t)
{
    return !list_empty(&t->node);
}

#endif
