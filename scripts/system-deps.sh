#!/usr/bin/env bash
# Debian packages the test suite uses: Chromium (browser tests) and PostgreSQL (multi-worker
# search tests). Installs them when missing and we are root; otherwise says what is missing.
set -uo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${need[*]} (apt-get)"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "missing system packages: ${need[*]} (tests that need them will be skipped)" >&2
fi
exit 0
