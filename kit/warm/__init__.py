"""Warm operator start: a fork server that has imported the operator image's heavy libraries once.

``kit.warm.server`` (``python -m kit.warm serve``) imports numpy, nibabel, scipy, pydicom, highdicom,
pynetdicom and tritonclient, nothing else, creates no client, thread or channel, then forks one child per
request. ``kit.warm.client`` starts it (``WarmServer``, once per listener or pipeline run) and asks it for an
operator (``spawn``): the child takes the operator's argv, environment, cwd and stdout/stderr, becomes the
leader of its own session (setsid) and runs ``python -u -m MODULE``/``python -u SCRIPT`` as ``python`` would,
its exit code and signals reported as a process's. See docs/pipelines.md (warm start).
"""
