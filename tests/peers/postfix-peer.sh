#!/bin/bash
# postfix-peer.sh setup DIR - configure a private Postfix instance on
# 127.0.0.1 (tests only; run as root).  Everything lives under DIR: etc/
# (main.cf, master.cf, sasl/smtpd.conf), queue/, data/, sasl/sasldb2, mail/
# (a virtual Maildir), maillog, cert.pem + key.pem, and ports ("NAME PORT"
# lines, free ports a moment ago).  The caller then runs the master in the
# foreground as its own child, `postfix -c DIR/etc start-fg` (its pid is the
# caller's to wait for), and stops it with `postfix -c DIR/etc stop`.
# Listeners:
#   plain      STARTTLS offered (smtpd_tls_security_level=may), no AUTH
#   encrypt    STARTTLS required (encrypt), no AUTH
#   submit     STARTTLS required, then SASL AUTH (PLAIN, LOGIN) required
#   smtps      TLS from the first byte (smtpd_tls_wrappermode), AUTH required
#   rcptlimit  as plain, with smtpd_recipient_limit = 2 (the third RCPT: 452)
# All listeners: smtpd_forbid_bare_newline = yes (no exclusions),
# smtpd_forbid_unauth_pipelining = yes.  Mailboxes: any local part at
# example.test except those starting with "unknown" (550 at RCPT), each
# recipient's copy delivered on its own to DIR/mail/inbox/ (Maildir, with a
# Delivered-To field naming the recipient).  Mail to other domains is
# refused by the error transport, never sent anywhere.  SASL user
# alice@example.test, password in DIR/authpass (cyrus sasldb).
set -eu
[ $# -eq 2 ] && [ "$1" = setup ] || { echo "usage: $0 setup DIR" >&2; exit 2; }
B=$2
here=$(cd "$(dirname "$0")" && pwd)
E=$B/etc; Q=$B/queue; D=$B/data; M=$B/mail; S=$E/sasl

chmod 0755 "$B"
mkdir -p "$E" "$Q" "$D" "$M" "$S" "$B/sasl"
chown postfix "$D"
[ -f "$B/cert.pem" ] || sh "$here/make-cert.sh" "$B"
chown root:postfix "$B/key.pem"
chmod 0640 "$B/key.pem"
cp /etc/postfix/dynamicmaps.cf "$E/" 2>/dev/null || true
chown 5000:5000 "$M"

cat > "$E/vmailbox.regexp" <<'MAP'
if !/^unknown/
/@example\.test$/	inbox/
endif
MAP

/usr/bin/python3 "$here/free-ports.py" plain encrypt submit smtps rcptlimit > "$B/ports"
port() { awk -v n="$1" '$1 == n { print $2 }' "$B/ports"; }

cat > "$E/main.cf" <<MAIN
compatibility_level = 3.6
meta_directory = /etc/postfix
config_directory = $E
queue_directory = $Q
data_directory = $D
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.test
mydomain = postfix.test
myorigin = postfix.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
relayhost =
default_transport = error:no mail leaves this test instance
notify_classes =
maillog_file = $B/maillog
maillog_file_prefixes = $B
smtputf8_enable = yes
message_size_limit = 10240000
smtpd_forbid_bare_newline = yes
smtpd_forbid_bare_newline_exclusions =
smtpd_forbid_unauth_pipelining = yes
virtual_mailbox_domains = example.test
virtual_mailbox_base = $M
virtual_mailbox_maps = regexp:$E/vmailbox.regexp
virtual_uid_maps = static:5000
virtual_gid_maps = static:5000
virtual_minimum_uid = 100
virtual_destination_concurrency_limit = 20
virtual_destination_recipient_limit = 1
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_tls_cert_file = $B/cert.pem
smtpd_tls_key_file = $B/key.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $S
smtpd_sasl_auth_enable = no
smtpd_sasl_security_options = noanonymous
smtpd_tls_auth_only = yes
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
default_process_limit = 100
smtpd_soft_error_limit = 10000
smtpd_hard_error_limit = 10000
smtpd_junk_command_limit = 100000
delay_warning_time = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
MAIN

cat > "$E/master.cf" <<MASTER
127.0.0.1:$(port plain) inet n - n - - smtpd
  -o syslog_name=postfix-plain
127.0.0.1:$(port encrypt) inet n - n - - smtpd
  -o syslog_name=postfix-encrypt
  -o smtpd_tls_security_level=encrypt
127.0.0.1:$(port submit) inet n - n - - smtpd
  -o syslog_name=postfix-submit
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
127.0.0.1:$(port smtps) inet n - n - - smtpd
  -o syslog_name=postfix-smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
127.0.0.1:$(port rcptlimit) inet n - n - - smtpd
  -o syslog_name=postfix-rcptlimit
  -o smtpd_recipient_limit=2
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
MASTER

# SASL: cyrus sasldb (Debian's smtpd reads cyrus_sasl_config_path/smtpd.conf).
cat > "$S/smtpd.conf" <<SASL
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN LOGIN
sasldb_path: $B/sasl/sasldb2
SASL
printf '%s\n' "s3cret-pw" > "$B/authpass"
chmod 0600 "$B/authpass"
# saslpasswd2 -p reads the password from standard input, not the command line
tr -d '\n' < "$B/authpass" | saslpasswd2 -p -c -f "$B/sasl/sasldb2" -u example.test alice
chown postfix:postfix "$B/sasl/sasldb2"
chmod 0640 "$B/sasl/sasldb2"

postfix -c "$E" check
