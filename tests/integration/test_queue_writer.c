/*
 * test_queue_writer.c - the queue's ids drawn from a per-thread block of
 * random bytes (queue/queue.c, queue_new_id): a forked child never takes
 * the bytes its parent takes next, and ids stay 22 base64url characters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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
    assert_string_not_equal(mine, theirs);
    assert_string_not_equal(mine, before);
    assert_string_not_equal(theirs, before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forked_child_and_parent_make_different_next_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
