/*
 * tests/support/json_fx.h - what a parsed JSON tree holds, for the tests
 * and the fuzz target of api_json_values (api/codec.h), which counts the
 * same from the bytes before anything is parsed.
 *
 * Threads: any (reads the tree only).
 */
#ifndef MAILPOOL_TESTS_JSON_FX_H
#define MAILPOOL_TESTS_JSON_FX_H

#include <stddef.h>

#include <jansson.h>

/* The values of tree v, v itself and every member name included. */
static inline size_t json_fx_tree_values(json_t *v)
{
    size_t n = 1, i;
    const char *k;
    json_t *e;
    if (json_is_array(v))
        json_array_foreach(v, i, e) n += json_fx_tree_values(e);
    else if (json_is_object(v))
        json_object_foreach(v, k, e) n += 1 + json_fx_tree_values(e);
    return n;
}

#endif /* MAILPOOL_TESTS_JSON_FX_H */
