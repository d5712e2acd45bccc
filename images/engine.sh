# shellcheck shell=bash
# The container engine cnnzoo's image scripts use; sourced by images/build.sh and
# images/local-base.sh (not run on its own).
#
#   source images/engine.sh; engine=$(container_engine) || exit 1
#
# $CONTAINER_ENGINE if set, else the first of docker and podman whose `info` answers (a
# client without a daemon does not count). Without one: an error line on stderr, status 1.
container_engine() {
  if [[ -n "${CONTAINER_ENGINE:-}" ]]; then
    echo "$CONTAINER_ENGINE"
    return 0
  fi
  local candidate
  for candidate in docker podman; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" info >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  echo "error: no working container engine: neither 'docker info' nor 'podman info' succeeds" \
    "(install Docker or Podman and start its daemon, or set CONTAINER_ENGINE)" >&2
  return 1
}
