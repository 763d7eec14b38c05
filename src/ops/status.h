/*
 * status.h - the operational endpoints: GET /health and GET /metrics.
 */
#ifndef SB_STATUS_H
#define SB_STATUS_H

#include "http/server.h"
#include "store/store.h"

/* The store /health probes and /metrics reports on. */
void status_init(store_t *store, const char *version);
void status_health(http_req_t *r);
void status_metrics(http_req_t *r);

#endif
