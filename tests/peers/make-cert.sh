#!/bin/sh
# make-cert.sh DIR - write a self-signed certificate for the test peers:
#   DIR/cert.pem  CN=localhost, SAN DNS:localhost and IP:127.0.0.1, 10 years
#   DIR/key.pem   its private key (ECDSA P-256, unencrypted, mode 0600)
# Uses openssl when present, else certtool (gnutls-bin).  The cert is its own
# CA, so a client can trust exactly this file (e.g. a CA-file option).
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
mkdir -p "$dir"
umask 077

if command -v openssl >/dev/null 2>&1; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -keyout "$dir/key.pem" -out "$dir/cert.pem" -days 3650 \
        -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,digitalSignature,keyCertSign" \
        -addext "extendedKeyUsage=serverAuth" 2>/dev/null
elif command -v certtool >/dev/null 2>&1; then
    tmpl="$dir/cert.tmpl"
    cat > "$tmpl" <<TMPL
cn = "localhost"
dns_name = "localhost"
ip_address = "127.0.0.1"
expiration_days = 3650
ca
signing_key
cert_signing_key
tls_www_server
TMPL
    certtool --generate-privkey --key-type ecdsa --curve secp256r1 \
        --outfile "$dir/key.pem" 2>/dev/null
    certtool --generate-self-signed --load-privkey "$dir/key.pem" \
        --template "$tmpl" --outfile "$dir/cert.pem" 2>/dev/null
    rm -f "$tmpl"
else
    echo "make-cert.sh: need openssl or certtool (gnutls-bin)" >&2
    exit 1
fi
chmod 0644 "$dir/cert.pem"
