/*
 * store.c - what every store backend shares: the stream configuration, the
 * subject -> stream mapping, and dispatch through the backend table.
 *
 * store_open deep-copies the configured streams (the caller's config may be
 * freed as soon as store_open returns), checks them, and hands the backend a
 * copy of the config whose `streams` point at that copy; the copy lives until
 * store_close has closed the backend, so a backend may keep borrowing it and
 * may call store_stream_for from any of its threads. Stream lookup reads only
 * that immutable copy, so it takes no lock.
 *
 * The limits of the interface (dedup keys, metadata names and values) are
 * checked here, once for every backend; a backend may rely on them.
 */
#include "store/store.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/subject.h"

struct store {
    const store_backend_t *be;
    void *impl;
    store_stream_cfg_t *streams;
    size_t nstreams;
};

static const store_backend_t *const store_backends[] = {
    &store_sqlite_backend,
};

static char *store_strdup(const char *s)
{
    size_t len = strlen(s);
    char *p = malloc(len + 1);

    if (p)
        memcpy(p, s, len + 1);
    return p;
}

static void store_stream_free(store_stream_cfg_t *st)
{
    for (size_t i = 0; st->subjects && i < st->nsubjects; i++)
        free(st->subjects[i]);
    free(st->subjects);
    free(st->name);
}

static void store_streams_free(store_stream_cfg_t *streams, size_t n)
{
    for (size_t i = 0; streams && i < n; i++)
        store_stream_free(&streams[i]);
    free(streams);
}

/* Copies src into dst (zeroed by the caller). -1 on allocation failure, with
 * whatever was copied left in dst for store_stream_free. */
static int store_stream_copy(store_stream_cfg_t *dst,
                             const store_stream_cfg_t *src)
{
    *dst = *src;
    dst->name = NULL;
    dst->subjects = NULL;
    dst->nsubjects = 0;
    if (!(dst->name = store_strdup(src->name)))
        return -1;
    if (!(dst->subjects = calloc(src->nsubjects, sizeof(*dst->subjects))))
        return -1;
    for (; dst->nsubjects < src->nsubjects; dst->nsubjects++) {
        char *p = store_strdup(src->subjects[dst->nsubjects]);

        if (!p)
            return -1;
        dst->subjects[dst->nsubjects] = p;
    }
    return 0;
}

/* Checks one stream against the ones before it. NULL when valid, else why. */
static const char *store_stream_check(const store_stream_cfg_t *streams,
                                      size_t i)
{
    const store_stream_cfg_t *st = &streams[i];

    if (!st->name || !st->name[0])
        return "a stream has no name";
    if (!st->subjects || st->nsubjects == 0)
        return "a stream has no subjects";
    if (st->max_age_ms < 0 || st->max_msgs < 0 || st->max_bytes < 0)
        return "a stream has a negative limit";
    for (size_t j = 0; j < st->nsubjects; j++) {
        const char *p = st->subjects[j];

        if (!p || !subj_valid_pattern(p, strlen(p)))
            return "a stream has an invalid subject pattern";
    }
    for (size_t j = 0; j < i; j++)
        if (strcmp(streams[j].name, st->name) == 0)
            return "two streams have the same name";
    return NULL;
}

static const store_backend_t *store_backend_find(const char *name)
{
    if (!name)
        return store_backends[0];
    for (size_t i = 0; i < sizeof(store_backends) / sizeof(*store_backends);
         i++)
        if (strcmp(store_backends[i]->name, name) == 0)
            return store_backends[i];
    return NULL;
}

/* Opens the backend named by cfg. On failure err holds the reason. */
store_t *store_open(const store_cfg_t *cfg, char *err, size_t errlen)
{
    store_t *s = NULL;
    store_cfg_t copy;
    const char *why = NULL;

    assert(cfg && err && errlen > 0);
    err[0] = '\0';
    if (!cfg->post) {
        why = "store: no post function";
        goto fail;
    }
    if (!(s = calloc(1, sizeof(*s)))) {
        why = "store: out of memory";
        goto fail;
    }
    if (!(s->be = store_backend_find(cfg->backend))) {
        why = "store: unknown backend";
        goto fail;
    }
    if (cfg->nstreams &&
        !(s->streams = calloc(cfg->nstreams, sizeof(*s->streams)))) {
        why = "store: out of memory";
        goto fail;
    }
    for (; s->nstreams < cfg->nstreams; s->nstreams++) {
        if ((why = store_stream_check(cfg->streams, s->nstreams)))
            goto fail;
        if (store_stream_copy(&s->streams[s->nstreams],
                              &cfg->streams[s->nstreams])) {
            s->nstreams++;
            why = "store: out of memory";
            goto fail;
        }
    }
    copy = *cfg;
    copy.streams = s->streams;
    copy.nstreams = s->nstreams;
    if (!(s->impl = s->be->open(s, &copy, err, errlen)))
        goto fail;
    return s;

fail:
    if (why)
        snprintf(err, errlen, "%s", why);
    else if (!err[0])
        snprintf(err, errlen, "store: backend failed to open");
    if (s)
        store_streams_free(s->streams, s->nstreams);
    free(s);
    return NULL;
}

void store_close(store_t *s)
{
    if (!s)
        return;
    s->be->close(s->impl);
    store_streams_free(s->streams, s->nstreams);
    free(s);
}

const store_stream_cfg_t *store_stream_for(const store_t *s,
                                           const char *subject)
{
    size_t slen = strlen(subject);

    for (size_t i = 0; i < s->nstreams; i++) {
        const store_stream_cfg_t *st = &s->streams[i];

        for (size_t j = 0; j < st->nsubjects; j++)
            if (subj_match(st->subjects[j], strlen(st->subjects[j]), subject,
                           slen))
                return st;
    }
    return NULL;
}

int store_append(store_t *s, msg_t *m, void *target, store_append_cb cb,
                 void *arg)
{
    assert(m && cb);
    if (m->dedup && (!m->dedup[0] || strnlen(m->dedup, STORE_DEDUP_MAX + 1) >
                                         STORE_DEDUP_MAX))
        return STORE_EINVAL;
    return s->be->append(s->impl, m, target, cb, arg);
}

int store_read(store_t *s, const store_query_t *q, void *target,
               store_read_cb cb, void *arg)
{
    assert(q && cb);
    return s->be->read(s->impl, q, target, cb, arg);
}

int store_seq_before_time(store_t *s, int64_t time_ms, void *target,
                          store_seq_cb cb, void *arg)
{
    assert(cb);
    return s->be->seq_before_time(s->impl, time_ms, target, cb, arg);
}

int store_ping(store_t *s, void *target, store_done_cb cb, void *arg)
{
    assert(cb);
    return s->be->ping(s->impl, target, cb, arg);
}

int store_expire_now(store_t *s, void *target, store_done_cb cb, void *arg)
{
    assert(cb);
    return s->be->expire_now(s->impl, target, cb, arg);
}

void store_get_stats(store_t *s, store_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    s->be->get_stats(s->impl, out);
}

void store_msgs_free(msg_t **msgs, size_t n)
{
    for (size_t i = 0; msgs && i < n; i++)
        msg_unref(msgs[i]);
    free(msgs);
}

/* --- metadata ------------------------------------------------------------ */

/* A namespace, key or prefix: at most STORE_META_NAME_MAX bytes of
 * printable ASCII, and at least min_len. */
static bool store_meta_name_ok(const char *p, size_t min_len)
{
    size_t n = 0;

    if (!p)
        return false;
    for (; p[n]; n++)
        if (n == STORE_META_NAME_MAX || p[n] < 0x20 || p[n] > 0x7e)
            return false;
    return n >= min_len;
}

static bool store_meta_key_ok(const char *ns, const char *key)
{
    return store_meta_name_ok(ns, 1) && store_meta_name_ok(key, 1);
}

int store_meta_put(store_t *s, const char *ns, const char *key,
                   const void *value, size_t len, uint64_t expect_rev,
                   void *target, store_meta_put_cb cb, void *arg)
{
    assert(cb);
    if (!store_meta_key_ok(ns, key) || len > STORE_META_VALUE_MAX ||
        (len && !value))
        return STORE_EINVAL;
    return s->be->meta_put(s->impl, ns, key, value, len, expect_rev, target,
                           cb, arg);
}

int store_meta_delete(store_t *s, const char *ns, const char *key,
                      void *target, store_done_cb cb, void *arg)
{
    assert(cb);
    if (!store_meta_key_ok(ns, key))
        return STORE_EINVAL;
    return s->be->meta_delete(s->impl, ns, key, target, cb, arg);
}

int store_meta_get(store_t *s, const char *ns, const char *key,
                   void *target, store_meta_get_cb cb, void *arg)
{
    assert(cb);
    if (!store_meta_key_ok(ns, key))
        return STORE_EINVAL;
    return s->be->meta_get(s->impl, ns, key, target, cb, arg);
}

int store_meta_list(store_t *s, const char *ns, const char *prefix,
                    void *target, store_meta_list_cb cb, void *arg)
{
    assert(cb);
    if (!store_meta_name_ok(ns, 1) || !store_meta_name_ok(prefix, 0))
        return STORE_EINVAL;
    return s->be->meta_list(s->impl, ns, prefix, target, cb, arg);
}

int store_meta_entry_fill(store_meta_entry_t *e, const char *key, size_t klen,
                          const void *value, size_t len, uint64_t rev,
                          int64_t updated_ms)
{
    char *p = malloc(klen + 1 + len + 1);

    if (!p)
        return -1;
    memcpy(p, key, klen);
    p[klen] = '\0';
    if (len)
        memcpy(p + klen + 1, value, len);
    p[klen + 1 + len] = '\0';
    *e = (store_meta_entry_t){
        .key = p, .value = (unsigned char *)p + klen + 1, .len = len,
        .rev = rev, .updated_ms = updated_ms,
    };
    return 0;
}

/* An entry's key and value are one allocation, starting at key. */
void store_meta_entries_free(store_meta_entry_t *entries, size_t n)
{
    for (size_t i = 0; entries && i < n; i++)
        free(entries[i].key);
    free(entries);
}

int store_meta_load_sync(store_t *s, const char *ns, store_meta_each_fn each,
                         void *ctx)
{
    assert(each);
    if (!store_meta_name_ok(ns, 1))
        return STORE_EINVAL;
    return s->be->meta_load_sync(s->impl, ns, each, ctx);
}
