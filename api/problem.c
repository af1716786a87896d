/*
 * api/problem.c - RFC 9457 problem details ("application/problem+json").
 *
 * Public (internal.h): api_problem_new, api_status_title.
 *
 * Every problem uses "type": "about:blank", so "title" is the status's
 * phrase and "detail" says what happened to this request; "errors" lists
 * {"field", "message"} objects (empty unless fields were at fault).
 * Errors: NULL when out of memory.  Thread-safe (no shared state).
 */
#include <stddef.h>

#include "api/codec.h"
#include "result/result_json.h"
#include "api/internal.h"

/* The RFC 9110 phrase of the statuses this API answers. */
const char *api_status_title(int status)
{
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/* A problem document; errors is stolen (NULL means an empty list). */
json_t *api_problem_new(int status, const char *detail, json_t *errors)
{
    json_t *p = json_object();
    if (errors == NULL)
        errors = json_array();
    if (p == NULL || errors == NULL ||
        json_object_set_new(p, "type", json_string("about:blank")) ||
        json_object_set_new(p, "title",
                            json_string(api_status_title(status))) ||
        json_object_set_new(p, "status", json_integer(status)) ||
        json_object_set_new(p, "detail",
                            result_json_text(detail != NULL ? detail : "")) ||
        json_object_set(p, "errors", errors)) {
        json_decref(p);
        json_decref(errors);
        return NULL;
    }
    json_decref(errors);
    return p;
}
