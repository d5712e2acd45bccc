#!/usr/bin/env bash
# Build or push the two cnnzoo images with docker or podman; called by `make images|push`.
#
#   images/build.sh build|push
#
# Environment (the Makefile passes all of them):
#   IMAGE_REGISTRY    e.g. europe-west4-docker.pkg.dev/my-project/cnnzoo (required)
#   IMAGE_TAG         never "latest" (required)
#   VERSION           package version, for the OCI labels (default: IMAGE_TAG)
#   REVISION          git commit, for the OCI labels (default: git rev-parse HEAD)
#   SOURCE_URL        repository URL, for the OCI labels
#   IMAGE_PLATFORM    default linux/amd64 (GKE's GPU machine types are x86-64)
#   CONTAINER_ENGINE  docker or podman; default: the first of them whose `info` answers
# Every command is printed before it runs.
set -euo pipefail

action=${1:-}
case "$action" in
  build | push) ;;
  *) echo "usage: $0 build|push" >&2; exit 2 ;;
esac

: "${IMAGE_REGISTRY:?error: IMAGE_REGISTRY is not set (e.g. make images IMAGE_REGISTRY=europe-west4-docker.pkg.dev/PROJECT/cnnzoo)}"
: "${IMAGE_TAG:?error: IMAGE_TAG is not set}"
if [[ "$IMAGE_TAG" == "latest" ]]; then
  echo "error: IMAGE_TAG=latest is refused: tag images with a version so runs are reproducible" >&2
  exit 1
fi
VERSION=${VERSION:-$IMAGE_TAG}
REVISION=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
SOURCE_URL=${SOURCE_URL:-https://github.com/example/cnnzoo}
IMAGE_PLATFORM=${IMAGE_PLATFORM:-linux/amd64}

engine=${CONTAINER_ENGINE:-}
if [[ -z "$engine" ]]; then
  for candidate in docker podman; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" info >/dev/null 2>&1; then
      engine=$candidate
      break
    fi
  done
fi
if [[ -z "$engine" ]]; then
  echo "error: no working container engine: neither 'docker info' nor 'podman info' succeeds" \
    "(install Docker or Podman and start its daemon, or set CONTAINER_ENGINE)" >&2
  exit 1
fi

root=$(cd "$(dirname "$0")/.." && pwd)
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  "$@"
}

for flavor in cpu gpu; do
  name=cnnzoo
  [[ "$flavor" == gpu ]] && name=cnnzoo-gpu
  ref="$IMAGE_REGISTRY/$name:$IMAGE_TAG"
  if [[ "$action" == build ]]; then
    run "$engine" build --file "$root/images/Dockerfile" --platform "$IMAGE_PLATFORM" \
      --build-arg "FLAVOR=$flavor" --build-arg "VERSION=$VERSION" \
      --build-arg "REVISION=$REVISION" --build-arg "SOURCE_URL=$SOURCE_URL" \
      --tag "$ref" "$root"
  else
    run "$engine" push "$ref"
  fi
done
