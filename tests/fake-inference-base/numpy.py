"""The inference base's own module named numpy, on its PYTHONPATH: a wrapped operator must not import it."""

raise ImportError("the inference base image's numpy module leaked into the operator")
