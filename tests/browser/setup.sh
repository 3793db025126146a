#!/usr/bin/env bash
# Headless Chromium + ChromeDriver from Debian for the browser tests (nothing downloads a browser). Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
echo "[browser-setup] installing Debian's chromium and chromium-driver" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
chromium --version >&2
