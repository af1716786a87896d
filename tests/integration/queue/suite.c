/*
 * suite.c - the queue suite's runner, compiled once per backend: the
 * cases in their order (those of one backend only in its build), libcurl
 * set up before any thread, QUEUE_TEST_FILTER choosing one case by name,
 * and on PostgreSQL the private server started first and stopped last.
 */
#include <curl/curl.h>
#include <signal.h>

#include "tests/integration/queue/cases.h"
#include "tests/integration/queue/qfx.h"

#define T(fn) cmocka_unit_test(fn)

/* Runs the suite on this build's backend; cmocka's exit code. */
int queue_suite_run(void)
{
    const struct CMUnitTest tests[] = {
        T(test_reaper_queues_the_unstarted_and_ends_the_started_unknown),
        T(test_async_202_means_stored_then_sent_once_with_its_message_id),
        T(test_message_log_filters_and_pages_on_this_backend),
        T(test_sync_sends_are_in_the_message_log_with_the_relay_words),
        T(test_log_sync_false_keeps_sync_sends_out_of_the_log),
        T(test_async_batch_is_validated_whole_and_nothing_is_queued),
        T(test_unknown_id_is_404_and_send_at_in_sync_is_422),
        T(test_scheduled_waits_for_send_at_and_cancel_stops_it),
        T(test_temporary_failures_retry_with_backoff_then_sent),
        T(test_permanent_failure_is_final_after_one_attempt),
        T(test_partial_retries_only_the_deferred_recipients),
        T(test_each_state_change_writes_its_event_with_it),
        T(test_50_concurrent_posts_with_one_key_send_once),
        T(test_async_repeat_with_key_returns_same_id_other_body_422),
        T(test_sigkill_while_sending_makes_it_unknown_never_resent),
        T(test_sigkill_leaves_the_unstarted_claim_queued_sent_once),
        T(test_crash_matrix_every_202_final_none_lost_none_twice),
        T(test_sigterm_leaves_the_rest_queued_for_the_next_start),
        T(test_cancel_racing_the_claim_one_wins_never_both),
#ifndef QUEUE_TEST_PG
        T(test_full_or_read_only_disk_is_503_and_loses_nothing),
        T(test_one_worker_claims_sixteen_sigkill_sends_the_unstarted_once),
        T(test_read_only_database_is_a_start_error_exit_2),
        T(test_second_service_on_one_queue_file_exits_2_and_touches_nothing),
#else
        T(test_read_only_database_is_503_and_a_start_error_exit_2),
        T(test_postgres_restart_is_503_and_unready_while_down_no_202_lost),
        T(test_silent_postgres_is_unready_within_seconds_then_ready),
        T(test_three_replicas_deliver_a_batch_exactly_once),
        T(test_two_replicas_deliver_10000_messages_exactly_once),
        T(test_four_replicas_deliver_10000_messages_exactly_once),
        T(test_replica_killed_started_end_unknown_unstarted_sent_once),
        T(test_ten_replicas_starting_at_once_migrate_once),
        T(test_retention_purges_messages_with_their_claim_log),
        T(test_a_replica_never_holds_two_claims_of_one_message),
#endif
    };
    signal(SIGPIPE, SIG_IGN);
    /* libcurl's global state before any thread uses it (the concurrent
       idempotency test runs 50 clients at once). */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    if (getenv("QUEUE_TEST_FILTER") != NULL) /* one test by name */
        cmocka_set_test_filter(getenv("QUEUE_TEST_FILTER"));
#ifdef QUEUE_TEST_PG
    if (pg_up() < 0)
        return 1;
#endif
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
#ifdef QUEUE_TEST_PG
    pg_down();
#endif
    curl_global_cleanup();
    return rc;
}
