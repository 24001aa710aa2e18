#!/usr/bin/env bash
# apt-get install the given Debian packages (with sudo when not root), non-interactively.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "$@"
