"""``python -u -m app``: run the segmentation operator under the pipeline driver."""

from app.main import main

raise SystemExit(main())
