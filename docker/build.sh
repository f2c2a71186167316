#!/usr/bin/env bash
# Build the service image: `bentoml build` (bentofile.yaml), then `docker build` of the bento
# with its model, tagged with the bento version; prints the image and its size. `make container`.
#
#   MODEL_TAG      model packed into the bento (default sentiment-classifier:latest)
#   IMAGE          image name (default sentiment-service); its tag is the bento version
#   BASE_IMAGE     default python:3.11-slim (Docker Hub); where that cannot be pulled, build an
#                  equivalent from Debian packages with docker/base-image.sh and name it here
#   PIP_CERT       CA bundle pip and uv trust inside the build (a BuildKit secret, never in the
#                  image); default: pip's own `cert` setting here, if any; "none" for none
#   PIP_INDEX_URL  package index for the build (default PyPI)
#   DOCKER         Docker client (default: the first `docker` on PATH that builds with BuildKit)
#   BENTOML        bentoml CLI (default .venv/bin/bentoml, else bentoml on PATH)
#   BUILDER        docker (default): `bentoml export` of the bento, then `docker build` of it;
#                  bentoml: `bentoml containerize` of the same bento, the same arguments
#                  (`make containerize`); both give the same image from the same Dockerfile
#
# Runs from the repository directory. `bentoml containerize` (BentoML 1.4.39) resolves the
# bento's copy of the Dockerfile template in a temporary build context and refuses it as
# "outside of current working directory" unless that context lies under the current directory:
# BUILDER=bentoml points TMPDIR at build/tmp/ here (docs/release.md). The template drops
# BentoML's `# syntax=` header, which pulls a Dockerfile frontend from Docker Hub.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_TAG=${MODEL_TAG:-sentiment-classifier:latest}
IMAGE=${IMAGE:-sentiment-service}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
if [ -z "${BENTOML:-}" ]; then
    if [ -x .venv/bin/bentoml ]; then BENTOML=.venv/bin/bentoml; else BENTOML=bentoml; fi
fi
PYTHON=$(dirname "$(command -v "$BENTOML")")/python
[ -x "$PYTHON" ] || PYTHON=python3

# A client that builds with BuildKit: built in before Docker 23, the buildx plugin since.
builds_with_buildkit() {
    "$1" buildx version >/dev/null 2>&1 && return 0
    local major
    major=$("$1" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
    [ -n "$major" ] && [ "$major" -lt 23 ] 2>/dev/null
}
if [ -z "${DOCKER:-}" ]; then
    for candidate in $(which -a docker 2>/dev/null | awk '!seen[$0]++'); do
        if builds_with_buildkit "$candidate"; then DOCKER=$candidate; break; fi
    done
    if [ -z "${DOCKER:-}" ]; then
        echo "no Docker client here builds with BuildKit: install the buildx plugin" \
            "(docker-buildx-plugin) or Debian's docker.io, or name one in DOCKER" >&2
        exit 2
    fi
fi
"$DOCKER" info >/dev/null 2>&1 || { echo "$DOCKER cannot reach a Docker daemon" >&2; exit 2; }

if [ -z "${PIP_CERT:-}" ]; then
    PIP_CERT=$("$PYTHON" -m pip config list 2>/dev/null | sed -n "s/^global\.cert='\(.*\)'$/\1/p" \
        | tail -1)
fi
secret=()
if [ -n "$PIP_CERT" ] && [ "$PIP_CERT" != none ]; then
    [ -r "$PIP_CERT" ] || { echo "PIP_CERT=$PIP_CERT is not a readable file" >&2; exit 2; }
    secret=(--secret "id=pip-cert,src=$PIP_CERT")
fi

start=$(date +%s)
out=$(MODEL_TAG=$MODEL_TAG "$BENTOML" build -o tag) || { echo "$out" >&2; exit 1; }
bento=$(sed -n 's/^__tag__://p' <<<"$out")
[ -n "$bento" ] || { echo "bentoml build printed no tag:" >&2; echo "$out" >&2; exit 1; }
tag="$IMAGE:${bento#*:}"

args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "PIP_INDEX_URL=${PIP_INDEX_URL:-}"
    --label "org.opencontainers.image.title=$IMAGE"
    --label "org.opencontainers.image.version=${bento#*:}"
    --label "ai.bentoml.bento=$bento")
if [ "${BUILDER:-docker}" = bentoml ]; then
    model=$("$BENTOML" get "$bento" -o json | "$PYTHON" -c 'import json, sys
info = json.load(sys.stdin)
print(*{m["tag"] for s in info["services"] for m in s["models"]})')
    echo "containerizing $tag: $bento with $model, on $BASE_IMAGE, with $DOCKER${secret:+, pip trusting $PIP_CERT}"
    # BentoML's model store keeps each version in a 0700 folder and containerize copies it with
    # its mode: the image's user could not read its model. The same modes as the export below.
    for m in $model; do
        chmod -R go+rX "$("$PYTHON" -c 'import sys, bentoml; print(bentoml.models.get(sys.argv[1]).path)' "$m")"
    done
    mkdir -p build/tmp
    ( umask 022  # the context's files as the image's user may read them
      export TMPDIR=$PWD/build/tmp PATH="$(dirname "$(command -v "$DOCKER")"):$PATH" \
        DOCKER_BUILDKIT=1 BUILDKIT_PROGRESS=plain
      "$BENTOML" containerize "$bento" --backend docker -t "$tag" "${args[@]}" \
        --build-arg "MODEL_TAG=$model" --label "ai.bentoml.model=$model" "${secret[@]}" \
        >build/tmp/containerize.log 2>&1 ) || {
        tail -40 build/tmp/containerize.log >&2; echo "bentoml containerize failed" >&2; exit 1; }
    size=$("$DOCKER" image inspect -f '{{.Size}}' "$tag")
    echo "built $tag in $(( $(date +%s) - start )) s: $(( size / 1000000 )) MB (uncompressed)"
    echo "__image__:$tag"
    exit 0
fi

ctx=$(mktemp -d "${TMPDIR:-/tmp}/sentiment-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
"$BENTOML" export "$bento" "$ctx/bento.tar" >/dev/null  # the bento with its models/
tar -C "$ctx" -xf "$ctx/bento.tar" && rm "$ctx/bento.tar"
chmod -R u=rwX,go=rX "$ctx"  # what the image's user may read, whatever the umask was
model=$("$PYTHON" -c 'import sys, yaml
info = yaml.safe_load(open(sys.argv[1]))
print(*{m["tag"] for s in info["services"] for m in s["models"]})' "$ctx/bento.yaml")

echo "building $tag: $bento with $model, on $BASE_IMAGE, with $DOCKER${secret:+, pip trusting $PIP_CERT}"
DOCKER_BUILDKIT=1 "$DOCKER" build --progress=plain -q \
    -f "$ctx/env/docker/Dockerfile" -t "$tag" "${args[@]}" \
    --build-arg "MODEL_TAG=$model" --label "ai.bentoml.model=$model" \
    "${secret[@]}" "$ctx" >/dev/null || {
    echo "docker build failed; if $BASE_IMAGE cannot be pulled here, build a base from Debian" \
        "packages (make base-image) and set BASE_IMAGE" >&2
    exit 1
}

size=$("$DOCKER" image inspect -f '{{.Size}}' "$tag")
echo "built $tag in $(( $(date +%s) - start )) s: $(( size / 1000000 )) MB (uncompressed)"
echo "run it: docker run --rm -p 3000:3000 $tag"
echo "__image__:$tag"
