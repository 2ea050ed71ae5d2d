#!/usr/bin/env bash
# Supply chain (`make supply-chain`, part of `make test`): licences, sources and bans, then the
# RustSec advisories for the main workspace and the fuzz workspace, with cargo-deny and
# cargo-audit. Advisories are always checked or the run fails — never a silent pass:
#   1. the live database (github.com/RustSec/advisory-db), when it can be fetched;
#   2. else a snapshot: $HIPAA_ADVISORY_DB (a folder holding a clone, or a git bundle), else
#      ../shared/advisory-db/advisory-db.bundle beside this clone (a git bundle, branch main).
# The database lives in our own cache ($HARDENING_CACHE/advisory-dbs), not in ~/.cargo, and the
# snapshot's commit and date are printed with the verdict: a snapshot ages.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[supply-chain] %s\n' "$*"; }

CACHE=${HARDENING_CACHE:-$HOME/.cache/hipaa-mesh}
DB_ROOT="$CACHE/advisory-dbs"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$DB_ROOT"

# cargo-deny, pointed at our database folder.
sed "s|^\[advisories\]|[advisories]\ndb-path = \"$DB_ROOT\"|" deny.toml >"$WORK/deny.toml"

cargo deny --config "$WORK/deny.toml" check --hide-inclusion-graph licenses bans sources

# The crate graphs, resolved once (online is fine: only the advisory database is unreachable
# here); the advisory checks then run offline against whichever database we settled on.
cargo metadata --format-version 1 --all-features >"$WORK/main.json"
(cd fuzz && cargo metadata --format-version 1 --all-features) >"$WORK/fuzz.json"
deny_advisories() {
  cargo deny --offline --metadata-path "$1" --config "$WORK/deny.toml" check advisories
}

# Where cargo-deny expects its clone of the default database (the folder name is a hash of the
# URL, chosen by cargo-deny): asked of cargo-deny itself, offline, against an empty folder.
sed "s|^\[advisories\]|[advisories]\ndb-path = \"$WORK/probe\"|" deny.toml >"$WORK/probe.toml"
probe=$(cargo deny --offline --metadata-path "$WORK/main.json" --config "$WORK/probe.toml" \
  check advisories 2>&1 || true)
name=$(grep -o 'advisory-db-[0-9a-f]\{8,\}' <<<"$probe" | head -n1)
[ -n "$name" ] || { say "cannot tell where cargo-deny keeps its database:"; echo "$probe"; exit 1; }
DB="$DB_ROOT/$name"

source_desc=""
rm -rf "$DB"  # never mistake an old snapshot clone for a fresh fetch
if timeout 120 cargo deny --config "$WORK/deny.toml" fetch db >"$WORK/fetch.log" 2>&1; then
  source_desc="live database"
else
  snapshot=${HIPAA_ADVISORY_DB:-}
  if [ -z "$snapshot" ] && [ -f ../shared/advisory-db/advisory-db.bundle ]; then
    snapshot=../shared/advisory-db/advisory-db.bundle
  fi
  if [ -z "$snapshot" ]; then
    say "ADVISORIES NOT CHECKED: the RustSec advisory database cannot be fetched from this machine"
    say "and no snapshot was given. Set HIPAA_ADVISORY_DB to a clone or a git bundle of"
    say "github.com/RustSec/advisory-db (branch main), or run where github.com is reachable."
    exit 1
  fi
  say "the live database cannot be fetched ($(grep -m1 -o 'Could not resolve host[^"]*\|unable to access[^"]*' "$WORK/fetch.log" || echo 'fetch failed')); using the snapshot $snapshot"
  rm -rf "$DB"
  if [ -d "$snapshot/.git" ] || [ -f "$snapshot/HEAD" ]; then
    git clone -q --no-local "$snapshot" "$DB"
  else
    git clone -q -b main "$snapshot" "$DB"
  fi
  source_desc="snapshot $(basename "$snapshot")"
fi
commit=$(git -C "$DB" log -1 --format='%h, %cs')
say "advisory database: $source_desc (commit $commit)"

deny_advisories "$WORK/main.json"
deny_advisories "$WORK/fuzz.json"

# cargo-audit reads the same clone: a second, independent reading of the lock files. The one
# exception is explained in deny.toml (rsa's Marvin attack needs a private key; none is loaded).
AUDIT_FLAGS=(--db "$DB" --no-fetch --stale --deny warnings --ignore RUSTSEC-2023-0071)
cargo audit "${AUDIT_FLAGS[@]}" --file Cargo.lock
cargo audit "${AUDIT_FLAGS[@]}" --file fuzz/Cargo.lock
say "advisories checked against the $source_desc (commit $commit): no unreviewed finding"
