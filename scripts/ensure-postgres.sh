#!/usr/bin/env bash
# Make sure a PostgreSQL server answers at $HIPAA_TEST_POSTGRES_URL's host (default
# 127.0.0.1:5432) with trust auth for the local tests; start or initialise one if not.
set -euo pipefail
HOST=127.0.0.1
PORT=5432
ready() { pg_isready -q -h "$HOST" -p "$PORT" 2>/dev/null || (exec 3<>/dev/tcp/$HOST/$PORT) 2>/dev/null; }

if ready; then echo "[setup] PostgreSQL answers on $HOST:$PORT"; exit 0; fi

# A Debian cluster that is installed but stopped.
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  for v in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$v" main start 2>/dev/null || true
  done
  for _ in $(seq 1 50); do ready && { echo "[setup] started PostgreSQL"; exit 0; }; sleep 0.2; done
fi

# Otherwise a private cluster with trust auth, owned by a non-root user.
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$BIN" ] || { echo "[setup] PostgreSQL is not installed"; exit 1; }
DATA=${HIPAA_PG_DATA:-/tmp/hipaa-mesh-pg}
RUNAS=postgres
id "$RUNAS" >/dev/null 2>&1 || RUNAS=$(id -un)
as() { if [ "$(id -un)" = "$RUNAS" ]; then "$@"; else su "$RUNAS" -s /bin/sh -c "$(printf '%q ' "$@")"; fi; }
if [ ! -f "$DATA/PG_VERSION" ]; then
  mkdir -p "$DATA"; chown "$RUNAS" "$DATA"
  as "$BIN/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null
fi
as "$BIN/pg_ctl" -D "$DATA" -o "-h $HOST -p $PORT -k /tmp" -l "$DATA/server.log" -w start >/dev/null
ready && echo "[setup] started a private PostgreSQL in $DATA"
