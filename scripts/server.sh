#!/usr/bin/env bash
# A team's MLflow tracking server on this machine: PostgreSQL (backend store) + `mlflow server`
# (proxied artifacts), both on 127.0.0.1 only, all state under one folder.
#
#   scripts/server.sh up       # install PostgreSQL where missing, initdb on first use, start both
#   scripts/server.sh down     # stop both (mlflow's whole process group, then PostgreSQL)
#   scripts/server.sh status
#
# Settings (environment):
#   SERVER_DIR     state folder (default <repo>/.server): pg/data, artifacts/, logs, pids
#   MLFLOW_PORT    mlflow server port on 127.0.0.1 (default 5000)
#   PG_PORT        PostgreSQL port on 127.0.0.1 (default: a free port chosen at each start)
#   MLFLOW_APP     empty, or `basic-auth` for MLflow's built-in basic authentication; the admin
#                  password is then $MLFLOW_AUTH_ADMIN_PASSWORD or generated in auth.password
#   HEALTH_TIMEOUT seconds to wait for /health (default 120)
#
# PostgreSQL refuses to run as root, so as root initdb/pg_ctl run as the `postgres` system user
# and the data folder is owned by it. A system cluster (/var/lib/postgresql) is never touched.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVER_DIR="$(mkdir -p "${SERVER_DIR:-$ROOT/.server}" && cd "${SERVER_DIR:-$ROOT/.server}" && pwd)"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
MLFLOW_APP="${MLFLOW_APP:-}"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-120}"
VENV_BIN="$ROOT/.venv/bin"
PG_DIR="$SERVER_DIR/pg"
PG_DATA="$PG_DIR/data"
ARTIFACTS="$SERVER_DIR/artifacts"
HOST=127.0.0.1

log() { echo "server.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
fail() { log "error: $*"; }  # then `return 1`: errexit is off inside `f || g`

pg_bindir() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$dir" && -x "$dir/initdb" ]] && echo "$dir"
}

ensure_postgres() {
  # Debian's postgresql package; installing it is quick when it is already there (no-op).
  if [[ -z "$(pg_bindir)" ]]; then
    [[ $EUID -eq 0 ]] || die "PostgreSQL is not installed; run: sudo apt-get install -y postgresql"
    log "installing Debian's postgresql package"
    "$ROOT/scripts/apt-install.sh" postgresql
  fi
  PG_BIN="$(pg_bindir)" || die "no initdb under /usr/lib/postgresql/*/bin after installing"
}

# Run a PostgreSQL program as the data folder's owner (never root).
as_pg() {
  if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(18))'; }

pg_init() {
  [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
  log "creating a PostgreSQL cluster in $PG_DATA (first use)"
  mkdir -p "$PG_DIR"
  [[ -f "$SERVER_DIR/pg.password" ]] || (umask 077 && secret > "$SERVER_DIR/pg.password")
  if [[ $EUID -eq 0 ]]; then
    chown postgres:postgres "$PG_DIR"
    runuser -u postgres -- test -x "$PG_DIR" \
      || die "user postgres cannot reach $PG_DIR (a parent folder is private); set SERVER_DIR"
  fi
  chmod 700 "$PG_DIR"
  # initdb reads the password from a file the cluster's owner can read; it is removed after.
  local pwfile="$PG_DIR/.pwfile"
  (umask 077 && cp "$SERVER_DIR/pg.password" "$pwfile")
  [[ $EUID -eq 0 ]] && chown postgres:postgres "$pwfile"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U mlflow --pwfile="$pwfile" --auth-local=scram-sha-256 \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C >"$SERVER_DIR/initdb.log" 2>&1 \
    || { rm -f "$pwfile"; die "initdb failed; see $SERVER_DIR/initdb.log"; }
  rm -f "$pwfile"
}

pg_running() { [[ -f "$PG_DATA/postmaster.pid" ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

pg_start() {
  if pg_running; then
    log "PostgreSQL already running on port $(cat "$SERVER_DIR/pg.port")"
    return 0
  fi
  local port="${PG_PORT:-$(free_port)}"
  # TCP on loopback only, no Unix socket: nothing else on the machine can reach it by accident.
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/postgres.log" -w -t 60 start \
    -o "-c listen_addresses=$HOST -p $port -c unix_socket_directories='' -c max_connections=200" \
    >/dev/null || die "PostgreSQL did not start; see $PG_DIR/postgres.log"
  echo "$port" > "$SERVER_DIR/pg.port"
  local pw; pw="$(cat "$SERVER_DIR/pg.password")"
  if ! PGPASSWORD="$pw" "$PG_BIN/psql" -h "$HOST" -p "$port" -U mlflow -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='mlflow'" | grep -q 1; then
    PGPASSWORD="$pw" "$PG_BIN/createdb" -h "$HOST" -p "$port" -U mlflow mlflow
  fi
  log "PostgreSQL on $HOST:$port (data $PG_DATA)"
}

pg_stop() {
  [[ -n "${PG_BIN:-}" && -f "$PG_DATA/postmaster.pid" ]] || return 0
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  log "PostgreSQL stopped"
}

mlflow_pgid() { [[ -f "$SERVER_DIR/mlflow.pgid" ]] && cat "$SERVER_DIR/mlflow.pgid"; }

group_alive() { [[ -n "${1:-}" ]] && kill -0 -- "-$1" 2>/dev/null; }

health() { curl -fsS -m 2 "http://$HOST:$MLFLOW_PORT/health" >/dev/null 2>&1; }

auth_config() {
  # basic-auth keeps its users in its own SQLite file; the admin password comes from the
  # environment or a generated file (MLflow ships no default password).
  [[ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ]] || {
    [[ -f "$SERVER_DIR/auth.password" ]] || (umask 077 && secret > "$SERVER_DIR/auth.password")
    MLFLOW_AUTH_ADMIN_PASSWORD="$(cat "$SERVER_DIR/auth.password")"
  }
  export MLFLOW_AUTH_ADMIN_PASSWORD
  export MLFLOW_AUTH_ADMIN_USERNAME="${MLFLOW_AUTH_ADMIN_USERNAME:-admin}"
  cat > "$SERVER_DIR/basic_auth.ini" <<EOF
[mlflow]
default_permission = READ
database_uri = sqlite:///$SERVER_DIR/basic_auth.db
admin_username = $MLFLOW_AUTH_ADMIN_USERNAME
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
  export MLFLOW_AUTH_CONFIG_PATH="$SERVER_DIR/basic_auth.ini"
  # basic-auth's CSRF protection needs a static key; kept with the server's state.
  [[ -f "$SERVER_DIR/flask.secret" ]] || (umask 077 && secret > "$SERVER_DIR/flask.secret")
  export MLFLOW_FLASK_SERVER_SECRET_KEY="${MLFLOW_FLASK_SERVER_SECRET_KEY:-$(cat "$SERVER_DIR/flask.secret")}"
}

mlflow_start() {
  [[ -x "$VENV_BIN/mlflow" ]] || { fail "$VENV_BIN/mlflow missing; run make setup"; return 1; }
  if group_alive "$(mlflow_pgid)"; then
    health && { log "mlflow server already running"; return 0; }
    { fail "an mlflow server (process group $(mlflow_pgid)) runs but does not answer; run: $0 down"; return 1; }
  fi
  if health; then { fail "port $MLFLOW_PORT already answers /health (another server?); set MLFLOW_PORT"; return 1; }; fi
  mkdir -p "$ARTIFACTS"
  local pw port app=()
  pw="$(cat "$SERVER_DIR/pg.password")"; port="$(cat "$SERVER_DIR/pg.port")"
  if [[ "$MLFLOW_APP" == basic-auth ]]; then auth_config; app=(--app-name basic-auth); fi
  [[ -z "$MLFLOW_APP" || "$MLFLOW_APP" == basic-auth ]] || { fail "MLFLOW_APP=$MLFLOW_APP: only basic-auth"; return 1; }
  # Own process group (setsid), so `down` can stop the server with its workers and
  # huey_consumer children; job execution off and one worker make it answer in ~10 s.
  # The store URI (with its password) goes by environment, not on the visible command line.
  # SQLAlchemy's default pool (5 + 10 overflow) starves at 32 concurrent clients: requests
  # wait 30 s for a connection, then fail (measured by tests/team's load test).
  MLFLOW_SQLALCHEMYSTORE_POOL_SIZE="${MLFLOW_SQLALCHEMYSTORE_POOL_SIZE:-40}" \
  MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW="${MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW:-40}" \
  MLFLOW_BACKEND_STORE_URI="postgresql+psycopg://mlflow:$pw@$HOST:$port/mlflow" \
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$VENV_BIN/mlflow" server \
    --host "$HOST" --port "$MLFLOW_PORT" --workers 1 "${app[@]}" --serve-artifacts --artifacts-destination "$ARTIFACTS" \
    >"$SERVER_DIR/mlflow.log" 2>&1 </dev/null &
  local pid=$!
  sleep 0.2
  ps -o pgid= -p "$pid" | tr -d ' ' > "$SERVER_DIR/mlflow.pgid"
  local deadline=$((SECONDS + HEALTH_TIMEOUT))
  until health; do
    kill -0 "$pid" 2>/dev/null || { fail "mlflow server exited; see $SERVER_DIR/mlflow.log"; return 1; }
    ((SECONDS < deadline)) || { fail "mlflow server gave no /health in ${HEALTH_TIMEOUT}s; see $SERVER_DIR/mlflow.log"; return 1; }
    sleep 0.5
  done
}

mlflow_stop() {
  local pgid; pgid="$(mlflow_pgid || true)"
  if group_alive "$pgid"; then
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for _ in $(seq 1 40); do group_alive "$pgid" || break; sleep 0.25; done
    group_alive "$pgid" && kill -KILL -- "-$pgid" 2>/dev/null || true
    log "mlflow server stopped (process group $pgid)"
  fi
  rm -f "$SERVER_DIR/mlflow.pgid"
}

case "${1:-}" in
  up)
    ensure_postgres
    pg_init
    pg_start
    mlflow_start || { mlflow_stop; pg_stop; exit 1; }
    echo "MLFLOW_TRACKING_URI=http://$HOST:$MLFLOW_PORT"
    ;;
  down)
    PG_BIN="$(pg_bindir || true)"
    mlflow_stop
    pg_stop
    ;;
  status)
    PG_BIN="$(pg_bindir || true)"
    if [[ -n "$PG_BIN" ]] && pg_running; then echo "postgresql: running on $HOST:$(cat "$SERVER_DIR/pg.port")"
    else echo "postgresql: stopped"; fi
    if group_alive "$(mlflow_pgid || true)" && health; then echo "mlflow: http://$HOST:$MLFLOW_PORT"
    else echo "mlflow: stopped"; fi
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
