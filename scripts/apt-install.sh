#!/usr/bin/env bash
# Install Debian packages quietly, one apt run at a time: the scripts that need system
# packages (server.sh, slurm-local.sh, chromium.sh) may run at once under parallel tests, and
# two concurrent apt-get runs fail on dpkg's lock. flock queues them; the lists are refreshed
# only when an install fails on stale ones. Usage: scripts/apt-install.sh PACKAGE...
set -euo pipefail
[[ $# -gt 0 ]] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }
export DEBIAN_FRONTEND=noninteractive  # never wait on a debconf question
apt=(apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends)
exec 9>/var/lock/xnorlab-apt.lock
flock -w 1200 9 || { echo "apt-install.sh: waited 20 min for another apt run" >&2; exit 1; }
"${apt[@]}" install "$@" >/dev/null 2>&1 || {
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  "${apt[@]}" install "$@" >/dev/null
}
