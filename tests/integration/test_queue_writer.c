/*
 * test_queue_writer.c - the queue's ids drawn from a per-thread block of
 * random bytes (queue/queue.c, queue_new_id): a forked child never takes
 * the bytes its parent takes next, and ids stay 22 base64url characters;
 * an id's first 48 bits are the wall clock in milliseconds, the rest
 * random.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "queue/queue.h"

/* 1 when id is QUEUE_ID_LEN - 1 base64url characters. */
static int is_b64url_id(const char *id)
{
    if (strlen(id) != QUEUE_ID_LEN - 1)
        return 0;
    for (const char *c = id; *c; c++)
        if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                   "0123456789-_",
                   *c) == NULL)
            return 0;
    return 1;
}

/* The child of a fork draws its own bytes: its next id is not the one
   the parent makes next from the block both had at the fork. */
static void test_forked_child_and_parent_make_different_next_ids(void **state)
{
    (void)state;
    char before[QUEUE_ID_LEN], mine[QUEUE_ID_LEN], theirs[QUEUE_ID_LEN] = "";
    int fds[2], status = 0;
    queue_new_id(before); /* this thread's block is drawn, 16 bytes used */
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char id[QUEUE_ID_LEN];
        queue_new_id(id);
        _exit(write(fds[1], id, sizeof id) == (ssize_t)sizeof id ? 0 : 1);
    }
    close(fds[1]);
    queue_new_id(mine);
    assert_int_equal(read(fds[0], theirs, sizeof theirs),
                     (ssize_t)sizeof theirs);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(is_b64url_id(mine));
    assert_true(is_b64url_id(theirs));
    /* their random parts (past the 8 characters of time) */
    assert_string_not_equal(mine + 8, theirs + 8);
    assert_string_not_equal(mine + 8, before + 8);
    assert_string_not_equal(theirs + 8, before + 8);
}

/* The first 48 bits of id (its first 8 base64url characters). */
static uint64_t id_time_ms(const char *id)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                              "vwxyz0123456789-_";
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 6 | (uint64_t)(strchr(b64, id[i]) - b64);
    return v;
}

/* Milliseconds of the wall clock. */
static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* An id begins with the time it was made (so one moment's ids sit side by
   side in the indexes) and differs from the next in its random part. */
static void test_id_begins_with_the_time_and_ends_random(void **state)
{
    (void)state;
    char a[QUEUE_ID_LEN], b[QUEUE_ID_LEN];
    uint64_t t0 = wall_ms();
    queue_new_id(a);
    queue_new_id(b);
    uint64_t t1 = wall_ms();
    assert_true(is_b64url_id(a) && is_b64url_id(b));
    assert_true(id_time_ms(a) >= t0 && id_time_ms(a) <= t1);
    assert_true(id_time_ms(b) >= id_time_ms(a) && id_time_ms(b) <= t1);
    assert_string_not_equal(a + 8, b + 8); /* 80 random bits each */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forked_child_and_parent_make_different_next_ids),
        cmocka_unit_test(test_id_begins_with_the_time_and_ends_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
