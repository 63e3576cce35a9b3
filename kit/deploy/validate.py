"""``make validate PLATFORM=kubernetes``: each pipeline validated, rendered and its manifests checked.

``python -m kit.deploy.validate [FILE_OR_DIR ...]`` (default def/); exit 1 when any pipeline fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kit.deploy.prepare import prepare
from kit.deploy.settings import from_env
from kit.pipeline.model import PipelineError
from kit.pipeline.validate import pipeline_files


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    files = pipeline_files(Path(a) for a in (args or ["def"]))
    settings = from_env()
    failed = 0
    for path in files:
        try:
            b, folder = prepare(path, settings)
        except PipelineError as exc:
            for problem in exc.problems:
                print(problem)
            print(f"{path}: error: {exc}")
            failed += 1
            continue
        count = sum(len(mf.objects) for mf in b.manifests)
        print(f"{path}: ok for Kubernetes {settings.kube_version} ({count} objects in {folder})")
    print(f"{len(files)} file(s): {failed} failed")
    return 1 if failed or not files else 0


if __name__ == "__main__":
    sys.exit(main())
