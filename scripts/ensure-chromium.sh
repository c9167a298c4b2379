#!/usr/bin/env bash
# The inspector's browser test drives a headless Chromium. Install Debian's when it is missing
# and we can (root, apt-get); otherwise stop and name the package.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null 2>&1; then
    exit 0
  fi
done
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium not found: installing Debian's chromium (for the inspector's browser test)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
  }
  command -v chromium >/dev/null 2>&1 && exit 0
fi
echo "error: the inspector's browser test needs Chromium: install it (apt-get install chromium)" >&2
exit 1
