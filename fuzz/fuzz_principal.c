/*
 * fuzz_principal.c - the permission spec, JWT claims and key record
 * parsers, and key authentication, on arbitrary input.
 *
 * Invariants (abort on violation): a spec that parses survives spec ->
 * JSON -> spec unchanged; a principal survives principal -> claims ->
 * principal with the same tenant, id and permissions; error texts fit
 * their buffers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "auth/keys.h"
#include "auth/principal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(principal_t *p)
{
    json_t *c = principal_to_claims(p), *a, *b;
    principal_t *q;
    char err[PERM_ERR_LEN];

    if (principal_from_claims(c, NULL, &q, err, sizeof err) != 0)
        abort();
    a = perm_to_spec(&p->perm);
    b = perm_to_spec(&q->perm);
    if (!json_equal(a, b) || strcmp(p->tenant, q->tenant) || strcmp(p->id, q->id))
        abort();
    json_decref(a); json_decref(b); json_decref(c);
    principal_unref(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static keys_reg_t *reg;
    char err[KEYS_ERR_LEN];
    json_error_t je;
    json_t *j;
    principal_t *p;
    perm_t perm;

    if (!reg) reg = keys_new();
    /* the corpus pairs a real key with its record, so OK is reachable */
    keys_authenticate(reg, (const char *)data, size, "10.0.0.1", 1, &p, NULL);
    if (p)
        principal_unref(p);
    j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j) return 0;
    if (perm_from_spec(j, &perm, err, sizeof err) == 0) {
        json_t *back = perm_to_spec(&perm), *again;
        perm_t p2;
        if (perm_from_spec(back, &p2, err, sizeof err) != 0) abort();
        again = perm_to_spec(&p2);
        if (!json_equal(back, again)) abort();
        json_decref(back); json_decref(again); perm_free(&p2);
        p = principal_new(PRINCIPAL_API_KEY, "t", 1, "id", 2, &perm, false, 0);
        if (!p) abort();
        principal_can_subscribe(p, (const char *)data, size > 300 ? 300 : size);
        principal_can_publish(p, (const char *)data, size > 300 ? 300 : size,
                              (const char *)data, size > 130 ? 130 : size);
        round_trip(p);
        principal_unref(p);
    }
    if (principal_from_claims(j, size & 1 ? "dflt" : NULL, &p, err, sizeof err) == 0) {
        round_trip(p);
        principal_unref(p);
    }
    if (strlen(err) >= sizeof err) abort();
    if (keys_load(reg, j, err, sizeof err) == 0 && keys_count(reg) > 50) {
        keys_free(reg);
        reg = keys_new();
    } else {
        json_t *l = keys_list(reg, NULL, 0, 1);
        json_decref(l);
    }
    json_decref(j);
    return 0;
}
