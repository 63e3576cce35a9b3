#!/bin/sh
# `tritonserver` inside the CPU Triton image: the kit's embedded server with tritonserver's flags
# (--model-repository, --http-port, --grpc-port, --metrics-port, --allow-client-shm). Like tritonserver it
# listens on every interface of the container (published ports reach it only so); the host side decides
# where those ports are published (make triton: 127.0.0.1).
set -eu
exec python -u -m kit.triton serve --address 0.0.0.0 "$@"
