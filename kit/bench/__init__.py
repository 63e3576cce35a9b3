"""`make bench`: the operator end to end against the embedded Triton, against the machine's limit (the same
windows through onnxruntime in-process, the fastest gzip) and against a MONAI pipeline doing the same job.

Entry point: ``python -m kit.bench`` (scripts/bench.sh runs it in .venv-bench).
"""
