#!/usr/bin/env bash
# Makes a private CA and a TLS certificate for the coordinator, for the compose and systemd
# examples (Kubernetes uses cert-manager instead: deploy/k8s/overlays/example/certificate.yaml).
#
#   deploy/tls/make-certs.sh OUT_DIR HOSTNAME [HOSTNAME...]   # server certificate
#   deploy/tls/make-certs.sh OUT_DIR --client NAME             # a client certificate (mTLS)
#
# OUT_DIR gets ca.pem and ca.key (the CA: keep ca.key offline once you are done), cert.pem and
# key.pem (the coordinator's: POET_TLS_CERT, POET_TLS_KEY), and for --client NAME
# NAME.pem and NAME.key (a worker's or CLI's: POET_TLS_CLIENT_CERT, POET_TLS_CLIENT_KEY).
# Workers and clients trust ca.pem (POET_TLS_CA); a coordinator started with
# POET_TLS_CLIENT_CA=ca.pem also requires their certificates. Needs openssl. Idempotent: an
# existing CA is reused, so certificates made later still chain to it.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
out="$1"; shift
command -v openssl >/dev/null || { echo "make-certs: openssl not found (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$out"
umask 077
if [ ! -f "$out/ca.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=poet CA" -keyout "$out/ca.key" -out "$out/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
sign() { # stem subject extensions
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$out/$1.key" -out "$out/$1.csr" 2>/dev/null
    openssl x509 -req -in "$out/$1.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" -CAcreateserial \
        -days 825 -out "$out/$1.pem" -extfile <(printf '%s\n' "$3") 2>/dev/null
    rm -f "$out/$1.csr"
}
if [ "$1" = "--client" ]; then
    name="${2:?--client needs a NAME}"
    sign "$name" "$name" "extendedKeyUsage=clientAuth"$'\n'"subjectAltName=DNS:$name"
    echo "made $out/$name.pem and $out/$name.key (client certificate, signed by $out/ca.pem)"
else
    sans=""
    for h in "$@"; do
        if [[ "$h" =~ ^[0-9.]+$ || "$h" == *:* ]]; then sans+="IP:$h,"; else sans+="DNS:$h,"; fi
    done
    sign cert "$1" "extendedKeyUsage=serverAuth"$'\n'"subjectAltName=${sans%,}"
    mv "$out/cert.key" "$out/key.pem"
    echo "made $out/cert.pem and $out/key.pem for ${*} (signed by $out/ca.pem)"
fi
chmod 644 "$out"/ca.pem "$out"/cert.pem 2>/dev/null || true
chmod 644 "$out"/*.pem
chmod 600 "$out"/key.pem "$out"/*.key 2>/dev/null || true
