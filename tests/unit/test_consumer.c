/*
 * test_consumer.c - the pull consumer state machine (hub/consumer.c):
 * deliveries, acks and the ack floor, redelivery and parking, the
 * persisted JSON, names and id parsing, and their limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hub/consumer.h"

static consumer_t *mk(void)
{
    const char *subj[] = {"webhooks.github.>"};
    consumer_t *c = cons_new("default", "key_abc");

    assert_non_null(c);
    assert_int_equal(cons_list_set(&c->subjects, subj, 1), 0);
    return c;
}

static void test_deliver_ack_floor(void **st)
{
    consumer_t *c = mk();

    (void)st;
    assert_int_equal(cons_deliver_new(c, 10, 1000), 0);
    assert_int_equal(cons_deliver_new(c, 12, 1000), 0);
    assert_int_equal(cons_deliver_new(c, 15, 1000), 0);
    assert_int_equal(c->delivered, 3);
    assert_int_equal(c->last_seq, 15);
    assert_int_equal(c->npending, 3);
    assert_int_equal(c->ack_floor, 0);
    /* acking the middle one leaves the floor */
    assert_int_equal(cons_ack(c, 12), 0);
    assert_int_equal(c->ack_floor, 0);
    assert_int_equal(c->npending, 2);
    /* acking the first moves it past the acked second */
    assert_int_equal(cons_ack(c, 10), 0);
    assert_int_equal(c->ack_floor, 2);
    /* unknown and repeated acks are refused and change nothing */
    assert_int_equal(cons_ack(c, 10), -1);
    assert_int_equal(cons_ack(c, 99), -1);
    assert_int_equal(c->npending, 1);
    assert_int_equal(cons_ack(c, 15), 0);
    assert_int_equal(c->ack_floor, 3);
    assert_int_equal(c->npending, 0);
    cons_free(c);
}

static void test_redeliver_and_park(void **st)
{
    consumer_t *c = mk();

    (void)st;
    assert_int_equal(cons_deliver_new(c, 5, 1000), 0);
    assert_int_equal(cons_deliver_new(c, 6, 1000), 0);
    assert_false(cons_due(c, 0, 1999, 1000));
    assert_true(cons_due(c, 0, 2000, 1000));
    assert_false(cons_due(c, 7, 99999, 1000));   /* out of range */
    assert_int_equal(cons_redeliver(c, 0, 2000, 2), 1);
    assert_int_equal(c->pending[0].deliveries, 2);
    assert_int_equal(c->redelivered, 1);
    assert_false(cons_due(c, 0, 2999, 1000));
    /* a second redelivery of the same message is not counted again */
    assert_int_equal(cons_redeliver(c, 1, 2000, 3), 1);
    assert_int_equal(cons_redeliver(c, 1, 3000, 3), 1);
    assert_int_equal(c->redelivered, 2);
    /* at max_deliver the entry is parked and the floor moves */
    assert_int_equal(cons_redeliver(c, 0, 3000, 2), 0);
    assert_int_equal(c->npending, 1);
    assert_int_equal(c->nparked, 1);
    assert_int_equal(c->parked[0], 5);
    assert_int_equal(c->npark_total, 1);
    assert_int_equal(c->ack_floor, 1);
    assert_int_equal(c->delivered, 2);
    cons_free(c);
}

static void test_replay(void **st)
{
    consumer_t *c = mk();

    (void)st;
    assert_int_equal(cons_deliver_new(c, 3, 5000), 0);
    assert_int_equal(cons_ack(c, 3), 0);
    assert_int_equal(cons_replay(c, 3), 0);
    assert_int_equal(c->delivered, 2);
    assert_int_equal(c->ack_floor, 1);
    assert_true(cons_due(c, 0, 0, 30000));
    /* replaying a pending message makes it due without a new entry */
    assert_int_equal(cons_deliver_new(c, 4, 5000), 0);
    assert_false(cons_due(c, 1, 5000, 30000));
    assert_int_equal(cons_replay(c, 4), 0);
    assert_int_equal(c->npending, 2);
    assert_true(cons_due(c, 1, 5000, 30000));
    cons_free(c);
}

static void test_pending_cap(void **st)
{
    consumer_t *c = mk();

    (void)st;
    for (uint64_t i = 1; i <= CONS_PENDING_MAX; i++)
        assert_int_equal(cons_deliver_new(c, i, 1), 0);
    assert_int_equal(cons_deliver_new(c, CONS_PENDING_MAX + 1, 1), -1);
    assert_int_equal(cons_replay(c, CONS_PENDING_MAX + 1), -1);
    assert_int_equal(c->npending, CONS_PENDING_MAX);
    assert_int_equal(c->delivered, CONS_PENDING_MAX);
    cons_free(c);
}

static void test_park_ring(void **st)
{
    consumer_t *c = mk();

    (void)st;
    for (uint64_t i = 1; i <= CONS_PARKED_MAX + 5; i++) {
        assert_int_equal(cons_deliver_new(c, i, 0), 0);
        assert_int_equal(cons_redeliver(c, 0, 0, 1), 0);
    }
    assert_int_equal(c->nparked, CONS_PARKED_MAX);
    assert_int_equal(c->parked[0], 6);
    assert_int_equal(c->parked[CONS_PARKED_MAX - 1], CONS_PARKED_MAX + 5);
    assert_int_equal(c->npark_total, CONS_PARKED_MAX + 5);
    assert_int_equal(c->ack_floor, CONS_PARKED_MAX + 5);
    cons_free(c);
}

static void test_json_roundtrip(void **st)
{
    const char *ev[] = {"push"}, *br[] = {"refs/heads/main"};
    consumer_t *c = mk(), *d;
    json_t *j, *j2;

    (void)st;
    assert_int_equal(cons_list_set(&c->events, ev, 1), 0);
    assert_int_equal(cons_list_set(&c->branches, br, 1), 0);
    assert_int_equal(cons_deliver_new(c, 7, 100), 0);
    assert_int_equal(cons_deliver_new(c, 9, 200), 0);
    assert_int_equal(cons_deliver_new(c, 11, 300), 0);
    assert_int_equal(cons_redeliver(c, 2, 400, 1), 0);
    assert_int_equal(cons_ack(c, 7), 0);
    assert_int_equal(cons_redeliver(c, 0, 500, 5), 1);
    c->last_seq = 20;
    c->follows = true;
    j = cons_to_json(c);
    assert_non_null(j);
    d = cons_from_json("default", "key_abc", j);
    assert_non_null(d);
    assert_int_equal(d->last_seq, 20);
    assert_true(d->follows);
    assert_int_equal(d->delivered, 3);
    assert_int_equal(d->ack_floor, 1);
    assert_int_equal(d->npending, 1);
    assert_int_equal(d->pending[0].sseq, 9);
    assert_int_equal(d->pending[0].deliveries, 2);
    assert_int_equal(d->pending[0].last_ms, 500);
    assert_int_equal(d->redelivered, 1);
    assert_int_equal(d->nparked, 1);
    assert_int_equal(d->parked[0], 11);
    assert_string_equal(d->events.v[0], "push");
    assert_string_equal(d->branches.v[0], "refs/heads/main");
    j2 = cons_to_json(d);
    assert_true(json_equal(j, j2));
    json_decref(j2);
    /* malformed records are refused */
    json_object_set_new(j, "delivered", json_integer(1)); /* cseq 2 > delivered */
    assert_null(cons_from_json("default", "key_abc", j));
    json_object_set_new(j, "delivered", json_integer(3));
    json_object_set_new(j, "subjects", json_array());
    assert_null(cons_from_json("default", "key_abc", j));
    json_decref(j);
    j = json_pack("{s:s}", "subjects", "x");
    assert_null(cons_from_json("default", "key_abc", j));
    json_decref(j);
    cons_free(c);
    cons_free(d);
}

static void test_stats(void **st)
{
    consumer_t *c = mk();
    json_t *s;

    (void)st;
    assert_int_equal(cons_deliver_new(c, 1, 0), 0);
    assert_int_equal(cons_deliver_new(c, 2, 0), 0);
    assert_int_equal(cons_ack(c, 1), 0);
    s = cons_stats(c);
    assert_non_null(s);
    assert_string_equal(json_string_value(json_object_get(s, "consumerName")), "key_abc");
    assert_int_equal(json_integer_value(json_object_get(s, "pending")), 1);
    assert_int_equal(json_integer_value(json_object_get(s, "delivered")), 2);
    assert_int_equal(json_integer_value(json_object_get(s, "ackFloor")), 1);
    assert_int_equal(json_integer_value(json_object_get(s, "redelivered")), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(s, "filterSubjects"),
                                                         0)), "webhooks.github.>");
    json_decref(s);
    cons_free(c);
}

static void test_names_and_ids(void **st)
{
    char name[CONS_NAME_MAX + 1], longid[200];
    uint64_t v = 0;
    json_t *j;
    const char *bad[] = {"", "0", "-1", "1x", "12345678901234567890", " 1"};

    (void)st;
    cons_name("user_", "a@b.c/d", 7, name);
    assert_string_equal(name, "user_a_b_c_d");
    memset(longid, 'x', sizeof longid);
    cons_name("key_", longid, sizeof longid, name);
    assert_int_equal(strlen(name), CONS_NAME_MAX);
    longid[CONS_NAME_MAX + 1] = '\0';
    assert_null(cons_new("default", longid));         /* name too long */
    j = json_string("42");
    assert_true(cons_parse_id(j, &v));
    assert_int_equal(v, 42);
    json_decref(j);
    j = json_integer(7);
    assert_true(cons_parse_id(j, &v));
    assert_int_equal(v, 7);
    json_decref(j);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        j = json_string(bad[i]);
        assert_false(cons_parse_id(j, &v));
        json_decref(j);
    }
    j = json_integer(0);
    assert_false(cons_parse_id(j, &v));
    json_decref(j);
    j = json_true();
    assert_false(cons_parse_id(j, &v));
    json_decref(j);
}

static void test_registry(void **st)
{
    consumer_t *a = mk(), *b = cons_new("other", "key_abc"), *a2 = mk();
    char key[160];

    (void)st;
    assert_non_null(b);
    cons_lock();
    assert_int_equal(cons_put(a), 0);
    assert_int_equal(cons_put(b), 0);
    assert_ptr_equal(cons_get("default", "key_abc"), a);
    assert_ptr_equal(cons_get("other", "key_abc"), b);
    assert_null(cons_get("default", "key_zzz"));
    assert_true(cons_try_busy(a));
    assert_false(cons_try_busy(a));
    assert_int_equal(cons_put(a2), 0);       /* replaces a */
    assert_ptr_equal(cons_get("default", "key_abc"), a2);
    cons_key(b, key, sizeof key);
    assert_string_equal(key, "other/key_abc");
    cons_unlock();
    cons_shutdown();
    assert_null(cons_get("other", "key_abc"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deliver_ack_floor), cmocka_unit_test(test_redeliver_and_park),
        cmocka_unit_test(test_replay),           cmocka_unit_test(test_pending_cap),
        cmocka_unit_test(test_park_ring),        cmocka_unit_test(test_json_roundtrip),
        cmocka_unit_test(test_stats),            cmocka_unit_test(test_names_and_ids),
        cmocka_unit_test(test_registry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
