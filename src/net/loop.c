/*
 * loop.c - loop threads, the cross-thread task queue, the flush hook and
 * the timer wheel. See loop.h.
 */
#include "net/loop.h"

#include <stdlib.h>

#include "ops/log.h"
#include "ops/metrics.h"

struct loop_task {
    struct loop_task *next;
    void (*fn)(void *);
    void *arg;
};

static _Thread_local loop_t *current_loop;

loop_t *loop_current(void) { return current_loop; }
uint64_t loop_now(loop_t *l) { return uv_now(&l->uv); }

static void run_tasks(uv_async_t *a)
{
    loop_t *l = a->data;
    struct loop_task *t, *next;

    uv_mutex_lock(&l->lock);
    t = l->tasks_head;
    l->tasks_head = l->tasks_tail = NULL;
    uv_mutex_unlock(&l->lock);
    for (; t; t = next) {
        next = t->next;
        t->fn(t->arg);
        free(t);
    }
}

int loop_post(loop_t *l, void (*fn)(void *), void *arg)
{
    struct loop_task *t = malloc(sizeof *t);

    if (!t)
        return -1;
    t->next = NULL;
    t->fn = fn;
    t->arg = arg;
    uv_mutex_lock(&l->lock);
    if (l->tasks_tail)
        l->tasks_tail->next = t;
    else
        l->tasks_head = t;
    l->tasks_tail = t;
    uv_mutex_unlock(&l->lock);
    uv_async_send(&l->wakeup);
    return 0;
}

static void flush_pending(uv_prepare_t *p)
{
    loop_t *l = p->data;

    /* flush_cb unlinks each node; writes that cannot finish re-link later
     * from their write callbacks, so this loop terminates. */
    while (!list_empty(&l->flush_list))
        l->flush_cb(l->flush_list.next);
}

static void wheel_tick(uv_timer_t *h)
{
    loop_t *l = h->data;
    uint64_t now = uv_now(&l->uv);
    list_node_t due, *n, *tmp;
    int steps = 0;

    list_init(&due);
    while (l->wheel_now + LOOP_TICK_MS <= now && steps++ < LOOP_WHEEL_SLOTS) {
        list_node_t *slot;
        l->wheel_now += LOOP_TICK_MS;
        slot = &l->wheel[(l->wheel_now / LOOP_TICK_MS) % LOOP_WHEEL_SLOTS];
        list_foreach_safe(n, tmp, slot) {
            loop_timer_t *t = container_of(n, loop_timer_t, node);
            if (t->expire <= now) {
                list_remove(n);
                list_insert_tail(&due, n);
            }
        }
    }
    if (l->wheel_now + LOOP_TICK_MS <= now)   /* fell behind by a whole turn */
        l->wheel_now = now - now % LOOP_TICK_MS;
    while (!list_empty(&due)) {
        loop_timer_t *t = container_of(due.next, loop_timer_t, node);
        list_remove(&t->node);
        t->cb(t);
    }
}

void loop_timer_init(loop_timer_t *t, void (*cb)(loop_timer_t *t))
{
    list_init(&t->node);
    t->expire = 0;
    t->cb = cb;
}

void loop_timer_start(loop_t *l, loop_timer_t *t, uint64_t delay_ms)
{
    uint64_t slot;

    list_remove(&t->node);
    t->expire = uv_now(&l->uv) + delay_ms;
    slot = (t->expire + LOOP_TICK_MS - 1) / LOOP_TICK_MS;
    if (slot * LOOP_TICK_MS <= l->wheel_now)   /* never into a passed slot */
        slot = l->wheel_now / LOOP_TICK_MS + 1;
    list_insert_tail(&l->wheel[slot % LOOP_WHEEL_SLOTS], &t->node);
}

void loop_timer_stop(loop_timer_t *t) { list_remove(&t->node); }

int loop_init(loop_t *l, int index)
{
    int rc;

    l->index = index;
    list_init(&l->flush_list);
    list_init(&l->conns);
    for (int i = 0; i < LOOP_WHEEL_SLOTS; i++)
        list_init(&l->wheel[i]);
    if ((rc = uv_loop_init(&l->uv)))
        return rc;
    if ((rc = uv_mutex_init(&l->lock)))
        return rc;
    uv_async_init(&l->uv, &l->wakeup, run_tasks);
    l->wakeup.data = l;
    uv_prepare_init(&l->uv, &l->flush);
    l->flush.data = l;
    uv_prepare_start(&l->flush, flush_pending);
    uv_timer_init(&l->uv, &l->tick);
    l->tick.data = l;
    l->wheel_now = uv_now(&l->uv) - uv_now(&l->uv) % LOOP_TICK_MS;
    uv_timer_start(&l->tick, wheel_tick, LOOP_TICK_MS, LOOP_TICK_MS);
    return 0;
}

static void loop_main(void *arg)
{
    loop_t *l = arg;

    current_loop = l;
    metrics_thread_init(l->index);
    uv_run(&l->uv, UV_RUN_DEFAULT);
}

int loop_start(loop_t *l)
{
    return uv_thread_create(&l->thread, loop_main, l);
}

static void close_own_handles(void *arg)
{
    loop_t *l = arg;

    l->stopping = true;
    run_tasks(&l->wakeup);        /* nothing may post after this point */
    uv_close((uv_handle_t *)&l->wakeup, NULL);
    uv_close((uv_handle_t *)&l->flush, NULL);
    uv_close((uv_handle_t *)&l->tick, NULL);
}

void loop_stop_join(loop_t *l)
{
    if (loop_post(l, close_own_handles, l) == 0)
        uv_thread_join(&l->thread);
    if (uv_loop_close(&l->uv))
        LOG_WARN("loop closed with open handles", "\"loop\":%d", l->index);
    uv_mutex_destroy(&l->lock);
}
