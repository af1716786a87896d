/*
 * fixture_pg.c - the private PostgreSQL 15 of test_queue_pg
 * (tests/peers/postgres-peer.sh: initdb into a temporary directory,
 * 127.0.0.1 on a free port, stopped by its pid): starting and stopping
 * it, psql, and one database per queue name.  Empty in the SQLite build.
 */
#include "tests/integration/queue/qfx.h"

#ifdef QUEUE_TEST_PG

struct pg_server pg;

/* The peer script's path (MAILPOOL_ROOT, else the current directory). */
static const char *pg_script(char *buf, size_t len)
{
    const char *root = getenv("MAILPOOL_ROOT");
    snprintf(buf, len, "%s%stests/peers/postgres-peer.sh",
             root != NULL ? root : "", root != NULL ? "/" : "");
    return buf;
}

/* Runs the peer script with args; its standard output (caller frees). */
char *pg_run(const char *args)
{
    char cmd[4096], script[512], *out = NULL;
    size_t len = 0;
    snprintf(cmd, sizeof cmd, "%s %s", pg_script(script, sizeof script), args);
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return NULL;
    FILE *m = open_memstream(&out, &len);
    int ch;
    while ((ch = fgetc(f)) != EOF)
        fputc(ch, m);
    fclose(m);
    if (pclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* Starts this run's PostgreSQL: 0 or -1. */
int pg_up(void)
{
    char *out = pg_run("start");
    int pid = 0;
    if (out == NULL ||
        sscanf(out, "%255s %d %d", pg.dir, &pg.port, &pid) != 3) {
        fprintf(stderr, "cannot start PostgreSQL: %s\n", out ? out : "");
        free(out);
        return -1;
    }
    free(out);
    snprintf(pg.pwfile, sizeof pg.pwfile, "%s/password", pg.dir);
    return 0;
}

/* Stops it by its pid and removes its directory. */
void pg_down(void)
{
    char args[300];
    snprintf(args, sizeof args, "stop %s", pg.dir);
    free(pg_run(args));
}

/* Runs sql in database db; the rows as text (caller frees). */
char *pg_sql(const char *db, const char *sql)
{
    char args[2048];
    snprintf(args, sizeof args, "sql %s %s \"%s\"", pg.dir, db, sql);
    char *out = pg_run(args);
    if (out == NULL)
        fail_msg("psql failed: %s", sql);
    return out;
}

/* The database standing for queue name qpath (NULL: a new one), created
   on first use. */
const char *pg_db(const char *qpath)
{
    static _Thread_local char fresh[32];
    char args[400];
    for (int i = 0; qpath != NULL && i < pg.ndb; i++)
        if (strcmp(pg.names[i], qpath) == 0) {
            snprintf(fresh, sizeof fresh, "q%d", i);
            return fresh;
        }
    assert_true(pg.ndb < 64);
    snprintf(pg.names[pg.ndb], sizeof pg.names[0], "%s",
             qpath != NULL ? qpath : "");
    snprintf(fresh, sizeof fresh, "q%d", pg.ndb++);
    snprintf(args, sizeof args, "createdb %s %s", pg.dir, fresh);
    free(pg_run(args));
    return fresh;
}

/* The one number psql printed for sql in db. */
long pg_count(const char *db, const char *sql)
{
    char *out = pg_sql(db, sql);
    long v = strtol(out, NULL, 10);
    free(out);
    return v;
}
#endif
