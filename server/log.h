/*
 * server/log.h - one JSON object per line on standard error.
 *
 * log_event(LOG_INFO, "request", "request_id", id, "status", "200", NULL):
 * the arguments after the event name are key/value string pairs ended by
 * NULL; a NULL value is skipped.  log_event_num adds numbers without
 * formatting them first.  Values are JSON-escaped.  Never pass a body, a
 * password or an API key.
 *
 * Threads: safe; each line is written with a single write(2).
 * Global state: the minimum level, set once at start by log_set_level.
 */
#ifndef MAILPOOL_LOG_H
#define MAILPOOL_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* "debug", "info", "warn", "error"; returns -1 for anything else. */
int log_set_level(const char *name);
int log_enabled(enum log_level level);
void log_event(enum log_level level, const char *event, ...);

#endif /* MAILPOOL_LOG_H */
