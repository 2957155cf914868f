#!/usr/bin/env bash
# Best-effort system packages from Debian: the PostgreSQL server (control-plane tests), the real
# Fashion-MNIST files (training) and Chromium with a font (the console's browser tests). Needs root and
# apt; elsewhere it says what is missing and carries on, and the features that need them say so clearly.
set -u
wanted=(postgresql dataset-fashion-mnist chromium fonts-dejavu-core)
missing=()
for pkg in "${wanted[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: system packages not installed (need root and apt): ${missing[*]}" >&2
  exit 0
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || echo "note: apt-get could not install ${missing[*]}" >&2
exit 0
