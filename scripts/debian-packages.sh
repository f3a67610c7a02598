#!/bin/sh
# The Debian packages the README's commands use, installed if missing: make, python3-venv and curl; with --stack
# also Prometheus, Alertmanager and the host, PostgreSQL and Redis exporters (`make stack`); with --browser
# Chromium, its driver and an emoji font (the web view's browser tests and `make screenshots`). As root it runs
# apt-get itself; as a user, through sudo.
set -eu
packages="make python3-venv curl"
for option in "$@"; do
  case "$option" in
    --stack)
      packages="$packages prometheus prometheus-alertmanager prometheus-node-exporter prometheus-postgres-exporter"
      packages="$packages prometheus-redis-exporter" ;;
    --browser) packages="$packages chromium chromium-driver fonts-noto-color-emoji" ;;
    *) echo "usage: $0 [--stack] [--browser]" >&2; exit 2 ;;
  esac
done
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -n "$missing" ] || exit 0
if [ "$(id -u)" -eq 0 ]; then
  as_root=""
elif command -v sudo >/dev/null 2>&1; then
  as_root="sudo"
else
  echo "installing$missing needs root: run this as root, or install sudo" >&2
  exit 1
fi
echo "installing$missing"
$as_root apt-get update -qq
# shellcheck disable=SC2086 # one word per package
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
