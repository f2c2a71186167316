#!/usr/bin/env bash
# The system parts the tests exercise, for CI (.ci/run, .github/workflows/ci.yml) and a fresh
# machine alike; what is already there is kept. Runs as root, or through sudo.
# - Chromium and its fonts, for the web page's browser tests (Playwright's own download is out of
#   reach here; CHROMIUM names another browser, e.g. the GitHub runner's Chrome, then none is
#   installed);
# - Docker (Debian's docker.io: its client builds with BuildKit) when no dockerd exists, started
#   when no daemon answers (its log: DOCKERD_LOG, default /tmp/dockerd.log);
# - wrk, the benchmark's low-overhead load generator (the smoke benchmark runs it);
# - the image's base: BASE_IMAGE if given; else python:3.11-slim when Docker Hub answers; else one
#   built from Debian packages (docker/base-image.sh, debootstrap, about 2 minutes; kept while
#   the daemon keeps it).
# Prints `export BASE_IMAGE=...` on stdout (eval it) and appends BASE_IMAGE to $GITHUB_ENV when
# set; everything else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 3>&1 1>&2
start=$(date +%s)
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)

missing=()
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium fonts-liberation)
command -v dockerd >/dev/null || missing+=(docker.io)
command -v wrk >/dev/null || missing+=(wrk)
install() {
    "${sudo[@]}" apt-get update -q >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "$@" >/dev/null
}
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    install "${missing[@]}"
fi

DOCKERD_LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"
if ! docker info >/dev/null 2>&1; then
    echo "starting dockerd"
    # fd 3 closed: the daemon must not hold the pipe of the caller's `$(.ci/system-deps.sh)`
    # open, or the caller waits for its end as long as dockerd runs
    ("${sudo[@]}" setsid dockerd </dev/null >"$DOCKERD_LOG" 2>&1 3>&- &)
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { tail -20 "$DOCKERD_LOG"; exit 1; }
fi

if [ -z "${BASE_IMAGE:-}" ]; then
    if docker image inspect python:3.11-slim >/dev/null 2>&1 \
        || timeout 120 docker pull -q python:3.11-slim >/dev/null 2>&1; then
        BASE_IMAGE=python:3.11-slim
    else
        BASE_IMAGE=sentiment-base:python3.11-bookworm
    fi
fi
if [ "$BASE_IMAGE" = sentiment-base:python3.11-bookworm ]; then
    command -v debootstrap >/dev/null || install debootstrap
    echo "Docker Hub out of reach: building $BASE_IMAGE from Debian packages"
    "${sudo[@]}" env MIRROR="${MIRROR:-apt}" docker/base-image.sh --tag "$BASE_IMAGE"
fi
echo "system packages, docker and the base image ($BASE_IMAGE) ready in $(( $(date +%s) - start )) s"
[ -z "${GITHUB_ENV:-}" ] || echo "BASE_IMAGE=$BASE_IMAGE" >>"$GITHUB_ENV"
echo "export BASE_IMAGE=$BASE_IMAGE" >&3
