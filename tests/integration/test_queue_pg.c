/*
 * test_queue_pg.c - the queue suite of test_queue.c against PostgreSQL:
 * the same tests, through `mailpool serve --queue-backend postgres`, on a
 * PostgreSQL 15 this binary starts and stops itself, and the tests of
 * several replicas sharing one database.  The Makefile links it with the
 * suite's files compiled with QUEUE_TEST_PG (tests/integration/queue/).
 */
#include "tests/integration/queue/cases.h"

/* The suite on PostgreSQL. */
int main(void)
{
    return queue_suite_run();
}
