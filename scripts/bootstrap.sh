#!/usr/bin/env bash
# Prepare this checkout on a fresh machine: system packages, virtual environment,
# Python dependencies, Kafka jars from Maven Central and Debian's redis-server.
# Safe to run again: each step is skipped when it is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "missing: $*. Install them with your package manager (Debian: sudo apt-get install $*) and run this again."
  fi
  say "Installing $* with apt-get"
  # policy-rc.d keeps package scripts from starting system-wide services (e.g. a Redis on 6379).
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  if [ "$created" = 1 ]; then rm -f "$policy"; fi
}

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v redis-server >/dev/null || missing+=(redis-server)
# The browser snippet (js-snippet/): Node.js to build and unit-test it, Chromium for its browser tests.
command -v node >/dev/null || missing+=(nodejs)
command -v chromium >/dev/null || missing+=(chromium)
# Prometheus and promtool: the tests check the alert rules and the Grafana queries with them.
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
command -v npm >/dev/null || apt_install npm
node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' \
  || die "Node.js 20 or newer is needed for js-snippet/ (found $(node --version)); install it (e.g. from NodeSource) and run this again"

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python 3.11 or newer is needed (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11"

if [ ! -x .venv/bin/python ]; then
  say "Creating the virtual environment in .venv"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  say "Installing Python dependencies"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# The snippet's npm packages, exactly as locked (skipped while node_modules matches the lockfile), and its build.
npm_stamp=js-snippet/node_modules/.installed-$(sha256sum js-snippet/package-lock.json | cut -c1-16)
if [ ! -e "$npm_stamp" ]; then
  say "Installing the snippet's npm packages (npm ci)"
  (cd js-snippet && npm ci --no-audit --no-fund --loglevel=error)
  touch "$npm_stamp"
fi
say "Building the snippet (js-snippet/dist)"
(cd js-snippet && node build.mjs)

say "Preparing the local stack (Kafka jars from Maven Central, redis-server)"
.venv/bin/tracker stack prepare
