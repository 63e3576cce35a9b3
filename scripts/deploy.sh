#!/usr/bin/env bash
# make deploy: validate PIPELINE and deploy it.
#   PLATFORM=clara (default): copy MODELS_DIR to CLARA_MODELS_DIR, then with the clara CLI create the pipeline,
#     create a job (JOB_NAME, INPUT_DIR as payload) and start it.
#   PLATFORM=kubernetes: render the manifests into MANIFESTS_DIR (default .run/deploy/<pipeline name>/),
#     validate them, `kubectl apply` the cluster objects, copy MODELS_DIR into the models volume and
#     `kubectl create` the Argo Workflow (KUBE_CONTEXT, NAMESPACE). See docs/kubernetes.md.
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
require_venv
cd "$ODK_ROOT"

export PIPELINE="${PIPELINE:-def/one-operator-pipeline.yml}"
[[ -f "$PIPELINE" ]] || die "PIPELINE=$PIPELINE is not a file; e.g. make deploy PIPELINE=def/one-operator-pipeline.yml"
case "${PLATFORM:-clara}" in
    clara) exec "$ODK_PY" -m kit.pipeline.deploy --run-dir "$ODK_RUN_DIR/deploy" ;;
    kubernetes) exec "$ODK_PY" -m kit.deploy.apply ;;
    *) die "PLATFORM must be clara or kubernetes, not '$PLATFORM'" ;;
esac
