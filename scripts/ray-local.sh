#!/usr/bin/env bash
# A single-node Ray cluster on 127.0.0.1, for trying and testing hydra/launcher=ray.
#
#   scripts/ray-local.sh up       # install Ray + hydra-ray-launcher where missing (pinned in
#                                 # requirements-ray.txt), start a head node; prints the exports
#   scripts/ray-local.sh down     # stop every process of that cluster (its session), jobs too
#   scripts/ray-local.sh status
#
# Settings (environment): RAY_DIR (state folder, default <repo>/.ray, git-ignored), RAY_CPUS
# (CPUs the node offers; default: this machine's; more runs jobs side by side on fewer cores),
# PYTHON (the environment to install into and run Ray from; default <repo>/.venv/bin/python).
#
# Exit status 3: Ray is missing and pip could not install it (no route to PyPI, say).
#
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes Ray take 127.0.0.1 as the node address (otherwise
# it swaps 127.0.0.1 for the machine's outward address), and Ray's servers then bind loopback
# only. The daemons run in a session of their own; `down` signals that session's processes by
# id. It does not use `ray stop`, which signals every Ray process on the machine, by name.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAY_DIR="$(mkdir -p "${RAY_DIR:-$ROOT/.ray}" && cd "${RAY_DIR:-$ROOT/.ray}" && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
RAY="$(dirname "$PYTHON")/ray"
SID_FILE="$RAY_DIR/session.pid"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0

log() { echo "ray-local.sh: $*" >&2; }
die() { log "error: $*"; exit "${2:-1}"; }

ensure_packages() {
  "$PYTHON" -c 'import ray, hydra_plugins.hydra_ray_launcher.ray_launcher' 2>/dev/null && return 0
  log "installing Ray and hydra-ray-launcher (requirements-ray.txt)"
  # one pip at a time in this venv: the S3 test may install requirements-s3.txt at once
  flock -w 600 "$("$PYTHON" -c 'import sys; print(sys.prefix)')/.pip-install.lock" \
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps \
    -r "$ROOT/requirements-ray.txt" >"$RAY_DIR/pip.log" 2>&1 \
    || die "pip could not install requirements-ray.txt: $(grep -m1 ERROR "$RAY_DIR/pip.log")" 3
}

# N distinct free ports: the sockets stay bound until all are picked, so none repeats.
free_ports() {
  "$PYTHON" -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))' "$1"
}

# The session's live processes (zombies excluded: this machine's init may reap them late).
session_pids() {
  [[ -f "$SID_FILE" ]] || return 0
  ps -e -o pid=,sid=,stat= | awk -v sid="$(cat "$SID_FILE")" '$2 == sid && $3 !~ /^Z/ {print $1}'
}

up() {
  [[ -z "$(session_pids)" ]] && [[ -f "$RAY_DIR/address" ]] && rm -f "$RAY_DIR/address"
  if [[ ! -f "$RAY_DIR/address" ]]; then
    ensure_packages
    # Ray's Unix sockets live under the temp dir; their paths must stay under 107 bytes.
    local tmp="$RAY_DIR/t"
    (( ${#tmp} <= 48 )) || die "RAY_DIR is too long for Ray's socket paths: $RAY_DIR (set a shorter RAY_DIR)"
    local port dash client node object agent agent_grpc env_agent metrics
    read -r port dash client node object agent agent_grpc env_agent metrics <<<"$(free_ports 9)"
    # Ray workers start in the head's working directory: from the project root, a job's
    # relative paths (data/raw, models/, mlflow.db) mean what they mean in a local run.
    cd "$ROOT"
    setsid bash -c 'echo $$ > "$0"; exec "$@"' "$SID_FILE" \
      "$RAY" start --head --node-ip-address 127.0.0.1 --port "$port" \
      --num-cpus "${RAY_CPUS:-$(nproc)}" --temp-dir "$tmp" --disable-usage-stats \
      --dashboard-host 127.0.0.1 --dashboard-port "$dash" --ray-client-server-port "$client" \
      --node-manager-port "$node" --object-manager-port "$object" \
      --dashboard-agent-listen-port "$agent" --dashboard-agent-grpc-port "$agent_grpc" \
      --runtime-env-agent-port "$env_agent" --metrics-export-port "$metrics" </dev/null >"$RAY_DIR/start.log" 2>&1 \
      || { down; die "ray start failed; see $RAY_DIR/start.log"; }
    echo "127.0.0.1:$port" > "$RAY_DIR/address"
  fi
  log "cluster up at $(cat "$RAY_DIR/address"), state in $RAY_DIR"
  echo "export RAY_ADDRESS=$(cat "$RAY_DIR/address") RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"
}

down() {
  local pids
  # raylet first (it would start new workers), then the rest; gcs_server ignores SIGTERM for
  # a while, hence SIGKILL after 5 s, as `ray stop` does after its grace period.
  pids="$(session_pids)"
  [[ -n "$pids" ]] && kill -TERM $(ps -o pid=,comm= -p ${pids//$'\n'/,} | awk '$2 == "raylet" {print $1}') 2>/dev/null || true
  sleep 0.5
  pids="$(session_pids)"
  [[ -n "$pids" ]] && kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 50); do [[ -z "$(session_pids)" ]] && break; sleep 0.1; done
  pids="$(session_pids)"
  [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null || true
  for _ in $(seq 50); do [[ -z "$(session_pids)" ]] && break; sleep 0.1; done
  [[ -z "$(session_pids)" ]] || die "processes of the cluster outlived SIGKILL: $(session_pids)"
  rm -f "$RAY_DIR/address" "$SID_FILE"
  log "cluster down"
}

status() {
  if [[ -n "$(session_pids)" && -f "$RAY_DIR/address" ]]; then
    echo "running at $(cat "$RAY_DIR/address") ($(session_pids | wc -l) processes)"
    "$RAY" status --address "$(cat "$RAY_DIR/address")" || true
  else
    echo "stopped"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up|down|status" ;;
esac
