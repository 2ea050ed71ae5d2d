#!/usr/bin/env bash
# Development certificates for the rendered Envoy configs (`policy render --target envoy`), made
# with openssl: a mesh CA and, signed by it, the files the configs name. For local runs, the
# demo and the tests only; in a cluster the mesh (Istio's CA, SPIRE) issues these.
#
#   scripts/dev-certs.sh OUT_DIR WORKLOAD_SPIFFE_ID [NAME=SPIFFE_ID | NAME=dns:HOST] ...
#
# Writes ca.pem, workload.pem (+ -key.pem; server and client: localhost, 127.0.0.1 and the
# workload's SPIFFE id), collector.pem (+ -key.pem; the collector's SPIFFE id, below), and one
# NAME.pem / NAME-key.pem per extra argument: a client with a SPIFFE id, or a server for a DNS
# name (a stand-in BAA vendor). rogue-ca.pem and rogue.pem are a second CA nobody trusts and a
# client it signed, for showing that only the mesh CA is accepted.
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,12p "$0"; exit 2; }
OUT=$1; WORKLOAD=$2; shift 2
COLLECTOR_ID=${HIPAA_COLLECTOR_SPIFFE_ID:-spiffe://cluster.local/ns/hipaa-system/sa/audit-collector}
DAYS=${DEV_CERT_DAYS:-7}
command -v openssl >/dev/null || { echo "openssl missing: run make setup" >&2; exit 1; }
mkdir -p "$OUT"
cd "$OUT"
serial=$(( $(date +%s) * 100 ))

ca() { # NAME
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1-key.pem" \
    -out "$1.pem" -days "$DAYS" -subj "/CN=hipaa-mesh dev $1" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

leaf() { # CA NAME EXTENSIONS
  serial=$((serial + 1))
  printf '%b\n' "$3" > "$2.ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$2-key.pem" \
    -out "$2.csr" -subj "/CN=$2" 2>/dev/null
  openssl x509 -req -in "$2.csr" -CA "$1.pem" -CAkey "$1-key.pem" -set_serial "$serial" \
    -days "$DAYS" -out "$2.pem" -extfile "$2.ext" 2>/dev/null
  rm -f "$2.csr" "$2.ext"
}

ca ca
ca rogue-ca
leaf ca workload "subjectAltName=DNS:localhost,IP:127.0.0.1,URI:$WORKLOAD\nextendedKeyUsage=serverAuth,clientAuth"
leaf ca collector "subjectAltName=DNS:localhost,IP:127.0.0.1,URI:$COLLECTOR_ID\nextendedKeyUsage=serverAuth,clientAuth"
leaf rogue-ca rogue "subjectAltName=URI:$WORKLOAD\nextendedKeyUsage=clientAuth"
for arg in "$@"; do
  name=${arg%%=*}; id=${arg#*=}
  case $id in
    dns:*) leaf ca "$name" "subjectAltName=DNS:${id#dns:}\nextendedKeyUsage=serverAuth" ;;
    *)     leaf ca "$name" "subjectAltName=URI:$id\nextendedKeyUsage=clientAuth" ;;
  esac
done
chmod 600 ./*-key.pem
echo "certificates in $PWD"
