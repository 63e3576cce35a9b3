"""``python -u -m app``: the segmentation operator (app/main.py) under the pipeline driver."""

import odk
from app.main import prepare, process

raise SystemExit(odk.main(odk.study_operator(process, prepare)))
