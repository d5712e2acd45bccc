#!/usr/bin/env bash
# Build or push the two cnnzoo images with docker or podman; called by `make images|push`.
#
#   images/build.sh build|push
#
# Environment (the Makefile passes all of them):
#   IMAGE_REGISTRY    e.g. europe-west4-docker.pkg.dev/my-project/cnnzoo (required)
#   IMAGE_TAG         never "latest" (required)
#   VERSION           package version, for the OCI labels (default: IMAGE_TAG)
#   REVISION          git commit, for the OCI labels and the second tag `push` gives every
#                     image, <IMAGE_TAG>-<first 12 hex digits> (default: git rev-parse HEAD)
#   SOURCE_URL        repository URL, for the OCI labels
#   IMAGE_PLATFORM    default linux/amd64 (GKE's GPU machine types are x86-64)
#   CONTAINER_ENGINE  docker or podman; default: the first of them whose `info` answers
#   FLAVORS           which flavours to build or push (default: "cpu gpu"; FLAVOR=gpu: one)
#   BASE_IMAGE        the base both stages start from (default: the Dockerfile's pinned
#                     python:*-slim); images/local-base.sh builds a stand-in without a registry
#   BUILD_NETWORK     the network RUN steps use (default: host, so pip reaches the index
#                     the way this machine does)
#   EXTRA_PACKAGES    packages to add to both images, e.g. a plugin of architectures
#                     (docs/your-own-configurations.md): space-separated requirement
#                     specifiers (mypkg==1.2), wheel files and folders of wheels. Staged in
#                     images/extra-packages/ (rewritten by every build), installed under the
#                     image's lock as constraints, so they cannot move a pinned version.
#
# Package-index settings never enter a layer. With podman, this machine's pip configuration
# (/etc/pip.conf, /etc/xdg/pip, ~/.config/pip, $PIP_CONFIG_FILE) and the files and local
# index folders it names are mounted read-only into every RUN step (`-v`); podman's default
# OCI format drops the Dockerfile's SHELL, so podman builds with --format docker. docker's
# build has no such mounts: pip inside it uses the public index.
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
short_rev=${REVISION:0:12}
pushed=()
if [[ "$action" == push && "$IMAGE_REGISTRY" == ghcr.io/example/* ]]; then
  echo "error: IMAGE_REGISTRY=$IMAGE_REGISTRY is the placeholder; name a registry your" \
    "cluster can pull from: make images push IMAGE_REGISTRY=REGION-docker.pkg.dev/PROJECT/cnnzoo" >&2
  exit 1
fi
SOURCE_URL=${SOURCE_URL:-https://github.com/example/cnnzoo}
IMAGE_PLATFORM=${IMAGE_PLATFORM:-linux/amd64}
FLAVORS=${FLAVORS:-${FLAVOR:-cpu gpu}}
BUILD_NETWORK=${BUILD_NETWORK:-host}

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=images/engine.sh
source "$root/images/engine.sh"
engine=$(container_engine) || exit 1

run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  "$@"
}

# podman: `-v PATH:PATH:ro` for the pip configuration and every local path it names.
pip_mounts() {
  python3 - <<'PY'
import configparser, os, pathlib
home = pathlib.Path.home()
files = [pathlib.Path(p) for p in ("/etc/pip.conf", "/etc/xdg/pip/pip.conf",
         home / ".config/pip/pip.conf", home / ".pip/pip.conf",
         os.environ.get("PIP_CONFIG_FILE") or "/nonexistent")]
mounts = set()
for f in files:
    if not f.is_file():
        continue
    mounts.add(str(f.parent if f.parent.name == "pip" else f))
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(f)
    for section in cfg.sections():
        for key in ("cert", "client-cert", "find-links", "index-url", "extra-index-url",
                    "constraint", "requirement"):
            for value in cfg.get(section, key, fallback="").split():
                path = value.removeprefix("file://")
                if key.endswith("index-url") and path.rstrip("/").endswith("/simple"):
                    path = os.path.dirname(path.rstrip("/"))  # its files lie beside it
                if path.startswith("/") and os.path.exists(path):
                    mounts.add(path)
for m in sorted(mounts):
    if not any(m.startswith(other + "/") for other in mounts):
        print(f"{m}:{m}:ro")
PY
}
# EXTRA_PACKAGES staged in the build context: wheels copied, specifiers listed.
stage="$root/images/extra-packages"
if [[ -e "$stage" && ! -e "$stage/.cnnzoo-staging" ]]; then
  echo "error: $stage exists and is not images/build.sh's staging folder; move it away" >&2
  exit 1
fi
rm -rf "$stage"
mkdir -p "$stage"
touch "$stage/.cnnzoo-staging"
: > "$stage/requirements.txt"
for item in ${EXTRA_PACKAGES:-}; do
  if [[ -d "$item" ]]; then
    shopt -s nullglob
    wheels=("$item"/*.whl)
    shopt -u nullglob
    if (( ${#wheels[@]} == 0 )); then
      echo "error: EXTRA_PACKAGES: $item: a folder without wheels (*.whl)" >&2
      exit 1
    fi
    cp "${wheels[@]}" "$stage/"
  elif [[ "$item" == *.whl ]]; then
    if [[ ! -f "$item" ]]; then
      echo "error: EXTRA_PACKAGES: $item: no such wheel file" >&2
      exit 1
    fi
    cp "$item" "$stage/"
  elif [[ "$item" == */* || -e "$item" ]]; then
    echo "error: EXTRA_PACKAGES: $item: expected a requirement (name==version), a wheel or a folder of wheels" >&2
    exit 1
  else
    echo "$item" >> "$stage/requirements.txt"
  fi
done
if [[ -n "${EXTRA_PACKAGES:-}" ]]; then
  staged=$(find "$stage" -maxdepth 1 -name '*.whl' -printf '%f ')
  echo "extra packages: ${staged}$(tr '\n' ' ' < "$stage/requirements.txt")"
fi

extra=(--network "$BUILD_NETWORK")
if [[ "$engine" == podman ]]; then
  extra+=(--format docker)
  while IFS= read -r mount; do
    [[ -n "$mount" ]] && extra+=(-v "$mount")
  done < <(pip_mounts)
fi
[[ -n "${BASE_IMAGE:-}" ]] && extra+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")

for flavor in $FLAVORS; do
  case "$flavor" in
    cpu | gpu) ;;
    *) echo "error: FLAVORS: unknown flavour '$flavor' (cpu, gpu)" >&2; exit 2 ;;
  esac
  name=cnnzoo
  [[ "$flavor" == gpu ]] && name=cnnzoo-gpu
  ref="$IMAGE_REGISTRY/$name:$IMAGE_TAG"
  if [[ "$action" == build ]]; then
    run "$engine" build --file "$root/images/Dockerfile" --platform "$IMAGE_PLATFORM" \
      --build-arg "FLAVOR=$flavor" --build-arg "VERSION=$VERSION" \
      --build-arg "REVISION=$REVISION" --build-arg "SOURCE_URL=$SOURCE_URL" "${extra[@]}" \
      --tag "$ref" "$root"
  else
    # Also pushed under <tag>-<commit>: an immutable reference to the exact source.
    run "$engine" tag "$ref" "$ref-$short_rev"
    run "$engine" push "$ref"
    run "$engine" push "$ref-$short_rev"
    pushed+=("$ref-$short_rev")
  fi
done
if [[ "$action" == push ]]; then
  echo "pushed; pass to cnnzoo compile/submit/upload:" \
    "--image ${pushed[0]} --gpu-image ${pushed[-1]}" \
    "(or set CNNZOO_IMAGE/CNNZOO_GPU_IMAGE)"
fi
