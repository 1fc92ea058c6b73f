#!/usr/bin/env bash
# Install promtool and the Prometheus server from Debian's `prometheus` package.
#
# Idempotent: does nothing when promtool is already on PATH. Runs as root,
# non-interactively; apt-get update runs only when the package is not yet known
# to apt. Used by .ci/run so that the deploy tests check the real thing
# (promtool check config/rules/metrics, promtool test rules, a live server).
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    echo "install-prometheus: promtool already present ($(command -v promtool))"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-prometheus | not running as root (uid $(id -u)). Note: run as root or install the 'prometheus' package yourself" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show prometheus >/dev/null 2>&1; then
    apt-get update -q
fi
apt-get install -y -q --no-install-recommends prometheus

# The package enables a system service where an init system runs; the tests
# start their own server on a free loopback port, so that service is not needed.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

command -v promtool >/dev/null 2>&1 || {
    echo "install-prometheus | promtool still not on PATH after installing 'prometheus'. Note: expected /usr/bin/promtool" >&2
    exit 1
}
echo "install-prometheus: $(promtool --version 2>&1 | head -n 1)"
