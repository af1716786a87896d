#!/bin/sh
# check-deps.sh - the module arrows of docs/ARCHITECTURE.md, checked on the
# #include lines:  smtpcore -> (libc, TLS);  config -> (libc, inih);
# queue -> (libc, SQLite, libpq);  server -> smtpcore, config, queue, dkim;
# api -> server, queue, config, compose, jansson, microhttpd;
# compose -> (libc, GLib/GMime, libidn2, smtpcore's public header);
# dkim -> (libc, GnuTLS, nettle, smtpcore's public header);
# webhook -> queue, config, util, (libcurl, GnuTLS, jansson).
# result -> (jansson, smtpcore's public header, util): the result object
# both api and cmd print.  cmd/ (the mailpool program) is the one place
# that sees every module: nothing includes cmd/ but cmd/ itself.
# util -> (libc) only; every module but smtpcore (a library one can lift
# out) may use util.  Inside api/, see the last two checks.
set -u
bad=0
check() {   # module, regex of includes it must not have
    hits=$(grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]($2)" \
        $(find "$1" -name '*.[ch]') 2>/dev/null)
    if [ -n "$hits" ]; then
        echo "check-deps: $1 must not include these:"; echo "$hits"; bad=1
    fi
}
check smtpcore 'config/|server/|api/|util/|jansson|microhttpd|ini\.h'
check util     'smtpcore|config/|server/|api/|queue/|compose/|dkim/|webhook/|jansson|microhttpd|gnutls|sqlite|libpq|gmime|ini\.h'
check config   'smtpcore|server/|api/|jansson|microhttpd|gnutls'
check queue    'smtpcore|config/|server/|api/|jansson|microhttpd|gnutls'
check server   'api/|jansson|microhttpd'
check api      'smtpcore/src'
check compose  'smtpcore/src|config/|server/|api/|queue/|jansson|microhttpd|sqlite'
check dkim     'smtpcore/src|config/|server/|api/|queue/|jansson|microhttpd|ini\.h|sqlite'
check webhook  'smtpcore|server/|api/|microhttpd|sqlite|libpq'
check result   'smtpcore/src|config/|server/|api/|queue/|compose/|dkim/|webhook/|microhttpd|gnutls|sqlite|libpq|gmime|ini\.h'
for m in smtpcore util config queue server api compose dkim webhook result; do
    check "$m" 'cmd/'
done
# Inside api/: the route handlers reach a request's life (connection,
# lock, pending work, body buffer, budget) only through api/request.h, not
# the fields request.c owns nor http.h; the lifecycle (request.c, head.c,
# reply.c) names no handler: it dispatches through route.c's table.
api_handlers="api/routes.c api/async.c api/message.c api/list.c api/ui.c
    api/metrics.c api/queue_metrics.c api/synclog.c"
hits=$(grep -nE 'req->(refs|t0|phase|body|len|cap|dropped|expect|received|charged|too_big|over_budget|mu|pending|suspended|abandoned|conn|wprev|wnext|on_wlist|answer)\b|include[[:space:]]*"api/http\.h"' \
    $api_handlers 2>/dev/null)
if [ -n "$hits" ]; then
    echo "check-deps: api's handlers use api/request.h, not these:"; echo "$hits"; bad=1
fi
hits=$(grep -nE '\b(api_get_[a-z]+|api_post_jobs|api_message_(get|cancel|list)|api_ui_get)\b' \
    api/request.c api/head.c api/reply.c 2>/dev/null)
if [ -n "$hits" ]; then
    echo "check-deps: api's request lifecycle names a handler (route.c's table does):"
    echo "$hits"; bad=1
fi
[ $bad -eq 0 ] && echo "check-deps: ok"
exit $bad
