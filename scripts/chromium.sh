#!/usr/bin/env bash
# Print the path of a headless-capable Chromium, installing Debian's `chromium` package where
# it is missing (a no-op, in milliseconds, when it is there).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  [[ $EUID -eq 0 ]] || { echo "chromium is missing: sudo apt-get install -y chromium" >&2; exit 1; }
  echo "chromium.sh: installing Debian's chromium package" >&2
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
fi
command -v chromium
