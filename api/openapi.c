/*
 * api/openapi.c - the OpenAPI 3.1 document of the HTTP API, served at
 * GET /openapi.json.
 *
 * Public (internal.h): api_openapi_json, api_openapi_len.
 *
 * The document is the file api/openapi.json, embedded by the build
 * (api/openapi_data.S): it must describe exactly the routes, request
 * schemas, results and problem responses of route.c, routes.c, async.c,
 * message.c, list.c, head.c, request.c and
 * codec.c; change them together.  tests/integration/test_service_errors.c
 * checks that it names every route and that every answer a probe gets is
 * documented; tests/integration/test_openapi.sh lints it with
 * @redocly/cli.  Thread-safe (read-only data).
 */
#include "api/internal.h"

/* The file's bytes, then a NUL (api/openapi_data.S). */
extern const char mailpool_openapi_json[];
extern const unsigned long long mailpool_openapi_json_size; /* its length */

const char *api_openapi_json(void)
{
    return mailpool_openapi_json;
}

size_t api_openapi_len(void)
{
    return (size_t)mailpool_openapi_json_size;
}
