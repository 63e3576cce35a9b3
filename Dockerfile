# The operator image: python -u -m app in a virtualenv, as a non-root user.
# Installed in the venv, `python -m app` runs from any working directory.
# The model is not in the image: the operator reaches it through Triton (NVIDIA_TRITON_GRPCURI).
# Build with `make build` (IMAGE, TAG); plain `docker build -t clara/simple-operator:0.1.0 .` works too.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# python3 -m venv: Debian-based images have no `python` command and block system-wide pip.
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/odk/requirements.txt
COPY lib/*.whl /tmp/odk/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -r /tmp/odk/requirements.txt /tmp/odk/*.whl \
    && rm -rf /tmp/odk

# The operator library (import odk) from its source, then the operators as the project's distribution
# (pyproject.toml), from a context holding only app/: their pinned dependencies are already there
# (--no-deps), the kit's tooling and dev tools are not.
COPY lib/odk-operator /tmp/odk/lib
COPY pyproject.toml /tmp/odk/src/pyproject.toml
COPY app /tmp/odk/src/app
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps /tmp/odk/lib /tmp/odk/src \
    && pip check \
    && rm -rf /tmp/odk
RUN groupadd --gid 10001 odk \
    && useradd --uid 10001 --gid odk --no-create-home --home-dir /opt/odk odk \
    && mkdir -p /opt/odk
# The working directory exists in the image itself (podman kube play does not create a missing one).
WORKDIR /opt/odk
USER 10001:10001
# CMD, not ENTRYPOINT: a pipeline operator's `command` replaces it (e.g. python -u -m app.export),
# as on the platform, where a command is passed as arguments to an image's ENTRYPOINT.
CMD ["python", "-u", "-m", "app"]

# Labels last: a new version or commit does not invalidate the cached layers above.
ARG VERSION=0.1.0
ARG SOURCE=unknown
ARG REVISION=unknown
ARG BASE_IMAGE
LABEL org.opencontainers.image.title="simple-operator" \
      org.opencontainers.image.description="Clara ODK operator: NIfTI CT -> Triton segmentation -> label map, overlay PNG, JSON report" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
