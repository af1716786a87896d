#!/usr/bin/python3
"""dkim_verify.py - verifies every DKIM-Signature of a message with dkimpy
(Debian python3-dkim), its keys served by a DNS function of the test.

    dkim_verify.py MESSAGE_FILE NAME=RECORD ...

NAME is "selector._domainkey.domain" and RECORD the TXT record published
there.  Prints one JSON object: {"signatures": N, "results": [bool...],
"h": [[names...]...], "d": [...], "s": [...], "a": [...]}.  Exits 0 when
there is at least one signature and every one verifies, 1 otherwise.
"""
import json
import sys

import dkim
from dkim.util import parse_tag_value


def main():
    msg = open(sys.argv[1], "rb").read()
    records = {}
    for arg in sys.argv[2:]:
        name, _, record = arg.partition("=")
        records[name.rstrip(".").lower() + "."] = record.encode()

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return records.get(name.lower())

    d = dkim.DKIM(msg)
    sigs = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
    out = {"signatures": len(sigs), "results": [], "h": [], "d": [], "s": [],
           "a": []}
    for i, raw in enumerate(sigs):
        tags = parse_tag_value(raw)
        out["h"].append([x.strip().decode() for x in tags[b"h"].split(b":")])
        for t in ("d", "s", "a"):
            out[t].append(tags[t.encode()].decode())
        try:
            ok = dkim.DKIM(msg).verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            sys.stderr.write("signature %d: %s\n" % (i, e))
            ok = False
        out["results"].append(bool(ok))
    print(json.dumps(out))
    return 0 if sigs and all(out["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
