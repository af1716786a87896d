/*
 * api/ui.c - GET /ui/: the message log page, a static page (ui/index.html,
 * ui/app.js, ui/app.css, ui/icon.svg) embedded by the build (api/ui_data.S), with no
 * data of its own: the page asks for an API key and reads the JSON routes
 * (GET /v1/messages, /v1/messages/{id}, /metrics) with it.
 *
 * Public (internal.h): api_ui_get.
 *
 * Every answer carries a strict Content-Security-Policy (only this
 * origin's script, style and fetches; no inline script or style, no
 * frames, no plugins, no forms), X-Content-Type-Options: nosniff,
 * X-Frame-Options: DENY and Referrer-Policy: no-referrer.  /ui and /ui/
 * are the page (it names its files by absolute paths, so both work); any
 * other file is a 404.
 *
 * Errors: MHD_NO when out of memory.  Thread-safe (read-only data).
 */
#include <stdint.h>
#include <string.h>

#include "api/internal.h"

/* The files' bytes, each followed by a NUL (api/ui_data.S). */
extern const char mailpool_ui_html[], mailpool_ui_html_end[];
extern const char mailpool_ui_js[], mailpool_ui_js_end[];
extern const char mailpool_ui_css[], mailpool_ui_css_end[];
extern const char mailpool_ui_icon[], mailpool_ui_icon_end[];

/* The Content-Security-Policy of every /ui/ answer. */
#define UI_CSP \
    "default-src 'none'; script-src 'self'; style-src 'self'; " \
    "connect-src 'self'; img-src 'self'; base-uri 'none'; " \
    "form-action 'none'; frame-ancestors 'none'"

/* One embedded file. */
struct ui_file {
    const char *name; /* under /ui/; "" is the page */
    const char *ctype;
    const char *start, *end;
};

static const struct ui_file files[] = {
    { "", "text/html; charset=utf-8", mailpool_ui_html, mailpool_ui_html_end },
    { "app.js", "text/javascript; charset=utf-8", mailpool_ui_js,
      mailpool_ui_js_end },
    { "app.css", "text/css; charset=utf-8", mailpool_ui_css,
      mailpool_ui_css_end },
    { "icon.svg", "image/svg+xml", mailpool_ui_icon, mailpool_ui_icon_end },
};

/* Adds the headers every /ui/ answer carries; 0 or -1. */
static int guard(struct MHD_Response *r)
{
    return MHD_add_response_header(r, "Content-Security-Policy", UI_CSP) ==
                       MHD_YES &&
                   MHD_add_response_header(r, "X-Content-Type-Options",
                                           "nosniff") == MHD_YES &&
                   MHD_add_response_header(r, "X-Frame-Options", "DENY") ==
                       MHD_YES &&
                   MHD_add_response_header(r, "Referrer-Policy",
                                           "no-referrer") == MHD_YES
               ? 0
               : -1;
}

/* Queues len bytes of buf (static) as ctype. */
static enum MHD_Result send_ui(struct api_req *req, struct MHD_Connection *c,
                               unsigned int status, const char *ctype,
                               const char *buf, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, (void *)(uintptr_t)buf, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    if (guard(r) < 0 ||
        MHD_add_response_header(r, "Content-Type", ctype) != MHD_YES) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    return api_reply_response(req, c, status, r);
}

enum MHD_Result api_ui_get(struct api_req *req, struct MHD_Connection *c)
{
    static const char missing[] = "no such file\n";
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (strcmp(req->msg_id, files[i].name) == 0)
            return send_ui(req, c, 200, files[i].ctype, files[i].start,
                           (size_t)(files[i].end - files[i].start));
    return send_ui(req, c, 404, "text/plain; charset=utf-8", missing,
                   sizeof missing - 1);
}
