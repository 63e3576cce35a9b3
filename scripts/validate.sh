#!/usr/bin/env bash
# make validate: schema and graph checks of every pipeline in def/, or of PIPELINE=file.
# Each problem is printed as file:line: severity: message; exit 1 when there is any error.
# PLATFORM=kubernetes: also render each pipeline's manifests (.run/deploy/<name>/) and check them against the
# official Kubernetes schemas (KUBE_VERSION), hera's Argo models and the semantic lint.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
require_venv
cd "$ODK_ROOT"

target="${PIPELINE:-def}"
[[ -e "$target" ]] || die "PIPELINE=$target does not exist; give a pipeline file (e.g. PIPELINE=def/one-operator-pipeline.yml) or leave it empty for all of def/"
case "${PLATFORM:-clara}" in
    clara) ;;
    kubernetes)
        "$ODK_PY" -m kit.pipeline.validate "$target" >/dev/null || exec "$ODK_PY" -m kit.pipeline.validate "$target"
        exec "$ODK_PY" -m kit.deploy.validate "$target"
        ;;
    *) die "PLATFORM must be clara or kubernetes, not '$PLATFORM'" ;;
esac
# The validator prints each problem as file:line and exits non-zero on any error.
exec "$ODK_PY" -m kit.pipeline.validate "$target"
