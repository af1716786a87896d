/*
 * tests/support/json_fx.h - what a parsed JSON tree holds, and the same
 * count made byte by byte from any text, parsed or not: the references the
 * tests and the fuzz target hold api_json_values (api/codec.h) to.
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

/* api_json_values's count the plain way, one byte at a time, for any
   text: strings (a backslash escapes the next byte), '[' and '{', and
   runs of scalar characters; past max it stops; 0 past Jansson's depth. */
static inline size_t json_fx_values_bytewise(const char *text, size_t len,
                                             size_t max)
{
    size_t n = 0, depth = 0;
    int in_str = 0, in_scalar = 0;
    for (size_t i = 0; i < len && n <= max; i++) {
        char ch = text[i];
        if (in_str) {
            i += ch == '\\';
            in_str = ch != '"';
            continue;
        }
        depth += ch == '[' || ch == '{';
        depth -= depth > 0 && (ch == ']' || ch == '}');
        if (depth > JSON_PARSER_MAX_DEPTH)
            return 0;
        int scalar = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                     (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '+' ||
                     ch == '.';
        n += (ch == '"' || ch == '[' || ch == '{' || (scalar && !in_scalar));
        in_str = ch == '"';
        in_scalar = scalar;
    }
    return n;
}

#endif /* MAILPOOL_TESTS_JSON_FX_H */
