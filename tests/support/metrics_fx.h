/*
 * tests/support/metrics_fx.h - reading one sample out of the Prometheus
 * text of GET /metrics, for every test that checks a counter: the line
 * "name{labels} value" whose series is exactly the key.  Header-only
 * (static inline), no assertions: the caller says what absence means.
 */
#ifndef TESTS_SUPPORT_METRICS_FX_H
#define TESTS_SUPPORT_METRICS_FX_H

#include <stdlib.h>
#include <string.h>

/* The value of the sample whose "name{labels}" is exactly key in text;
   *found is 0 (and the value 0) when text has no such line. */
static inline double metrics_value(const char *text, const char *key,
                                   int *found)
{
    size_t klen = strlen(key);
    *found = 0;
    for (const char *l = text; l != NULL && *l != '\0';) {
        if (strncmp(l, key, klen) == 0 && l[klen] == ' ') {
            *found = 1;
            return strtod(l + klen + 1, NULL);
        }
        l = strchr(l, '\n');
        if (l != NULL)
            l++;
    }
    return 0;
}

#endif /* TESTS_SUPPORT_METRICS_FX_H */
