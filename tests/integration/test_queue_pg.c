/*
 * test_queue_pg.c - the queue suite of test_queue.c against PostgreSQL:
 * the same tests, through `mailpool serve --queue-backend postgres`, on a
 * PostgreSQL 15 this binary starts and stops itself, and the tests of
 * several replicas sharing one database (see test_queue.c).
 */
#define QUEUE_TEST_PG 1
#include "tests/integration/test_queue.c"
