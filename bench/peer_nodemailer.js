// peer_nodemailer.js PORT CONNS MESSAGES - nodemailer's pooled SMTP transport
// as a peer in `make bench`: MESSAGES 1 KiB messages over CONNS connections.
'use strict';
const path = require('path');
const nodemailer = require(path.join(__dirname, '..', 'tools', 'node_modules', 'nodemailer'));
const [port, conns, total] = process.argv.slice(2).map(Number);
const t = nodemailer.createTransport({
  host: '127.0.0.1', port, secure: false, ignoreTLS: true, pool: true,
  maxConnections: conns, maxMessages: Infinity,
});
const text = ('x'.repeat(62) + '\r\n').repeat(16);
let pending = [];
for (let i = 0; i < total; i++) {
  pending.push(t.sendMail({ from: 'sender@example.org', to: 'bench@example.org',
                            subject: 'bench', text }));
}
Promise.all(pending).then(() => { t.close(); }, (e) => { console.error(e); process.exit(1); });
