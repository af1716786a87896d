// smtp_server_peer.js - nodemailer's smtp-server as a test peer (tests only).
//
//   node smtp_server_peer.js --ready-file F --capture-dir D [options]
//
// Listens on 127.0.0.1, port 0 (a free one), and writes "PORT\n" to the ready
// file once listening.  Options:
//   --tls-cert F --tls-key F   a certificate: STARTTLS is offered
//   --secure                   TLS from the first byte (implicit, port 465 style)
//   --require-tls              MAIL before STARTTLS is refused (530)
//   --auth-user U --auth-pass-file F
//                              AUTH PLAIN and LOGIN with this user (required;
//                              offered only under TLS when a cert is given)
//   --size N                   SIZE N, bigger messages refused (552)
//   --no-smtputf8 --no-8bitmime --no-pipelining
//                              hide these extensions
//   --max-recipients N         RCPT beyond N in a transaction: 452
// Recipients whose local part starts with "unknown" are refused (550).
// Each accepted message becomes three files in the capture directory, named
// by a counter from 1 (zero-padded):
//   N.eml   the message as received (dot-stuffing removed, CRLF kept)
//   N.json  {"mail_from", "rcpt_to", "mail_args", "body_type", "smtputf8",
//            "tls", "user"}
//   N.parsed.json  mailparser's simpleParser view: {"subject", "text",
//            "from", "to", "message_id", "headers": [[name, value], ...]}
// N.json appears last (renamed into place): a reader that sees it sees the
// other two complete.
// The modules come from tools/node_modules (scripts/deps.sh tools).
'use strict';
const fs = require('fs');
const path = require('path');

const toolsModules = path.join(__dirname, '..', '..', 'tools', 'node_modules');
const { SMTPServer } = require(path.join(toolsModules, 'smtp-server'));
const { simpleParser } = require(path.join(toolsModules, 'mailparser'));

// Parses argv into an options object; exits 2 on an unknown flag.
function parseArgs(argv) {
    const o = { maxRecipients: 0, size: 0 };
    const valued = {
        '--ready-file': 'ready', '--capture-dir': 'capture', '--tls-cert': 'cert',
        '--tls-key': 'key', '--auth-user': 'user', '--auth-pass-file': 'passFile',
        '--size': 'size', '--max-recipients': 'maxRecipients',
    };
    const flags = {
        '--secure': 'secure', '--require-tls': 'requireTls', '--no-smtputf8': 'noUtf8',
        '--no-8bitmime': 'no8bit', '--no-pipelining': 'noPipelining',
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (valued[a] && i + 1 < argv.length) {
            o[valued[a]] = argv[++i];
        } else if (flags[a]) {
            o[flags[a]] = true;
        } else {
            process.stderr.write(`smtp_server_peer: unknown or incomplete option ${a}\n`);
            process.exit(2);
        }
    }
    if (!o.ready || !o.capture) {
        process.stderr.write('smtp_server_peer: --ready-file and --capture-dir are required\n');
        process.exit(2);
    }
    o.size = Number(o.size) || 0;
    o.maxRecipients = Number(o.maxRecipients) || 0;
    return o;
}

const opt = parseArgs(process.argv.slice(2));
fs.mkdirSync(opt.capture, { recursive: true });
const pass = opt.passFile ? fs.readFileSync(opt.passFile, 'utf8').replace(/\n$/, '') : null;
let seq = 0;

// An Error carrying an SMTP reply code.
function smtpError(code, text) {
    const e = new Error(text);
    e.responseCode = code;
    return e;
}

// Writes the three capture files of one message (N.json last).
async function capture(raw, session) {
    const n = String(++seq).padStart(6, '0');
    const base = path.join(opt.capture, n);
    fs.writeFileSync(base + '.eml', raw);
    const p = await simpleParser(raw, { skipHtmlToText: true, skipTextToHtml: true,
                                        skipImageLinks: true });
    fs.writeFileSync(base + '.parsed.json', JSON.stringify({
        subject: p.subject === undefined ? null : p.subject,
        text: p.text === undefined ? null : p.text,
        from: p.from ? p.from.text : null,
        to: p.to ? p.to.text : null,
        message_id: p.messageId === undefined ? null : p.messageId,
        headers: p.headerLines.map(h => [h.key, h.line]),
    }));
    const env = session.envelope;
    fs.writeFileSync(base + '.json.tmp', JSON.stringify({
        mail_from: env.mailFrom ? env.mailFrom.address : '',
        rcpt_to: env.rcptTo.map(r => r.address),
        mail_args: env.mailFrom && env.mailFrom.args ? env.mailFrom.args : {},
        body_type: env.bodyType || null,
        smtputf8: !!env.smtpUtf8,
        tls: !!session.secure,
        user: session.user || null,
    }));
    fs.renameSync(base + '.json.tmp', base + '.json');
}

const serverOpts = {
    name: 'smtp-server.test',
    secure: !!opt.secure,
    disabledCommands: opt.user ? [] : ['AUTH'],
    authMethods: ['PLAIN', 'LOGIN'],
    authOptional: !opt.user,
    allowInsecureAuth: !opt.cert,
    hideSTARTTLS: !opt.cert,
    hidePIPELINING: !!opt.noPipelining,
    hide8BITMIME: !!opt.no8bit,
    hideSMTPUTF8: !!opt.noUtf8,
    disableReverseLookup: true,
    logger: false,
    onAuth(auth, session, cb) {
        if (auth.username === opt.user && auth.password === pass) {
            return cb(null, { user: auth.username });
        }
        return cb(smtpError(535, '5.7.8 Authentication credentials invalid'));
    },
    onMailFrom(addr, session, cb) {
        if (opt.requireTls && !session.secure) {
            return cb(smtpError(530, '5.7.0 Must issue a STARTTLS command first'));
        }
        return cb();
    },
    onRcptTo(addr, session, cb) {
        if (/^unknown/i.test(addr.address)) {
            return cb(smtpError(550, `5.1.1 <${addr.address}>: no such user here`));
        }
        if (opt.maxRecipients && session.envelope.rcptTo.length >= opt.maxRecipients) {
            return cb(smtpError(452, '4.5.3 Error: too many recipients'));
        }
        return cb();
    },
    onData(stream, session, cb) {
        const chunks = [];
        stream.on('data', c => chunks.push(c));
        stream.on('end', () => {
            if (stream.sizeExceeded) {
                return cb(smtpError(552, '5.3.4 message exceeds fixed maximum message size'));
            }
            capture(Buffer.concat(chunks), session).then(
                () => cb(null, `2.0.0 Ok: queued as ${seq}`),
                e => cb(smtpError(451, `4.3.0 capture failed: ${e.message}`)));
        });
    },
};
if (opt.cert) {
    serverOpts.key = fs.readFileSync(opt.key);
    serverOpts.cert = fs.readFileSync(opt.cert);
}
if (opt.size) serverOpts.size = opt.size;

const server = new SMTPServer(serverOpts);
server.on('error', e => process.stderr.write(`smtp_server_peer: ${e.message}\n`));
server.listen(0, '127.0.0.1', () => {
    const tmp = opt.ready + '.tmp';
    fs.writeFileSync(tmp, `${server.server.address().port}\n`);
    fs.renameSync(tmp, opt.ready);
});
process.on('SIGTERM', () => {
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();   // open sessions end here
});
