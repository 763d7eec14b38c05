/*
 * edge.c - helpers shared by the protocol adapters. See edge.h.
 */
#include "edge/edge.h"

#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/utf8.h"
#include "ops/status.h"

static const config_t *g_cfg;

const config_t *edge_cfg(void) { return g_cfg; }

void edge_register_routes(const config_t *cfg)
{
    g_cfg = cfg;
    sse_init();
    http_route("POST,PUT,PATCH,DELETE", "/webhook/", true, webhook_handle);
    http_route("POST", "/api/v1/publish", false, publish_handle);
    http_route("GET", "/api/v1/stream", false, sse_handle);
    http_route("GET", "/api/v1/ws", false, ws_native_handle);
    http_route("GET,HEAD", "/health", false, status_health);
    http_route("GET", "/metrics", false, status_metrics);
}

int edge_parse_since(const char *s, size_t len, hub_since_t *out)
{
    uint64_t v = 0;
    size_t i;

    memset(out, 0, sizeof *out);
    if (len == 0)
        return -1;
    for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == len && len <= 20) {
        out->kind = HUB_SINCE_SEQ;
        out->seq = v;
        return 0;
    }
    if (clock_parse_rfc3339(s, len, &out->time_ms) == 0) {
        out->kind = HUB_SINCE_TIME;
        return 0;
    }
    return -1;
}

bool edge_event_valid(const char *s, size_t len)
{
    if (len == 0 || len > EDGE_EVENT_MAX || !utf8_valid(s, len))
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}
