#!/usr/bin/env bash
# The release's steps outside GitHub and Google Cloud (`make release-dry-run`), in the order
# .github/workflows/release.yml runs them, each with the real command where one can run here:
#   1. the model from a bucket: `make model-publish` of MODEL_TAG from this store into a local
#      folder that stands in for gs://MODEL_BUCKET/models/ (or MODEL_URI, a prefix that already
#      holds it), then `make model-import` into an empty model store, as on a fresh runner;
#   2. the image: docker/build.sh from that store (skipped, saying so, without a Docker daemon);
#   3. a local server of it: the image (`docker run`), else `bentoml serve`, with an API key;
#   4. deploy/cloudrun.sh deploy, smoke, canary, promote, rollback with a stand-in `gcloud` that
#      records each call and answers as Cloud Run would, the tagged revision's URL being the
#      local server's: the smoke test is the real one, against the real server.
#
#   MODEL_TAG   name:version to release (required; `latest` is resolved to its version)
#   MODEL_URI   a bucket prefix holding NAME-VERSION.bentomodel (default: publish to a folder)
#   VERSION     the release's version tag (default v0.0.0-dry-run)
#   BASE_IMAGE  the image's base (default python:3.11-slim), BENTOML, PYTHON as elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MODEL_TAG:?set MODEL_TAG=name:version}"
VERSION=${VERSION:-v0.0.0-dry-run}
BIN=${BIN:-.venv/bin}
PYTHON=${PYTHON:-$BIN/python}
BENTOML=${BENTOML:-$BIN/bentoml}
export BENTOML_DO_NOT_TRACK=true
unset MAKEFLAGS MFLAGS MAKELEVEL  # the steps' own `make` calls: no variable of an outer one
step() { printf '\n== %s\n' "$*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/release-dry-run.XXXXXX")
server_pid='' container=''
cleanup() {
    if [ -n "$server_pid" ]; then  # its process group, then wait for its shutdown to end
        kill -- "-$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    [ -z "$container" ] || docker rm -f "$container" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

MODEL_TAG=$("$BENTOML" models get "$MODEL_TAG" -o json 2>/dev/null \
    | "$PYTHON" -c 'import json, sys; i = json.load(sys.stdin); print(i["name"] + ":" + i["version"])' \
    || echo "$MODEL_TAG")
step "1. model $MODEL_TAG from a bucket"
if [ -z "${MODEL_URI:-}" ]; then
    MODEL_URI=$work/bucket/models/
    mkdir -p "$MODEL_URI"
    echo "a local folder stands in for gs://MODEL_BUCKET/models/: $MODEL_URI"
    make --no-print-directory model-publish BIN="$BIN" MODEL_URI="$MODEL_URI" MODEL_TAG="$MODEL_TAG"
fi
export BENTOML_HOME=$work/bentoml  # an empty store, as on a fresh runner
mkdir -p "$BENTOML_HOME"
make --no-print-directory model-import BIN="$BIN" MODEL_URI="$MODEL_URI" MODEL_TAG="$MODEL_TAG"

step "2. image"
image=''
if docker info >/dev/null 2>&1; then
    out=$(MODEL_TAG=$MODEL_TAG IMAGE=release-dry-run BENTOML=$BENTOML docker/build.sh) \
        || { echo "$out"; exit 1; }
    echo "$out" | grep -v '^__image__:'
    image=$(sed -n 's/^__image__://p' <<<"$out")
    docker tag "$image" "release-dry-run:$VERSION"
    echo "would push $image as REGION-docker.pkg.dev/PROJECT/REPO/sentiment-service:$VERSION"
else
    echo "skipped: no Docker daemon here; the server below is \`bentoml serve\` of the same model"
fi

step "3. a local server (stands in for the new revision), with an API key"
key=dry-run-key-$RANDOM$RANDOM
port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ -n "$image" ]; then
    container=$(docker run -d -p "127.0.0.1:$port:3000" -e API_KEY="$key" "$image")
    echo "docker run $image on :$port"
else
    # its own process group (setsid), stopped as a whole at exit
    API_KEY=$key MODEL_TAG=$MODEL_TAG setsid "$BENTOML" serve service:SentimentClassifier \
        --host 127.0.0.1 --port "$port" >"$work/server.log" 2>&1 &
    server_pid=$!
    echo "bentoml serve $MODEL_TAG on :$port"
fi
url=http://127.0.0.1:$port

step "4. Cloud Run, one gcloud call per step (a stand-in records them)"
mkdir -p "$work/bin"
cat >"$work/bin/gcloud" <<STANDIN
#!$(command -v python3)
# Cloud Run as the release sees it: an old revision with all traffic, the new one tagged with
# the local server's URL; update-traffic moves the shares (state in traffic.json).
import json, os, sys
args = sys.argv[1:]
with open("$work/gcloud.log", "a") as log:
    log.write("gcloud " + " ".join(args) + "\\n")
state = "$work/traffic.json"
old, new = "sentiment-service-00001-old", "sentiment-service-00002-new"
tag = "$(tr 'A-Z._/+' 'a-z----' <<<"$VERSION")"
shares = json.load(open(state)) if os.path.exists(state) else {old: 100, new: 0}
if args[:3] == ["run", "services", "update-traffic"]:
    flag, spec = args[-2:]
    name, percent = spec.split("=")
    target = new if flag == "--to-tags" else name
    shares = {r: (int(percent) if r == target else round((100 - int(percent)) * p / max(1, 100 - shares[target])))
              for r, p in shares.items()}
    json.dump(shares, open(state, "w"))
elif args[:3] == ["run", "services", "describe"]:
    traffic = [{"revisionName": old, "percent": shares[old]},
               {"revisionName": new, "percent": shares[new], "tag": tag, "url": "$url"}]
    print(json.dumps({"status": {"traffic": traffic}}))
elif args[:3] == ["run", "revisions", "list"]:
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    print(json.dumps([
        {"metadata": {"name": new, "creationTimestamp": "2026-02-01T00:00:00Z"}, "status": ready},
        {"metadata": {"name": old, "creationTimestamp": "2026-01-01T00:00:00Z"}, "status": ready},
    ]))
elif args[:3] == ["secrets", "versions", "access"]:
    print("$key")
STANDIN
chmod +x "$work/bin/gcloud"
export PATH=$work/bin:$PATH API_KEY_SECRET=sentiment-api-key REGION=europe-west1 PYTHON
deploy/cloudrun.sh deploy "europe-west1-docker.pkg.dev/PROJECT/REPO/sentiment-service:$VERSION" "$VERSION" >/dev/null
traffic() { echo "  traffic: $(cat "$work/traffic.json" 2>/dev/null || echo '{"sentiment-service-00001-old": 100}')"; }
deploy/cloudrun.sh smoke "$VERSION"; traffic
deploy/cloudrun.sh canary "$VERSION" 10; traffic
deploy/cloudrun.sh promote "$VERSION"; traffic
deploy/cloudrun.sh rollback; traffic
echo
echo "gcloud calls, in order (the image: ${image:-not built here})"
sed 's/^/  /' "$work/gcloud.log"
echo
echo "release dry run of $MODEL_TAG as $VERSION: passed"
