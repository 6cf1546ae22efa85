#!/usr/bin/env bash
# Print the path of a headless-capable Chromium, installing Debian's `chromium` package where
# it is missing (a no-op, in milliseconds, when it is there). Called by the UI test's fixture
# (xnorlab.team.browser.chromium), so CI installs it only when the `ui` tests run.
#
# --no-install-recommends: the recommends (printer set-up, upower, notification daemon, mesa)
# are for a desktop; headless rendering needs none of them and they double the install time.
# Fonts come with fontconfig's own dependency (DejaVu).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  [[ $EUID -eq 0 ]] || { echo "chromium is missing: sudo apt-get install -y chromium" >&2; exit 1; }
  start=$SECONDS
  echo "chromium.sh: installing Debian's chromium package" >&2
  "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" chromium
  echo "chromium.sh: installed in $((SECONDS - start)) s" >&2
fi
command -v chromium
