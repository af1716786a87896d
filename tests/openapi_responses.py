#!/usr/bin/python3
"""openapi_responses.py - every answer the test suite received, checked
against api/openapi.json.

make test sets MAILPOOL_RESPONSE_LOG for every test it runs; the tests'
HTTP client (tests/support/http.c) appends each answer to that file as one
JSON line {"method", "target", "status", "content_type", "body"}.  Run last,
this reads the file and checks each answer:

- its path (the target without its query) matches a path of the document
  and its method an operation there: the status is one that operation
  documents, the content type one that response documents, and a JSON body
  validates against the response's schema (JSON Schema 2020-12, the
  dialect of OpenAPI 3.1);
- otherwise (no such path, or a method the path does not have) the status
  is one of the document's "x-any-request-responses" (the answers any
  request can get whatever its route: 404, 405, 414, 431, 501, ...) and
  its body validates against that response's schema.

An answer without an X-Request-Id is libmicrohttpd's own (the request
never reached the API: a short HTML page with no Content-Type, as the
document's 414 and 431 say): only 400, 414 and 431 may come that way.

It fails when the log is missing or holds fewer than MIN_ANSWERS answers
(a suite that logged nothing proves nothing), when an answer does not
conform, and when a status the document's "x-any-request-responses" lists
was never seen (that part of the document went untested).  Prints each
failure with the request that got it.  Needs python3-jsonschema (Debian).
"""
import json
import os
import re
import sys

import jsonschema

MIN_ANSWERS = 500
# The answers libmicrohttpd gives itself, before the API sees a request.
MHD_OWN = ("400", "414", "431")
HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, "..", "api", "openapi.json")


def load_log(path):
    answers = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                answers.append(json.loads(line))
            except ValueError as e:
                raise SystemExit(f"{path}:{n}: not a JSON line ({e})")
    return answers


def path_matchers(doc):
    """(regex, template) for each documented path, literal ones first, so
    that /v1/messages/batch is not taken for /v1/messages/{id}."""
    out = []
    for template in doc["paths"]:
        rx = re.escape(template)
        rx = re.sub(r"\\\{[^}]+\\\}", "[^/]*", rx)
        out.append((re.compile("^" + rx + "$"), template))
    out.sort(key=lambda m: "{" in m[1])
    return out


# RFC 3986 6.2.2.2: a percent-encoded unreserved character is that
# character (the service matches routes after this decoding only).
UNRESERVED_ESCAPE = re.compile(r"%(4[1-9A-Fa-f]|5[0-9Aa]|6[1-9A-Fa-f]|7[0-9Aa]"
                               r"|3[0-9]|2[DEde]|5[Ff]|7[Ee])")


def unescape(m):
    return chr(int(m.group(1), 16))


def media_type(text):
    """"text/plain; version=0.0.4" -> "text/plain"."""
    return (text or "").split(";")[0].strip().lower()


class Checker:
    def __init__(self, doc):
        self.doc = doc
        self.matchers = path_matchers(doc)
        self.resolver = jsonschema.RefResolver.from_schema(doc)
        self.any_request = doc.get("x-any-request-responses", {})
        self.validators = {}

    def resolve(self, obj):
        while isinstance(obj, dict) and "$ref" in obj:
            obj = self.resolver.resolve(obj["$ref"])[1]
        return obj

    def operation(self, method, target):
        path = UNRESERVED_ESCAPE.sub(unescape, target.split("?", 1)[0])
        for rx, template in self.matchers:
            if rx.match(path):
                m = "get" if method == "HEAD" else method.lower()
                op = self.doc["paths"][template].get(m)
                return template, op
        return None, None

    def check(self, a):
        """None, or why the answer a does not conform."""
        status = str(a["status"])
        if not a.get("request_id", True):
            # libmicrohttpd's own answer (before the API sees the request):
            # a short page with no Content-Type, which the document
            # describes under these statuses.
            if status not in MHD_OWN:
                return (f"status {status} came without an X-Request-Id (not "
                        "from the API), which only 400, 414 and 431 may")
            if "json" in media_type(a.get("content_type")):
                return "libmicrohttpd's own page claims to be JSON"
            return None
        template, op = self.operation(a["method"], a["target"])
        if op is not None:
            responses = op.get("responses", {})
            resp = responses.get(status, responses.get("default"))
            where = f"{a['method'].lower()} {template}"
        else:
            resp = self.any_request.get(status)
            where = "x-any-request-responses"
        if resp is None:
            return f"status {status} is not documented ({where})"
        return self.check_body(self.resolve(resp), a, where)

    def check_body(self, resp, a, where):
        content = resp.get("content")
        body = a.get("body")
        omitted = a.get("body_omitted")
        if a["method"] == "HEAD" or content is None:
            if body or omitted:
                return f"{where} {a['status']} documents no body, got one"
            return None
        ctype = media_type(a.get("content_type"))
        media = next((m for k, m in content.items() if media_type(k) == ctype),
                     None)
        if media is None:
            return (f"{where} {a['status']}: content type {ctype!r} is not "
                    f"documented ({', '.join(content)})")
        if omitted == "not UTF-8" and "json" in ctype:
            return f"{where} {a['status']}: the JSON body is not UTF-8"
        if body is None or "schema" not in media or "json" not in ctype:
            return None
        try:
            value = json.loads(body)
        except ValueError as e:
            return f"{where} {a['status']}: the body is not JSON ({e})"
        schema = self.resolve(media["schema"])
        validator = self.validators.get(id(schema))
        if validator is None:
            validator = jsonschema.Draft202012Validator(
                schema, resolver=self.resolver)
            self.validators[id(schema)] = validator
        errors = sorted(validator.iter_errors(value), key=lambda e: e.path)
        if errors:
            e = errors[0]
            at = "/".join(str(p) for p in e.absolute_path)
            return f"{where} {a['status']}: at /{at}: {e.message[:300]}"
        return None


# Answers the check must refuse, tried before the log: a checker that lets
# one of them through proves nothing about the suite's answers.
MUST_FAIL = [
    {"method": "GET", "target": "/healthz", "status": 200,
     "content_type": "application/json", "request_id": True,
     "body": '{"status": "bogus"}'},
    {"method": "POST", "target": "/v1/messages", "status": 200,
     "content_type": "application/json", "request_id": True,
     "body_omitted": "not UTF-8"},
    {"method": "POST", "target": "/v1/messages", "status": 418,
     "content_type": "application/problem+json", "request_id": True,
     "body": "{}"},
    {"method": "GET", "target": "/nowhere", "status": 200,
     "content_type": "application/json", "request_id": True, "body": "{}"},
    {"method": "GET", "target": "/healthz", "status": 500,
     "content_type": None, "request_id": False, "body": "x"},
    {"method": "GET", "target": "/metrics", "status": 200,
     "content_type": "application/json", "request_id": True, "body": "{}"},
]


def main():
    log = os.environ.get("MAILPOOL_RESPONSE_LOG", "")
    if len(sys.argv) > 1:
        log = sys.argv[1]
    if not log or not os.path.exists(log):
        print(f"openapi_responses: no response log ({log or 'unset'}): "
              "run it from make test", file=sys.stderr)
        return 1
    with open(DOC, encoding="utf-8") as f:
        doc = json.load(f)
    answers = load_log(log)
    checker = Checker(doc)
    for a in MUST_FAIL:
        if checker.check(a) is None:
            print(f"openapi_responses: the check let a bad answer through: {a}")
            return 1
    bad = 0
    seen = set()
    for a in answers:
        if a.get("request_id", True):  # the API's, not libmicrohttpd's
            seen.add(str(a["status"]))
        why = checker.check(a)
        if why is not None:
            bad += 1
            if bad <= 60:
                print(f"openapi_responses: {a['method']} {a['target'][:120]} "
                      f"-> {a['status']}: {why}")
    unseen = sorted(set(checker.any_request) - seen)
    statuses = " ".join(f"{s}" for s in sorted(seen))
    print(f"openapi_responses: {len(answers)} answers checked "
          f"(statuses {statuses}), {bad} do not conform")
    if len(answers) < MIN_ANSWERS:
        print(f"openapi_responses: fewer than {MIN_ANSWERS} answers logged")
        return 1
    if unseen:
        print("openapi_responses: no test received "
              f"{', '.join(unseen)} of x-any-request-responses")
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
