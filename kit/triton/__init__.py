"""Triton for the kit: the embedded CPU server (PyTriton + onnxruntime) and its run-directory state.

Entry point: `python -m kit.triton serve|start|stop|status|wait|models`; from Python,
`kit.triton.embedded.start(...)` / `kit.triton.embedded.stop(run_dir)`.
"""
