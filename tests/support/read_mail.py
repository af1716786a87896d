#!/usr/bin/python3
"""read_mail.py FILE - a stored message as Python's email package (policy
default) reads it, printed as one JSON object for the composition tests:
subject, from/to/cc as [name, address] pairs, whether any Bcc field is
there, the text and HTML bodies (line ends as LF), every attachment and
inline part (type, charset, filename, disposition, content_id, the bytes
in base64) and the MIME structure ("multipart/mixed(text/plain,...)").
The trace fields a server prepends (Return-Path, Delivered-To, Received)
are ignored."""
import base64
import email
import email.policy
import json
import sys


def pairs(msg, name):
    field = msg[name]
    if field is None:
        return []
    return [[a.display_name, a.addr_spec] for a in field.addresses]


def structure(part):
    if part.is_multipart():
        inner = ",".join(structure(p) for p in part.iter_parts())
        return "%s(%s)" % (part.get_content_type(), inner)
    return part.get_content_type()


def lf(text):
    return text.replace("\r\n", "\n") if text is not None else None


def main():
    with open(sys.argv[1], "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    files = []
    for part in msg.walk():
        if part.is_multipart() or part is text or part is html:
            continue
        cid = part["Content-ID"]
        files.append({
            "type": part.get_content_type(),
            "charset": part.get_content_charset(),
            "filename": part.get_filename(),
            "disposition": part.get_content_disposition(),
            "content_id": str(cid).strip("<>") if cid else None,
            "b64": base64.b64encode(part.get_payload(decode=True)).decode(),
        })
    out = {
        "subject": str(msg["subject"]) if msg["subject"] is not None else None,
        "from": pairs(msg, "from"),
        "to": pairs(msg, "to"),
        "cc": pairs(msg, "cc"),
        "reply_to": pairs(msg, "reply-to"),
        "bcc_field": any(k.lower() in ("bcc", "resent-bcc") for k in msg.keys()),
        "mime_version": msg["MIME-Version"],
        "message_id": msg["Message-ID"],
        "list_unsubscribe": msg["List-Unsubscribe"],
        "text": lf(text.get_content()) if text is not None else None,
        "text_charset": text.get_content_charset() if text is not None else None,
        "html": lf(html.get_content()) if html is not None else None,
        "html_charset": html.get_content_charset() if html is not None else None,
        "files": files,
        "structure": structure(msg),
        "defects": [type(d).__name__ for p in msg.walk() for d in p.defects],
    }
    json.dump(out, sys.stdout, ensure_ascii=True)


main()
