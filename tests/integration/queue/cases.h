/*
 * cases.h - the cases of the queue suite, one group per file of
 * tests/integration/queue/; suite.c runs them in its order.  Cases of one
 * backend only are declared in both builds and defined in theirs.
 */
#ifndef MAILPOOL_TESTS_QUEUE_CASES_H
#define MAILPOOL_TESTS_QUEUE_CASES_H

/* concurrency.c */
void test_50_concurrent_posts_with_one_key_send_once(void **state);
void test_async_repeat_with_key_returns_same_id_other_body_422(void **state);
void test_cancel_racing_the_claim_one_wins_never_both(void **state);

/* crash.c */
void test_sigkill_while_sending_makes_it_unknown_never_resent(void **state);
void test_sigkill_leaves_the_unstarted_claim_queued_sent_once(void **state);
void test_one_worker_claims_sixteen_sigkill_sends_the_unstarted_once(
    void **state);
void test_crash_matrix_every_202_final_none_lost_none_twice(void **state);
void test_sigterm_leaves_the_rest_queued_for_the_next_start(void **state);

/* direct.c */
void test_reaper_queues_the_unstarted_and_ends_the_started_unknown(void **state);
void test_a_replica_never_holds_two_claims_of_one_message(void **state);

/* disk.c */
void test_full_or_read_only_disk_is_503_and_loses_nothing(void **state);
void test_read_only_database_is_a_start_error_exit_2(void **state);
void test_second_service_on_one_queue_file_exits_2_and_touches_nothing(
    void **state);
void test_read_only_database_is_503_and_a_start_error_exit_2(void **state);

/* events.c */
void test_each_state_change_writes_its_event_with_it(void **state);

/* lifecycle.c */
void test_async_202_means_stored_then_sent_once_with_its_message_id(
    void **state);
void test_async_batch_is_validated_whole_and_nothing_is_queued(void **state);
void test_unknown_id_is_404_and_send_at_in_sync_is_422(void **state);
void test_scheduled_waits_for_send_at_and_cancel_stops_it(void **state);
void test_temporary_failures_retry_with_backoff_then_sent(void **state);
void test_partial_retries_only_the_deferred_recipients(void **state);
void test_permanent_failure_is_final_after_one_attempt(void **state);

/* msglog.c */
void test_message_log_filters_and_pages_on_this_backend(void **state);
void test_sync_sends_are_in_the_message_log_with_the_relay_words(void **state);
void test_log_sync_false_keeps_sync_sends_out_of_the_log(void **state);

/* pg_outage.c */
void test_postgres_restart_is_503_and_unready_while_down_no_202_lost(
    void **state);
void test_silent_postgres_is_unready_within_seconds_then_ready(void **state);

/* replicas.c */
void test_three_replicas_deliver_a_batch_exactly_once(void **state);
void test_replica_killed_started_end_unknown_unstarted_sent_once(void **state);
void test_two_replicas_deliver_10000_messages_exactly_once(void **state);
void test_four_replicas_deliver_10000_messages_exactly_once(void **state);
void test_retention_purges_messages_with_their_claim_log(void **state);
void test_ten_replicas_starting_at_once_migrate_once(void **state);

/* suite.c: runs the cases of this build's backend (QUEUE_TEST_FILTER:
   the one of that name); cmocka's exit code. */
int queue_suite_run(void);

#endif
