#!/usr/bin/env bash
# Installs Debian's PostgreSQL server binaries for the store tests on PostgreSQL
# (tests/unit/test_store_postgres.py starts its own throwaway server from them), unless an
# initdb is already there. No service is started: the test runs its own server in a temp folder.
set -euo pipefail
if command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "postgresql already installed: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)"
  exit 0
fi
bash "$(dirname "$0")/apt_install.sh" postgresql
