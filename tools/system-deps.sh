#!/usr/bin/env bash
# System packages that `make test` needs beyond the Python venv, provisioned or named.
#
#   tools/system-deps.sh browser     headless Chromium for tests/test_report_browser.py
#   tools/system-deps.sh containers  podman (builds), Docker Engine (runs), debootstrap (the
#                                    local base) for the container tier, tests/test_images_run.py
#
# Each need is met in this order: already on PATH -> install Debian's package when running
# as root with apt-get -> print one line saying what to install (and exit 1), so a test
# that needs it fails with that line rather than skipping silently.
set -euo pipefail

APT_UPDATED=0

apt_install() {
  # Install Debian packages non-interactively; returns non-zero if not root or no apt-get.
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  if [ "$APT_UPDATED" = 0 ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need_browser() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    return 0
  fi
  echo "system-deps: installing Debian's chromium for the browser test (apt-get)"
  if apt_install chromium && command -v chromium >/dev/null 2>&1; then
    return 0
  fi
  echo "system-deps: headless Chromium is missing: install it (Debian/Ubuntu: 'sudo apt-get install chromium'), or put a 'chromium' binary on PATH" >&2
  return 1
}

need_containers() {
  # Packages only: the tier starts (and stops) a dockerd of its own with its own state
  # folder, and never touches a system engine's daemon or storage.
  local missing=()
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  [ "${#missing[@]}" = 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: installing Debian's ${missing[*]} for the container tier (apt-get)"
    if apt_install "${missing[@]}" && command -v podman >/dev/null 2>&1 \
      && command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1; then
      return 0
    fi
    echo "system-deps: the container tier did not run: installing ${missing[*]} with apt-get failed" >&2
    return 1
  fi
  echo "system-deps: the container tier did not run: ${missing[*]} missing and this is not root with apt-get to install them (install Debian's podman, docker.io, debootstrap, runc, then: make test-images)" >&2
  return 1
}

status=0
for need in "$@"; do
  case "$need" in
    browser) need_browser || status=1 ;;
    containers) need_containers || status=1 ;;
    *) echo "system-deps: unknown need '$need'" >&2; exit 2 ;;
  esac
done
exit "$status"
