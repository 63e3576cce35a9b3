#!/bin/sh
# `tritonserver` inside the CPU Triton image: the kit's embedded server with tritonserver's flags
# (--model-repository, --http-port, --grpc-port, --metrics-port, --allow-client-shm).
set -eu
exec python -u -m kit.triton serve "$@"
