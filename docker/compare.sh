#!/usr/bin/env bash
# Throughput of the image against `bentoml serve` of the same bento, back to back, same load:
# wrk, 32 connections, real texts 8 per request, 15 s each after a 3 s warm-up, 2 CPUs each.
#
#   docker/compare.sh IMAGE [TEXTS_JSONL]     (default runs/latest/data/test.jsonl)
#
# The bento comes from the image's label, so BENTOML_HOME must hold it (make container made it).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=$1
DATA=${2:-runs/latest/data/test.jsonl}
CONNECTIONS=${CONNECTIONS:-32} DURATION=${DURATION:-15s} TEXTS=${TEXTS:-8}
BENTOML=${BENTOML:-.venv/bin/bentoml}
PYTHON=$(dirname "$BENTOML")/python
bento=$(docker image inspect -f '{{index .Config.Labels "ai.bentoml.bento"}}' "$IMAGE")

BODIES=$(mktemp) && export BODIES
trap 'rm -f "$BODIES"; [ -z "${cid:-}" ] || docker rm -f "$cid" >/dev/null;
      [ -z "${pid:-}" ] || kill -TERM -- "-$pid" 2>/dev/null || true' EXIT
"$PYTHON" - "$DATA" "$TEXTS" >"$BODIES" <<'PY'
import json, sys
texts = [json.loads(line)["text"] for line in open(sys.argv[1])]
n = int(sys.argv[2])
for i in range(0, len(texts) - n + 1, n):
    print(json.dumps({"texts": texts[i : i + n]}))
PY

ready() { until curl -sf -o /dev/null "$1/readyz"; do sleep 0.1; done; }
load() {  # a warm-up, then the measured run
    wrk -t2 -c"$CONNECTIONS" -d3s -s loadtest/wrk/classify.lua "$1" >/dev/null
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s loadtest/wrk/classify.lua "$1"
}
echo "== container: docker run --cpus 2 $IMAGE"
cid=$(docker run -d --cpus 2 -p 127.0.0.1:13200:3000 "$IMAGE")
ready http://127.0.0.1:13200
load http://127.0.0.1:13200
docker rm -f "$cid" >/dev/null; cid=

echo "== bentoml serve $bento ($(nproc) CPUs)"
setsid "$BENTOML" serve "$bento" --host 127.0.0.1 --port 13201 >/dev/null 2>&1 &
pid=$!
ready http://127.0.0.1:13201
load http://127.0.0.1:13201
echo "($TEXTS texts per request: texts/s = requests/s x $TEXTS; load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
