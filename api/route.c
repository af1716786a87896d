/*
 * api/route.c - the one route table: for each route its path (or
 * pattern), which is also its metric and log label, its GET and POST
 * handlers (the methods it takes are the handlers it has), and the job
 * kind of a single-job POST route.
 *
 * Public (route.h): api_route_name, api_route_def, api_route_match,
 * api_route_methods, api_route_allow.
 *
 * Matching: an exact path first ("/v1/messages/batch" before
 * "/v1/messages/{id}"; a pattern's name matches as a path only when the
 * pattern says so, as "/ui" does), then the patterns in table order: a
 * prefix, an id of the pattern's characters (copied out), then the
 * pattern's suffix.
 * The handlers are named only here: request.c dispatches through the
 * table and knows none of them.
 *
 * Errors: none (no allocation).  Thread-safe (read-only data).
 */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "api/route.h"

/* The characters of a queue id (base64url) and of a /ui/ file name. */
#define ID_CHARS \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#define UI_CHARS "abcdefghijklmnopqrstuvwxyz."

/* Every route, indexed by enum api_route. */
static const struct api_route_def routes[API_ROUTE__COUNT] = {
    [API_ROUTE_MESSAGES] = { "/v1/messages", NULL, api_message_list,
                             api_post_jobs, JOB_SEND },
    [API_ROUTE_BATCH] = { "/v1/messages/batch", NULL, NULL, api_post_jobs,
                          JOB_SEND },
    [API_ROUTE_VERIFY] = { "/v1/verify", NULL, NULL, api_post_jobs,
                           JOB_VERIFY },
    [API_ROUTE_EXPAND] = { "/v1/expand", NULL, NULL, api_post_jobs,
                           JOB_EXPAND },
    [API_ROUTE_HELP] = { "/v1/help", NULL, NULL, api_post_jobs, JOB_HELP },
    [API_ROUTE_HEALTHZ] = { "/healthz", NULL, api_get_healthz, NULL, JOB_SEND },
    [API_ROUTE_READYZ] = { "/readyz", NULL, api_get_readyz, NULL, JOB_SEND },
    [API_ROUTE_METRICS] = { "/metrics", NULL, api_get_metrics, NULL, JOB_SEND },
    [API_ROUTE_OPENAPI] = { "/openapi.json", NULL, api_get_openapi, NULL,
                            JOB_SEND },
    [API_ROUTE_PREVIEW] = { "/v1/messages/preview", NULL, NULL, api_post_jobs,
                            JOB_SEND },
    [API_ROUTE_MESSAGE] = { "/v1/messages/{id}",
                            &(const struct api_route_pattern){
                                "/v1/messages/", ID_CHARS, 1, "", 0 },
                            api_message_get, NULL, JOB_SEND },
    [API_ROUTE_CANCEL] = { "/v1/messages/{id}/cancel",
                           &(const struct api_route_pattern){
                               "/v1/messages/", ID_CHARS, 1, "/cancel", 0 },
                           NULL, api_message_cancel, JOB_SEND },
    [API_ROUTE_UI] = { "/ui",
                       &(const struct api_route_pattern){ "/ui/", UI_CHARS, 0,
                                                          "", 1 },
                       api_ui_get, NULL, JOB_SEND },
    [API_ROUTE_UNMATCHED] = { "unmatched", NULL, NULL, NULL, JOB_SEND },
};

const char *api_route_name(enum api_route route)
{
    return api_route_def(route)->name;
}

const struct api_route_def *api_route_def(enum api_route route)
{
    return &routes[(unsigned)route < API_ROUTE__COUNT ? route
                                                      : API_ROUTE_UNMATCHED];
}

/* 1 when url is p's prefix, an id of p's characters (at least p->min,
   fewer than QUEUE_ID_LEN) and p's suffix; the id is copied into id. */
static int pattern_match(const struct api_route_pattern *p, const char *url,
                         char id[QUEUE_ID_LEN])
{
    size_t plen = strlen(p->prefix), n;
    if (strncmp(url, p->prefix, plen) != 0)
        return 0;
    url += plen;
    n = strspn(url, p->chars);
    if (n < p->min || n >= QUEUE_ID_LEN || strcmp(url + n, p->suffix) != 0)
        return 0;
    memcpy(id, url, n);
    id[n] = '\0';
    return 1;
}

enum api_route api_route_match(const char *url, char id[QUEUE_ID_LEN])
{
    for (int r = 0; r < API_ROUTE_UNMATCHED; r++)
        if ((routes[r].pattern == NULL || routes[r].pattern->bare) &&
            strcmp(url, routes[r].name) == 0) {
            id[0] = '\0';
            return (enum api_route)r;
        }
    for (int r = 0; r < API_ROUTE_UNMATCHED; r++)
        if (routes[r].pattern != NULL &&
            pattern_match(routes[r].pattern, url, id))
            return (enum api_route)r;
    return API_ROUTE_UNMATCHED;
}

int api_route_methods(enum api_route route)
{
    const struct api_route_def *d = api_route_def(route);
    return (d->get != NULL ? API_M_GET : 0) |
           (d->post != NULL ? API_M_POST : 0);
}

void api_route_allow(enum api_route route, char *buf, size_t size)
{
    int m = api_route_methods(route);
    snprintf(buf, size, "%s%s%s", m & API_M_GET ? "GET, HEAD" : "",
             m == (API_M_GET | API_M_POST) ? ", " : "",
             m & API_M_POST ? "POST" : "");
}
