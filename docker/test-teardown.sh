#!/usr/bin/env bash
# Stop the dockerd that docker/test-setup.sh started (by its pid), and only that one.
set -uo pipefail
STATE_DIR=${DOCKER_TEST_STATE:-/tmp/polyglot-docker}
[ -f "$STATE_DIR/started-by-us" ] || exit 0
pidfile=$(cat "$STATE_DIR/started-by-us")
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
fi
rm -f "$STATE_DIR/started-by-us"
