#!/usr/bin/env bash
# Build a python:3.11-slim equivalent from Debian packages alone, for machines that reach a
# Debian mirror (and PyPI) but not Docker Hub: an air-gapped or proxied build.
#
#   docker/base-image.sh [--mirror URL] [--suite SUITE] [--tag IMAGE] [--force]
#
# debootstrap --variant=minbase + Debian's python3.11, pip and venv (no compiler, no git), as a
# root file system imported into Docker. Needs root (debootstrap) and a Docker daemon. An image
# already present under the tag is kept (--force rebuilds). Then build the service image on it:
# `make container BASE_IMAGE=<tag>`.
#   MIRROR  default: deb.debian.org; "apt" = the first Debian mirror apt on this machine uses
#   SUITE   default: bookworm (Debian 12, whose python3 is 3.11)
#   TAG     default: sentiment-base:python3.11-<suite>
set -euo pipefail

MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-bookworm}
TAG=${TAG:-}
FORCE=0
DOCKER=${DOCKER:-docker}
while [ $# -gt 0 ]; do
    case "$1" in
        --mirror) MIRROR=$2; shift 2 ;;
        --suite) SUITE=$2; shift 2 ;;
        --tag) TAG=$2; shift 2 ;;
        --force) FORCE=1; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done
TAG=${TAG:-sentiment-base:python3.11-$SUITE}

if [ "$MIRROR" = apt ]; then
    # The mirror apt already uses (deb822 .sources or one-line .list), e.g. behind a proxy.
    MIRROR=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | grep -m1 -oE 'https?://[^ ]*/debian/?( |$)' | tr -d ' ' || true)
    [ -n "$MIRROR" ] || { echo "no Debian mirror found in apt's sources" >&2; exit 2; }
fi

if [ "$FORCE" = 0 ] && "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    echo "base image $TAG already present (--force rebuilds it)"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "debootstrap needs root" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "needs debootstrap: apt-get install debootstrap" >&2; exit 2; }

start=$(date +%s)
rootfs=$(mktemp -d "${TMPDIR:-/tmp}/sentiment-base-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap $SUITE from $MIRROR into $rootfs"
debootstrap --variant=minbase --components=main \
    --include=python3,python3-pip,python3-venv,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
    || { tail -30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"

# As python:3.11-slim: `python` and `pip` on PATH, pip may install into the system Python (no
# PEP 668 marker), no apt lists, caches, docs, man pages or translations (as debian:*-slim).
ln -sf python3 "$rootfs/usr/bin/python"
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/*/ "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old \
    "$rootfs"/tmp/* "$rootfs"/root/.cache
version=$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')

tar -C "$rootfs" -c . | "$DOCKER" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV PYTHON_VERSION=$version" \
    --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase $SUITE from $MIRROR + python3 $version" \
    - "$TAG" >/dev/null
echo "built $TAG (Debian $SUITE, Python $version) in $(( $(date +%s) - start )) s:" \
    "$("$DOCKER" image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')"
