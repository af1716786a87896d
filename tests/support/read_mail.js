// read_mail.js FILE - a stored message as npm's mailparser (simpleParser)
// reads it, printed as one JSON object with the members read_mail.py
// prints that mailparser knows: subject, from/to/cc as [name, address]
// pairs, whether any Bcc field is there, the text and HTML (line ends as
// LF), and every attachment and inline part (type, filename, disposition,
// content_id, the bytes in base64).  Modules come from tools/
// (scripts/deps.sh tools).
'use strict';
const fs = require('fs');
const path = require('path');

const toolsModules = path.join(__dirname, '..', '..', 'tools', 'node_modules');
const { simpleParser } = require(path.join(toolsModules, 'mailparser'));

// [[name, address], ...] of an address field, or [].
function pairs(field) {
    if (!field) return [];
    const list = Array.isArray(field) ? field : [field];
    const out = [];
    for (const f of list)
        for (const v of f.value) out.push([v.name, v.address]);
    return out;
}

// Text with CRLF turned into LF; null stays null.
function lf(s) {
    return typeof s === 'string' ? s.replace(/\r\n/g, '\n') : null;
}

async function main() {
    const raw = fs.readFileSync(process.argv[2]);
    const m = await simpleParser(raw, { skipHtmlToText: true, skipTextToHtml: true,
                                        skipImageLinks: true });
    const out = {
        subject: m.subject === undefined ? null : m.subject,
        from: pairs(m.from), to: pairs(m.to), cc: pairs(m.cc),
        reply_to: pairs(m.replyTo),
        bcc_field: m.headers.has('bcc') || m.headers.has('resent-bcc'),
        text: lf(m.text), html: m.html === false ? null : lf(m.html),
        files: m.attachments.map(a => ({
            type: a.contentType, filename: a.filename === undefined ? null : a.filename,
            disposition: a.contentDisposition || null,
            content_id: a.contentId ? a.contentId.replace(/^<|>$/g, '') : null,
            b64: a.content.toString('base64'),
        })),
    };
    process.stdout.write(JSON.stringify(out));
}

main().catch(e => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
