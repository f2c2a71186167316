#!/usr/bin/env bash
# Release the service image on Cloud Run in steps: a revision without traffic, a smoke test of
# that revision's own URL, a canary share, all traffic; and a rollback. Each step is one gcloud call.
#
#   deploy/cloudrun.sh deploy IMAGE TAG [extra gcloud run deploy flags...]
#       a new revision of IMAGE under the revision tag TAG (its own URL), no traffic; the first
#       deploy of a service (nothing to keep serving) gets all traffic, as Cloud Run requires
#   deploy/cloudrun.sh url TAG          print the URL of the revision tagged TAG
#   deploy/cloudrun.sh smoke TAG        python -m deploy.smoke against that URL (exit 1: failed)
#   deploy/cloudrun.sh canary TAG PERCENT   PERCENT of the traffic to TAG, the rest as it was
#   deploy/cloudrun.sh promote TAG      all traffic to TAG
#   deploy/cloudrun.sh rollback [REVISION]  all traffic to REVISION; default: the newest ready
#       revision older than the newest one that has traffic (the one serving before this release)
#   deploy/cloudrun.sh IMAGE [flags...] the former one-step deploy: a new revision, all traffic
#
#   IMAGE: a pushed image, e.g. europe-west1-docker.pkg.dev/PROJECT/REPO/sentiment-service:VERSION
#   TAG: a revision tag; a version such as v1.2.3 becomes v1-2-3 (lowercase, digits, dashes)
#   SERVICE (sentiment-service), REGION (gcloud's default region unless set)
#   API_KEY_SECRET: a Secret Manager secret holding an API key; then the service is public and
#     every request needs the key (smoke reads it with `gcloud secrets versions access`); unset:
#     the service is private, callers need IAM (run.invoker) (smoke sends an identity token)
#   WORKERS, MAX_BATCH_SIZE: passed to the service when set (defaults: serving/settings.py)
#   PYTHON: the Python that runs the smoke test (default python3; needs only the standard library)
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
usage() { sed -n '2,32p' "$0"; exit 2; }
[ $# -ge 1 ] || usage
cd "$(dirname "$0")/.."
SERVICE=${SERVICE:-sentiment-service}
PYTHON=${PYTHON:-python3}
region=()
[ -z "${REGION:-}" ] || region=(--region "$REGION")

# Cloud Run's revision tags: lowercase letters, digits and dashes, starting with a letter.
revision_tag() {
    local tag
    tag=$(tr 'A-Z._/+' 'a-z----' <<<"$1")
    [[ $tag =~ ^[a-z][a-z0-9-]{0,45}$ ]] || { echo "not a usable revision tag: $1" >&2; exit 2; }
    echo "$tag"
}

deploy() {  # deploy IMAGE [flags...]: the one `gcloud run deploy`
    local image=$1; shift
    local port=3000 graceful_shutdown_s=8 request_timeout_s=8
    local batch=${MAX_BATCH_SIZE:-32} workers=${WORKERS:-1}  # serving/settings.py defaults
    local env_vars="GRACEFUL_SHUTDOWN_S=$graceful_shutdown_s,REQUEST_TIMEOUT_S=$request_timeout_s"
    [ -z "${WORKERS:-}" ] || env_vars+=",WORKERS=$WORKERS"
    [ -z "${MAX_BATCH_SIZE:-}" ] || env_vars+=",MAX_BATCH_SIZE=$MAX_BATCH_SIZE"
    local auth=(--no-allow-unauthenticated)
    if [ -n "${API_KEY_SECRET:-}" ]; then
        # The key as a file (API_KEY_FILE): rotating the secret needs no new revision's env.
        auth=(--allow-unauthenticated --set-secrets "/secrets/api-key=$API_KEY_SECRET:latest")
        env_vars+=",API_KEY_FILE=/secrets/api-key"
    fi
    gcloud run deploy "$SERVICE" --image "$image" "${region[@]}" \
        --port "$port" --cpu 2 --memory 1Gi \
        --concurrency $((batch * workers)) --timeout 30 \
        --min-instances 1 --max-instances 10 \
        --cpu-boost --no-cpu-throttling --execution-environment gen2 \
        --startup-probe "httpGet.path=/readyz,httpGet.port=$port,periodSeconds=1,failureThreshold=60,timeoutSeconds=1" \
        --liveness-probe "httpGet.path=/livez,httpGet.port=$port,periodSeconds=10,failureThreshold=3,timeoutSeconds=5" \
        --set-env-vars "$env_vars" \
        "${auth[@]}" "$@"
}

describe() { gcloud run services describe "$SERVICE" "${region[@]}" --format json; }

tag_url() {
    local tag json
    tag=$(revision_tag "$1")
    json=$(describe)
    "$PYTHON" -c 'import json, sys
tag, service = sys.argv[1], json.load(sys.stdin)
urls = [t["url"] for t in service.get("status", {}).get("traffic", []) if t.get("tag") == tag]
if not urls:
    sys.exit(f"no revision tagged {tag!r} in the service")
print(urls[0])' "$tag" <<<"$json"
}

previous_revision() {  # the newest ready revision older than the newest one with traffic
    local service revisions
    service=$(describe)
    revisions=$(gcloud run revisions list --service "$SERVICE" "${region[@]}" --format json)
    "$PYTHON" -c 'import json, sys
service, revisions = json.loads(sys.argv[1]), json.loads(sys.argv[2])
serving = {t["revisionName"] for t in service.get("status", {}).get("traffic", [])
           if t.get("percent") and t.get("revisionName")}
def ready(r):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in r.get("status", {}).get("conditions", []))
revisions.sort(key=lambda r: r["metadata"]["creationTimestamp"], reverse=True)
names = [r["metadata"]["name"] for r in revisions]
newest = next((i for i, n in enumerate(names) if n in serving), None)
if newest is None:
    sys.exit("no revision has traffic: name the one to roll back to")
older = [r["metadata"]["name"] for r in revisions[newest + 1:] if ready(r)]
if not older:
    sys.exit(f"no ready revision older than {names[newest]} to roll back to")
print(older[0])' "$service" "$revisions"
}

command=$1; shift
case "$command" in
    deploy)
        [ $# -ge 2 ] || usage
        image=$1 tag=$(revision_tag "$2"); shift 2
        if describe >/dev/null 2>&1; then
            deploy "$image" --no-traffic --tag "$tag" "$@"
        else  # a new service: its first revision takes all traffic (--no-traffic is refused)
            echo "$SERVICE does not exist yet: its first revision gets all traffic" >&2
            deploy "$image" --tag "$tag" "$@"
        fi
        ;;
    url)
        [ $# -eq 1 ] || usage
        tag_url "$1"
        ;;
    smoke)
        [ $# -eq 1 ] || usage
        url=$(tag_url "$1")
        if [ -n "${API_KEY_SECRET:-}" ]; then
            SMOKE_API_KEY=$(gcloud secrets versions access latest --secret "$API_KEY_SECRET")
            export SMOKE_API_KEY
        else
            SMOKE_ID_TOKEN=$(gcloud auth print-identity-token --audiences "$url")
            export SMOKE_ID_TOKEN
        fi
        echo "smoke test of $url" >&2
        "$PYTHON" -m deploy.smoke "$url"
        ;;
    canary)
        [ $# -eq 2 ] || usage
        [[ $2 =~ ^[0-9]+$ ]] && [ "$2" -ge 1 ] && [ "$2" -le 99 ] \
            || { echo "canary PERCENT: 1 to 99, not $2" >&2; exit 2; }
        gcloud run services update-traffic "$SERVICE" "${region[@]}" \
            --to-tags "$(revision_tag "$1")=$2"
        ;;
    promote)
        [ $# -eq 1 ] || usage
        gcloud run services update-traffic "$SERVICE" "${region[@]}" \
            --to-tags "$(revision_tag "$1")=100"
        ;;
    rollback)
        [ $# -le 1 ] || usage
        revision=${1:-$(previous_revision)}
        echo "all traffic to $revision" >&2
        gcloud run services update-traffic "$SERVICE" "${region[@]}" --to-revisions "$revision=100"
        ;;
    -h | --help | help) usage ;;
    -*) usage ;;
    *)  # the former one-step form: cloudrun.sh IMAGE [flags...]
        deploy "$command" "$@"
        ;;
esac
