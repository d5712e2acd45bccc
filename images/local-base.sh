#!/usr/bin/env bash
# Build a stand-in for the Dockerfile's python:3.11-slim base from Debian's own packages, for
# machines that reach Debian's mirrors and PyPI but no container registry.
#
#   images/local-base.sh [TAG]        (root; needs debootstrap and docker or podman)
#
# debootstrap's minbase variant of bookworm + python3 (3.11, as in the CI venv), python3-venv,
# python-is-python3 and ca-certificates, imported as TAG (default localhost/cnnzoo-base:bookworm).
# Build on it with:   make images BASE_IMAGE=localhost/cnnzoo-base:bookworm
#
# Environment:
#   CONTAINER_ENGINE   docker or podman (default: the first whose `info` answers)
#   DEBIAN_MIRROR      default http://deb.debian.org/debian
#   BASE_CACHE         a folder; the root filesystem tarball is kept there, keyed by this
#                      script's content, and reused (default: no cache)
set -euo pipefail

tag=${1:-localhost/cnnzoo-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=python3,python3-venv,python-is-python3,ca-certificates

if [[ "$(id -u)" != 0 ]]; then
  echo "error: $0 must run as root (debootstrap creates device nodes and chowns files)" >&2
  exit 1
fi
command -v debootstrap >/dev/null 2>&1 || {
  echo "error: debootstrap is missing (Debian/Ubuntu: apt-get install debootstrap)" >&2
  exit 1
}
# shellcheck source=images/engine.sh
source "$(dirname "$0")/engine.sh"
engine=$(container_engine) || exit 1

key=$(sha256sum "$0" | cut -c1-16)
tarball=""
if [[ -n "${BASE_CACHE:-}" ]]; then
  mkdir -p "$BASE_CACHE"
  tarball="$BASE_CACHE/rootfs-$key.tar"
fi
if [[ -z "$tarball" || ! -s "$tarball" ]]; then
  work=$(mktemp -d "${TMPDIR:-/var/tmp}/cnnzoo-base.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "+ debootstrap --variant=minbase --include=$packages bookworm $work/rootfs $mirror"
  debootstrap --variant=minbase --include="$packages" bookworm "$work/rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2
    echo "error: debootstrap failed (full log above)" >&2
    exit 1
  }
  # What a slim base leaves out: package caches and lists, docs, man pages.
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/* \
    "$work"/rootfs/usr/share/doc/* "$work"/rootfs/usr/share/man/* "$work"/rootfs/tmp/*
  out=${tarball:-$work/rootfs.tar}
  tar --numeric-owner -C "$work/rootfs" -cf "$out.part" .
  mv "$out.part" "$out"
  tarball=$out
fi
echo "+ $engine import $tarball $tag"
"$engine" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' "$tarball" "$tag" >/dev/null
echo "local base $tag: Debian bookworm, $("$engine" run --rm --network none "$tag" python3 --version)"
