#!/bin/bash
# exim-peer.sh setup DIR   - configure a private Exim 4 on 127.0.0.1
# exim-peer.sh run DIR     - exec its daemon in the foreground (tests only;
#                            run as root)
# The binary is the one `scripts/deps.sh exim` unpacked from Debian's
# packages into $MAILPOOL_EXIM_DIR (default /var/cache/mailpool-test/exim):
# Exim is never installed, since installing exim4 removes Postfix.  Its
# compiled-in user, Debian-exim, exists only in a private mount namespace
# (`unshare -m`) where DIR/nss/passwd and DIR/nss/group are bind-mounted over
# /etc/passwd and /etc/group; with -C Exim drops root and runs as that user
# (uid 5001), deliveries included.  `run` execs, so the caller's child pid is
# the daemon's (exim -bdf stays in the foreground; SIGTERM stops it).
# Everything lives under DIR: exim.conf, spool/, log/ (mainlog, rejectlog,
# paniclog), mail/inbox/ (one Maildir), cert.pem + key.pem, authpass, and
# ports ("NAME PORT" lines, free ports a moment ago).  Listeners:
#   plain   STARTTLS offered, AUTH (PLAIN, LOGIN) offered once under TLS
#   submit  MAIL refused before STARTTLS, RCPT refused before AUTH
#   smtps   TLS from the first byte (tls_on_connect_ports), AUTH required
# Exim's strict synchronisation (smtp_enforce_sync) is on and
# smtp_accept_max_nonmail keeps its default (10).  Mailboxes: any local part
# at example.test except those starting with "unknown" (550 at RCPT); each
# recipient's copy is its own file, with an Envelope-to field naming it.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 setup|run DIR" >&2; exit 2; }
B=$2
here=$(cd "$(dirname "$0")" && pwd)
X=${MAILPOOL_EXIM_DIR:-/var/cache/mailpool-test/exim}/root
EXIM=$X/usr/sbin/exim4

case $1 in
run)
    exec unshare -m --propagation private sh -c \
        "mount --bind '$B/nss/passwd' /etc/passwd &&
         mount --bind '$B/nss/group' /etc/group &&
         exec '$EXIM' -C '$B/exim.conf' -bdf -q1s"
    ;;
setup) ;;
*) echo "usage: $0 setup|run DIR" >&2; exit 2 ;;
esac

[ -x "$EXIM" ] || { echo "exim-peer: no $EXIM; run scripts/deps.sh exim" >&2; exit 1; }
chmod 0755 "$B"
mkdir -p "$B/spool" "$B/log" "$B/mail" "$B/nss"
[ -f "$B/cert.pem" ] || sh "$here/make-cert.sh" "$B"
cp /etc/passwd "$B/nss/passwd"
cp /etc/group "$B/nss/group"
grep -q '^Debian-exim:' "$B/nss/passwd" ||
    echo "Debian-exim:x:5001:5001:exim:$B/spool:/usr/sbin/nologin" >> "$B/nss/passwd"
grep -q '^Debian-exim:' "$B/nss/group" || echo 'Debian-exim:x:5001:' >> "$B/nss/group"
chown -R 5001:5001 "$B/spool" "$B/log" "$B/mail" "$B/key.pem"
printf '%s\n' "s3cret-pw" > "$B/authpass"
chmod 0600 "$B/authpass"
pass=$(tr -d '\n' < "$B/authpass")

/usr/bin/python3 "$here/free-ports.py" plain submit smtps > "$B/ports"
port() { awk -v n="$1" '$1 == n { print $2 }' "$B/ports"; }
P=$(port plain); S=$(port submit); T=$(port smtps)

# Exim reads the config as the exim user: it must not be writable by others.
umask 022
cat > "$B/exim.conf" <<CONF
exim_path = $EXIM
spool_directory = $B/spool
log_file_path = $B/log/%slog
pid_file_path = $B/exim.pid
primary_hostname = exim.test
qualify_domain = exim.test
daemon_smtp_ports = $P : $S : $T
local_interfaces = 127.0.0.1
tls_on_connect_ports = $T
never_users = root
host_lookup =
rfc1413_hosts =
keep_environment =
message_size_limit = 10M
accept_8bitmime = true
smtputf8_advertise_hosts = *
pipelining_advertise_hosts = *
tls_certificate = $B/cert.pem
tls_privatekey = $B/key.pem
tls_advertise_hosts = *
smtp_enforce_sync = true
smtp_accept_max = 200
smtp_accept_queue_per_connection = 0
smtp_accept_max_per_host = 0
smtp_accept_max_per_connection = 10000
smtp_accept_reserve = 0
recipients_max = 0
queue_only = false
log_selector = +smtp_protocol_error +smtp_syntax_error +pipelining \
  +received_recipients +tls_cipher +smtp_connection +incoming_port \
  +smtp_incomplete_transaction +smtp_no_mail +lost_incoming_connection
acl_smtp_mail = acl_mail
acl_smtp_rcpt = acl_rcpt
acl_smtp_data = acl_data

begin acl
acl_mail:
  deny  condition = \${if eq{\$received_port}{$S}}
        !encrypted = *
        message = 5.7.0 Must issue a STARTTLS command first
  accept
acl_rcpt:
  deny  condition = \${if inlist{\$received_port}{$S:$T}}
        !authenticated = *
        message = 5.7.1 authentication required
  deny  domains = !example.test
        message = 5.7.1 relay not permitted
  deny  local_parts = ^.*[@%!/|]
  require verify = recipient
  accept
acl_data:
  accept

begin routers
inbox:
  driver = accept
  domains = example.test
  local_parts = ! ^unknown : ^.+\\\$
  transport = maildir_delivery
  cannot_route_message = 5.1.1 <\$local_part@\$domain>: no such user

begin transports
maildir_delivery:
  driver = appendfile
  directory = $B/mail/inbox
  maildir_format
  create_directory
  delivery_date_add
  envelope_to_add
  return_path_add
  user = 5001
  group = 5001
  mode = 0644

begin retry
*   *   F,1h,1s

begin authenticators
PLAIN:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = \${if and {{eq{\$auth2}{alice@example.test}}{eq{\$auth3}{$pass}}}}
  server_set_id = \$auth2
  server_advertise_condition = \${if def:tls_in_cipher}
LOGIN:
  driver = plaintext
  public_name = LOGIN
  server_prompts = <| Username: | Password:
  server_condition = \${if and {{eq{\$auth1}{alice@example.test}}{eq{\$auth2}{$pass}}}}
  server_set_id = \$auth1
  server_advertise_condition = \${if def:tls_in_cipher}
CONF
chmod 0644 "$B/exim.conf"
