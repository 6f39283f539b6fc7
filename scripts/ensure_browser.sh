#!/usr/bin/env bash
# Install Debian's chromium and chromium-driver when they are missing (used before the browser test).
# Idempotent: does nothing when /usr/bin/chromium and /usr/bin/chromedriver are already there.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "ensure_browser: not root and no sudo; cannot install chromium (the browser test will skip)" >&2
    exit 0
  fi
fi

export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -qq; then
  echo "ensure_browser: apt-get update failed; the browser test will skip" >&2
  exit 0
fi
if ! $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core fonts-noto-color-emoji >/dev/null; then
  echo "ensure_browser: apt-get install chromium chromium-driver failed; the browser test will skip" >&2
  exit 0
fi
echo "ensure_browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)"
