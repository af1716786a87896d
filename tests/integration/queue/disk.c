/*
 * disk.c - a queue that cannot be written: on SQLite a full disk (503,
 * nothing already queued lost) and a read-only file system (a start
 * error, exit 2); on PostgreSQL a read-only cluster (503, and a start
 * error naming queue.url).
 */
#include <errno.h>
#include <sys/mount.h>

#include "tests/integration/queue/cases.h"
#include "tests/integration/queue/qfx.h"

#ifndef QUEUE_TEST_PG
/* Mounts a tmpfs (mount options opts) on the new directory tmpl (a
   mkdtemp template) and writes its queue file's path into q. */
static void tmpfs_queue(char *tmpl, const char *opts, char *q, size_t qlen)
{
    assert_non_null(mkdtemp(tmpl));
    if (mount("tmpfs", tmpl, "tmpfs", 0, opts) != 0) {
        rmdir(tmpl);
        fail_msg("cannot mount a tmpfs (needs root): %s", strerror(errno));
    }
    snprintf(q, qlen, "%s/queue.db", tmpl);
}

/* A message of 60 KiB (lines of 78) due in 4 s, so that none is claimed
   while the disk fills: its JSON (caller frees). */
static char *big_scheduled_body(void)
{
    char *big = malloc(64 * 1024 + 256), when[40];
    time_t t = time(NULL) + 4;
    struct tm tm;
    assert_non_null(big);
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int k = snprintf(big, 256,
                     "{\"from\":\"s@example.org\",\"to\":"
                     "[\"r@example.org\"],\"send_at\":\"%s\","
                     "\"body\":\"",
                     when);
    for (int i = 0; i < 60 * 1024; i++) /* lines of 78, "\n" escaped */
        big[k + i] = i % 80 == 78 ? '\\' : i % 80 == 79 ? 'n' : 'x';
    memcpy(big + k + 60 * 1024, "\"}", 3);
    return big;
}

/* A queue on a 1 MiB tmpfs: once it is full, 503 with Retry-After and no
   202; every message that got a 202 is still there after a restart with
   room again, and is delivered. */
void test_full_or_read_only_disk_is_503_and_loses_nothing(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/mailpool-full-XXXXXX", q[64];
    tmpfs_queue(tmpl, "size=1m", q, sizeof q);
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, q, NULL);
    char *big = big_scheduled_body(), *ids[64];
    size_t n = 0;
    long st = 0;
    int saw503 = 0;
    for (int i = 0; i < 64 && !saw503; i++) {
        struct http_resp r;
        json_t *j = call(s, "POST", "/v1/messages", ASYNC, big, &st, &r);
        if (st == 202) {
            ids[n++] = strdup(jstr(j, "id"));
        } else {
            char *ra = http_resp_header(&r, "Retry-After");
            assert_int_equal(st, 503);
            assert_non_null(ra);
            free(ra);
            saw503 = 1;
        }
        http_resp_free(&r);
        json_decref(j);
    }
    free(big);
    assert_true(saw503);
    assert_true(n > 0);
    assert_int_equal(mpserve_stop(s, 10000), 0);
    mpserve_free(s);
    /* Room again: every 202 is delivered, once its send_at comes. */
    assert_int_equal(mount("tmpfs", tmpl, "tmpfs", MS_REMOUNT, "size=16m"), 0);
    assert_int_equal(msgs_total(p), 0);
    s = svc(p, q, NULL);
    for (size_t i = 0; i < n; i++) {
        json_t *d = wait_final(s, ids[i], 20000);
        assert_string_equal(jstr(d, "status"), "sent");
        json_decref(d);
        free(ids[i]);
    }
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), n);
    peer_stop(p);
    umount(tmpl);
    rmdir(tmpl);
}

/* A queue file on a read-only file system: `mailpool serve` does not
   start; it exits 2 and names queue.path and why. */
void test_read_only_database_is_a_start_error_exit_2(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/mailpool-ro-XXXXXX", q[64], *log = NULL;
    tmpfs_queue(tmpl, "size=4m", q, sizeof q);
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, q, NULL); /* the file exists */
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(
        mount("tmpfs", tmpl, "tmpfs", MS_REMOUNT | MS_RDONLY, NULL), 0);
    assert_int_equal(serve_fails(q, &log), 2);
    assert_non_null(log);
    assert_non_null(strstr(log, "queue.path"));
    assert_non_null(strstr(log, "Read-only file system"));
    free(log);
    peer_stop(p);
    umount(tmpl);
    rmdir(tmpl);
}

/* A second `mailpool serve` on a queue file another one uses (`make run`
   twice) does not start: it exits 2 naming queue.path before it touches
   the file, so the first one's message on the wire is not taken for a
   crash's: it ends sent after one attempt, never unknown. */
void test_second_service_on_one_queue_file_exits_2_and_touches_nothing(
    void **state)
{
    (void)state;
    char *dir, *q = temp_queue(&dir), *log = NULL;
    long st;
    struct peer *p = relay(
        "{'rules': [{'match': '^DOT$', 'action': 'delay:2'}]}");
    struct mpserve *s = svc(p, q, NULL);
    char *id = post_async(s, "r@example.org", NULL);
    const char *status = "";
    for (long long end = now_ms() + 5000;
         strcmp(status, "sending") != 0 && now_ms() < end; sleep_ms(20)) {
        json_t *d = status_of(s, id, &st);
        status = strcmp(jstr(d, "status"), "sending") == 0 ? "sending" : "";
        json_decref(d);
    }
    assert_string_equal(status, "sending");
    assert_int_equal(serve_fails(q, &log), 2);
    assert_non_null(log);
    assert_non_null(strstr(log, "queue.path"));
    assert_non_null(strstr(log, "in use by another mailpool serve"));
    free(log);
    json_t *d = wait_final(s, id, 10000);
    assert_string_equal(jstr(d, "status"), "sent");
    assert_int_equal(json_array_size(json_object_get(d, "attempts")), 1);
    json_decref(d);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), 1);
    peer_stop(p);
    free(id);
    free(q);
    free(dir);
}
#else
/* The cluster read-only (default_transaction_read_only): a POST that
   needs the queue is a 503 problem with Retry-After, never a 202; a
   replica starting then exits 2 naming queue.url; writable again, a POST
   is a 202 and every 202 is delivered once. */
void test_read_only_database_is_503_and_a_start_error_exit_2(void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, "read-only", NULL);
    char *before = post_async(s, "r@example.org", NULL), *log = NULL;
    const char *db = pg_db("read-only");
    json_t *d = wait_final(s, before, 10000);
    assert_string_equal(jstr(d, "status"), "sent");
    json_decref(d);
    free(pg_sql(db, "ALTER SYSTEM SET default_transaction_read_only = on"));
    free(pg_sql(db, "SELECT pg_reload_conf()"));
    sleep_ms(300);
    async_post_is_503(s);
    assert_int_equal(serve_fails("read-only", &log), 2);
    assert_non_null(log);
    assert_non_null(strstr(log, "queue.url"));
    assert_non_null(strstr(log, "read-only"));
    free(log);
    free(pg_sql(db, "ALTER SYSTEM RESET default_transaction_read_only"));
    free(pg_sql(db, "SELECT pg_reload_conf()"));
    sleep_ms(300);
    char *after = post_async(s, "r@example.org", NULL);
    d = wait_final(s, after, 10000);
    assert_string_equal(jstr(d, "status"), "sent");
    json_decref(d);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), 2);
    free(before);
    free(after);
    peer_stop(p);
}
#endif
