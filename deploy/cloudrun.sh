#!/usr/bin/env bash
# Deploy the service image to Cloud Run.
#
#   deploy/cloudrun.sh IMAGE [extra gcloud run deploy flags...]
#     IMAGE: a pushed image, e.g. europe-west1-docker.pkg.dev/PROJECT/REPO/sentiment-service:VERSION
#   SERVICE (sentiment-service), REGION (gcloud's default region unless set)
#   API_KEY_SECRET: a Secret Manager secret holding an API key; then the service is public and
#     every request needs the key; unset: the service is private, callers need IAM (run.invoker)
#   WORKERS, MAX_BATCH_SIZE: passed to the service when set (defaults: serving/settings.py)
#
# - startup probe: HTTP /readyz (Cloud Run's default TCP probe passes before the model loads);
#   liveness: /livez.
# - shutdown: Cloud Run sends SIGTERM and kills 10 s later; the service drains in-flight
#   requests for GRACEFUL_SHUTDOWN_S=8 and answers 504 at REQUEST_TIMEOUT_S=8, both under it.
# - --cpu-boost: more CPU while the instance starts; --no-cpu-throttling: the batching
#   dispatcher and inference processes keep their CPU between requests.
# - --concurrency: one full adaptive batch of one-text requests per HTTP worker
#   (MAX_BATCH_SIZE x WORKERS); past that Cloud Run starts instances instead of queueing here.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,22p' "$0"; exit 2; }
IMAGE=$1; shift
SERVICE=${SERVICE:-sentiment-service}
PORT=3000
GRACEFUL_SHUTDOWN_S=8
REQUEST_TIMEOUT_S=8
batch=${MAX_BATCH_SIZE:-32}  # serving/settings.py defaults
workers=${WORKERS:-1}

env_vars="GRACEFUL_SHUTDOWN_S=$GRACEFUL_SHUTDOWN_S,REQUEST_TIMEOUT_S=$REQUEST_TIMEOUT_S"
[ -z "${WORKERS:-}" ] || env_vars+=",WORKERS=$WORKERS"
[ -z "${MAX_BATCH_SIZE:-}" ] || env_vars+=",MAX_BATCH_SIZE=$MAX_BATCH_SIZE"

auth=(--no-allow-unauthenticated)
if [ -n "${API_KEY_SECRET:-}" ]; then
    # The key as a file (API_KEY_FILE): rotating the secret needs no new revision's env.
    auth=(--allow-unauthenticated --set-secrets "/secrets/api-key=$API_KEY_SECRET:latest")
    env_vars+=",API_KEY_FILE=/secrets/api-key"
fi
region=()
[ -z "${REGION:-}" ] || region=(--region "$REGION")

exec gcloud run deploy "$SERVICE" --image "$IMAGE" "${region[@]}" \
    --port "$PORT" --cpu 2 --memory 1Gi \
    --concurrency $((batch * workers)) --timeout 30 \
    --min-instances 1 --max-instances 10 \
    --cpu-boost --no-cpu-throttling --execution-environment gen2 \
    --startup-probe "httpGet.path=/readyz,httpGet.port=$PORT,periodSeconds=1,failureThreshold=60,timeoutSeconds=1" \
    --liveness-probe "httpGet.path=/livez,httpGet.port=$PORT,periodSeconds=10,failureThreshold=3,timeoutSeconds=5" \
    --set-env-vars "$env_vars" \
    "${auth[@]}" "$@"
