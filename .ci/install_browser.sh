#!/usr/bin/env bash
# Installs Debian's Chromium and its driver for the browser end-to-end test (tests/e2e), unless
# /usr/bin/chromium is already there. Playwright drives this system browser: downloading
# Playwright's own browser build is not possible here.
set -euo pipefail
# strace records the app's connections in the "no outbound request" test.
if ! command -v strace >/dev/null; then
  bash "$(dirname "$0")/apt_install.sh" strace
fi
if [ -x /usr/bin/chromium ]; then
  echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
  exit 0
fi
bash "$(dirname "$0")/apt_install.sh" chromium chromium-driver fonts-noto-color-emoji
/usr/bin/chromium --version || true
