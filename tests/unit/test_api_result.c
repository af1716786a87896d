/*
 * tests/unit/test_api_result.c - what the API encodes: SMTP outcomes by
 * result_json (on hand-made results), the problem document, the
 * Prometheus text and the embedded OpenAPI document.  The decoding of
 * request bodies is in test_api_codec.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/codec.h"
#include "result/result_json.h"
#include "api/internal.h"
#include "config/config.h"
#include "server/job.h"

/* ---- result_json on hand-made results ---- */

static void set_reply(struct smtp_reply *r, int code, const char *enh,
                      const char *line)
{
    r->code = code;
    snprintf(r->enhanced, sizeof r->enhanced, "%s", enh);
    r->lines = calloc(1, sizeof *r->lines);
    r->lines[0] = strdup(line);
    r->nlines = 1;
}

static void assert_json_str(json_t *o, const char *key, const char *want)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        fail_msg("%s is not a string", key);
    assert_string_equal(json_string_value(v), want);
}

static void test_result_sent(void **state)
{
    struct smtp_result res;
    json_t *o;
    (void)state;
    smtp_result_init(&res);
    res.kind = SMTP_OK;
    res.code = 250;
    res.status = SMTP_DELIVERY_SENT;
    set_reply(&res.reply, 250, "2.0.0", "2.0.0 Ok: queued as 1234");
    res.accepted = calloc(1, sizeof *res.accepted);
    res.accepted[0] = strdup("a@x.org");
    res.naccepted = 1;
    snprintf(res.message_id, sizeof res.message_id, "<1.2@x.org>");
    o = result_json(&res);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "code")), 250);
    assert_json_str(o, "enhanced", "2.0.0");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(o, "text"), 0)),
        "2.0.0 Ok: queued as 1234");
    assert_json_str(o, "status", "sent");
    assert_json_str(o, "kind", "ok");
    assert_json_str(o, "message_id", "<1.2@x.org>");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(o, "accepted"), 0)),
        "a@x.org");
    assert_int_equal(json_array_size(json_object_get(o, "rejected")), 0);
    assert_null(json_object_get(o, "error"));
    json_decref(o);
    smtp_result_clear(&res);
}

static void test_result_partial_700_lists_losers(void **state)
{
    struct smtp_result res;
    json_t *o, *rej;
    (void)state;
    smtp_result_init(&res);
    res.kind = SMTP_ERR_REJECTED;
    res.code = 700;
    res.status = SMTP_DELIVERY_PARTIAL;
    set_reply(&res.reply, 250, "", "Ok");
    res.rejected = calloc(1, sizeof *res.rejected);
    res.rejected[0].recipient = strdup("b@x.org");
    set_reply(&res.rejected[0].reply, 550, "5.1.1", "5.1.1 no such user");
    res.nrejected = 1;
    snprintf(res.message, sizeof res.message, "1 recipient rejected");
    o = result_json(&res);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "code")), 700);
    assert_json_str(o, "status", "partial");
    assert_json_str(o, "kind", "rejected");
    assert_true(json_is_null(json_object_get(o, "enhanced")));
    assert_true(json_is_null(json_object_get(o, "message_id")));
    assert_json_str(o, "error", "1 recipient rejected");
    rej = json_array_get(json_object_get(o, "rejected"), 0);
    assert_json_str(rej, "recipient", "b@x.org");
    assert_int_equal(json_integer_value(json_object_get(rej, "code")), 550);
    assert_json_str(rej, "enhanced", "5.1.1");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(rej, "text"), 0)),
        "5.1.1 no such user");
    assert_int_equal(json_array_size(json_object_get(o, "accepted")), 0);
    json_decref(o);
    smtp_result_clear(&res);
}

static void test_result_no_reply_failure(void **state)
{
    struct smtp_result res;
    json_t *o;
    (void)state;
    smtp_result_init(&res);
    res.kind = SMTP_ERR_CONN;
    res.status = SMTP_DELIVERY_FAILED;
    snprintf(res.message, sizeof res.message, "connect: Connection refused");
    o = result_json(&res);
    assert_int_equal(json_integer_value(json_object_get(o, "code")), 0);
    assert_int_equal(json_array_size(json_object_get(o, "text")), 0);
    assert_true(json_is_null(json_object_get(o, "enhanced")));
    assert_json_str(o, "status", "failed");
    assert_json_str(o, "kind", "connection");
    assert_json_str(o, "error", "connect: Connection refused");
    json_decref(o);
}

static void test_result_query_has_no_delivery_members(void **state)
{
    struct smtp_result res;
    json_t *o;
    (void)state;
    smtp_result_init(&res);
    res.code = 252;
    set_reply(&res.reply, 252, "2.0.0", "2.0.0 bob");
    o = result_json(&res);
    assert_int_equal(json_integer_value(json_object_get(o, "code")), 252);
    assert_json_str(o, "enhanced", "2.0.0");
    assert_json_str(o, "kind", "ok");
    assert_null(json_object_get(o, "status"));
    assert_null(json_object_get(o, "accepted"));
    assert_null(json_object_get(o, "rejected"));
    assert_null(json_object_get(o, "message_id"));
    json_decref(o);
    smtp_result_clear(&res);
}

static void test_result_invalid_utf8_is_replaced(void **state)
{
    struct smtp_result res;
    json_t *o;
    char *dump;
    (void)state;
    smtp_result_init(&res);
    res.code = 550;
    res.kind = SMTP_ERR_REPLY;
    res.status = SMTP_DELIVERY_FAILED;
    set_reply(&res.reply, 550, "", "bad \xff\xc0 bytes \xe2\x82");
    o = result_json(&res);
    assert_non_null(o);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(o, "text"), 0)),
        "bad \xef\xbf\xbd\xef\xbf\xbd bytes "
        "\xef\xbf\xbd\xef\xbf\xbd");
    dump = json_dumps(o, JSON_COMPACT);
    assert_non_null(dump);
    free(dump);
    json_decref(o);
    smtp_result_clear(&res);
}

static void test_job_result_adds_attempts_and_duration(void **state)
{
    struct job *job = job_new(JOB_SEND);
    json_t *o;
    (void)state;
    job->result.code = 250;
    job->result.status = SMTP_DELIVERY_SENT;
    job->attempts = 2;
    job->duration_ms = 12.34567;
    o = api_job_result_json(job);
    assert_int_equal(json_integer_value(json_object_get(o, "attempts")), 2);
    assert_true(json_real_value(json_object_get(o, "duration_ms")) > 12.345 &&
                json_real_value(json_object_get(o, "duration_ms")) < 12.347);
    json_decref(o);
    job_free(job);
}

/* ---- Problems, metrics, OpenAPI ---- */

static void test_problem_shape(void **state)
{
    json_t *errors = json_array(), *p;
    (void)state;
    api_error_add(errors, "to[2]", "CR or LF in address");
    p = api_problem_new(422, "the request has invalid fields", errors);
    assert_json_str(p, "type", "about:blank");
    assert_json_str(p, "title", "Unprocessable Content");
    assert_int_equal(json_integer_value(json_object_get(p, "status")), 422);
    assert_json_str(p, "detail", "the request has invalid fields");
    assert_json_str(json_array_get(json_object_get(p, "errors"), 0), "field",
                    "to[2]");
    json_decref(p);
    p = api_problem_new(503, "full", NULL);
    assert_int_equal(json_array_size(json_object_get(p, "errors")), 0);
    assert_json_str(p, "title", "Service Unavailable");
    json_decref(p);
}

static void test_metrics_text(void **state)
{
    struct api_metrics m;
    struct pool_stats ps;
    struct job *job = job_new(JOB_SEND);
    size_t len = 0;
    char *text;
    (void)state;
    assert_int_equal(api_metrics_init(&m), 0);
    memset(&ps, 0, sizeof ps);
    ps.conns_idle = 2;
    ps.queued = 5;
    api_metrics_request(&m, API_ROUTE_MESSAGES, 200, 0.003);
    api_metrics_request(&m, API_ROUTE_MESSAGES, 200, 0.2);
    api_metrics_request(&m, API_ROUTE_UNMATCHED, 404, 0.0001);
    job->result.status = SMTP_DELIVERY_PARTIAL;
    job->result.reply.code = 550;
    job->duration_ms = 45;
    job->wait_ms = 15;
    api_metrics_job(&m, job);
    text = api_metrics_render(&m, &ps, NULL, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "mailpool_http_requests_total{route=\"/v1/"
                                 "messages\",status=\"200\"} 2\n"));
    assert_non_null(strstr(text, "route=\"unmatched\",status=\"404\"} 1\n"));
    assert_non_null(strstr(text, "mailpool_messages_total{status=\"partial\"}"
                                 " 1\n"));
    assert_non_null(strstr(text, "mailpool_smtp_replies_total{class=\"5xx\"}"
                                 " 1\n"));
    assert_non_null(strstr(text, "mailpool_http_request_duration_seconds_"
                                 "bucket{route=\"/v1/messages\",le=\"0.005\"}"
                                 " 1\n"));
    assert_non_null(strstr(text, "mailpool_http_request_duration_seconds_"
                                 "bucket{route=\"/v1/messages\",le=\"+Inf\"}"
                                 " 2\n"));
    assert_non_null(strstr(text, "mailpool_http_request_duration_seconds_"
                                 "count{route=\"/v1/messages\"} 2\n"));
    assert_non_null(strstr(text, "mailpool_http_request_duration_seconds_"
                                 "count{route=\"unmatched\"} 1\n"));
    assert_null(strstr(text, "route=\"/healthz\",le=")); /* unused */
    /* 45 ms in all, 15 of them waiting for a worker. */
    assert_non_null(strstr(text, "mailpool_job_wait_seconds_bucket"
                                 "{le=\"0.01\"} 0\n"));
    assert_non_null(strstr(text, "mailpool_job_wait_seconds_bucket"
                                 "{le=\"0.025\"} 1\n"));
    assert_non_null(strstr(text, "mailpool_smtp_transaction_duration_"
                                 "seconds_bucket{le=\"0.025\"} 0\n"));
    assert_non_null(strstr(text, "mailpool_smtp_transaction_duration_"
                                 "seconds_bucket{le=\"0.05\"} 1\n"));
    assert_non_null(strstr(text, "mailpool_pool_connections{state=\"idle\"}"
                                 " 2\n"));
    assert_non_null(strstr(text, "mailpool_pool_queue_depth 5\n"));
    assert_non_null(strstr(text, "mailpool_build_info{version=\""));
    assert_null(strchr(text, '@'));
    free(text);
    /* the queue's finished deliveries add to the synchronous counts */
    unsigned long long queued[API_DELIVERY_SLOTS] = { 0 };
    queued[SMTP_DELIVERY_PARTIAL] = 3;
    queued[SMTP_DELIVERY_UNKNOWN] = 2;
    text = api_metrics_render(&m, &ps, queued, &len);
    assert_non_null(text);
    assert_non_null(strstr(text, "mailpool_messages_total{status=\"partial\"}"
                                 " 4\n"));
    assert_non_null(strstr(text, "mailpool_messages_total{status=\"unknown\"}"
                                 " 2\n"));
    assert_non_null(strstr(text, "mailpool_messages_total{status=\"sent\"}"
                                 " 0\n"));
    free(text);
    job_free(job);
    api_metrics_destroy(&m);
}

static void test_openapi_document(void **state)
{
    static const char *const paths[] = { "/v1/messages",
                                         "/v1/messages/batch",
                                         "/v1/verify",
                                         "/v1/expand",
                                         "/v1/help",
                                         "/healthz",
                                         "/readyz",
                                         "/metrics",
                                         "/openapi.json",
                                         "/v1/messages/preview",
                                         "/v1/messages/{id}",
                                         "/v1/messages/{id}/cancel",
                                         "/ui" };
    json_error_t e;
    json_t *doc = json_loadb(api_openapi_json(), api_openapi_len(),
                             JSON_REJECT_DUPLICATES, &e);
    (void)state;
    if (doc == NULL)
        fail_msg("openapi.json: line %d: %s", e.line, e.text);
    assert_json_str(doc, "openapi", "3.1.0");
    json_t *p = json_object_get(doc, "paths");
    /* Each route's path, and the page's files under /ui/. */
    assert_int_equal(json_object_size(p), sizeof paths / sizeof paths[0] + 1);
    assert_non_null(json_object_get(p, "/ui/{file}"));
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        assert_non_null(json_object_get(p, paths[i]));
        assert_string_equal(api_route_name((enum api_route)i), paths[i]);
    }
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_sent),
        cmocka_unit_test(test_result_partial_700_lists_losers),
        cmocka_unit_test(test_result_no_reply_failure),
        cmocka_unit_test(test_result_query_has_no_delivery_members),
        cmocka_unit_test(test_result_invalid_utf8_is_replaced),
        cmocka_unit_test(test_job_result_adds_attempts_and_duration),
        cmocka_unit_test(test_problem_shape),
        cmocka_unit_test(test_metrics_text),
        cmocka_unit_test(test_openapi_document),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
