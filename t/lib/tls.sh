# shellcheck shell=bash
# t/lib/tls.sh - the self-signed certificate nginx (and the stand-ins) serve.
#
# Sourced by t/stack.sh; uses its DIR, log and die.

# make_cert CERT KEY: self-signed P-256 certificate for localhost and 127.0.0.1.
make_cert() {
    local cert=$1 key=$2
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -days 3650 -subj /CN=localhost \
        -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
        -keyout "$key" -out "$cert" >/dev/null 2>&1) || die "openssl could not create a certificate"
    chmod 644 "$cert"
}

ensure_cert() {
    mkdir -p "$DIR/tls"
    if [[ ! -s $DIR/tls/cert.pem || ! -s $DIR/tls/key.pem ]]; then
        make_cert "$DIR/tls/cert.pem" "$DIR/tls/key.pem"
        log "created self-signed certificate $DIR/tls/cert.pem"
    fi
}
