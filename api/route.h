/*
 * api/route.h - the route table (route.c): what request.c and head.c ask
 * of a route, and the handler type every route's handlers share.
 */
#ifndef MAILPOOL_API_ROUTE_H
#define MAILPOOL_API_ROUTE_H

#include <stddef.h>
#include <microhttpd.h>

#include "api/internal.h"

/* The methods of a route (api_route_methods): GET also answers HEAD. */
enum { API_M_GET = 1, API_M_POST = 2 };

/* A path with an id in it: prefix, then at least min characters of chars
   (fewer than QUEUE_ID_LEN), then suffix. */
struct api_route_pattern {
    const char *prefix;
    const char *chars;
    size_t min;
    const char *suffix;
    int bare; /* the route's name alone matches too (id "") */
};

/* One route. */
struct api_route_def {
    const char *name; /* its path, or its pattern's name; the metric and
                         log label */
    const struct api_route_pattern *pattern; /* NULL: the name exactly */
    api_handler get;    /* GET and HEAD, answered at once; NULL: not allowed */
    api_handler post;   /* POST, once the body is in; NULL: not allowed */
    enum job_kind kind; /* the job of a single-job POST route */
};

/* The table's row of route (UNMATCHED's for a value out of range). */
const struct api_route_def *api_route_def(enum api_route route);
/* The route of a request path; a pattern's id is copied into id. */
enum api_route api_route_match(const char *url, char id[QUEUE_ID_LEN]);
/* API_M_GET | API_M_POST: the methods route takes. */
int api_route_methods(enum api_route route);
/* The Allow field of route: "GET, HEAD", "POST" or "GET, HEAD, POST". */
void api_route_allow(enum api_route route, char *buf, size_t size);

#endif /* MAILPOOL_API_ROUTE_H */
