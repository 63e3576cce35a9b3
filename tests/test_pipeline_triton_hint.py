"""The warning of `make run-pipeline` and of every `make listen` job when no Triton answers: it names the address
the operators will use and where that address comes from (real sockets, the session's embedded Triton)."""

from __future__ import annotations

import socket
from pathlib import Path

from kit.pipeline.triton_hint import triton_warning
from kit.pipeline.wiring import Triton
from kit.triton.readiness import free_ports

FAILS = "operators that need Triton will fail"


def nothing(state_dir: Path) -> str:
    return (f"no 'make triton' recorded in {state_dir}, NVIDIA_TRITON_GRPCURI not set; env.list is for"
            " 'make run-local' only")


def answers(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def test_no_triton_anywhere_names_the_operators_default(tmp_path: Path) -> None:
    hint = triton_warning(Triton(grpc=None, http=None), {}, tmp_path / "triton")
    if answers("localhost", 8001):  # a server there is what the operators would use: nothing to warn about
        assert hint is None
    else:
        assert hint == (f"no Triton runs at localhost:8001 (the operators' default: {nothing(tmp_path / 'triton')}):"
                        f" {FAILS}; start it with 'make triton'")


def test_the_operators_own_fallback_variable_is_named(tmp_path: Path) -> None:
    (closed,) = free_ports(1)
    hint = triton_warning(Triton(grpc=None, http=None), {"TRITON_URL": f"127.0.0.1:{closed}"}, tmp_path)
    assert hint == (f"no Triton runs at 127.0.0.1:{closed} (TRITON_URL of this environment: {nothing(tmp_path)}):"
                    f" {FAILS}; start it with 'make triton'")


def test_a_given_address_where_nothing_answers(tmp_path: Path) -> None:
    (closed,) = free_ports(1)
    grpc = f"127.0.0.1:{closed}"
    hint = triton_warning(Triton(grpc=grpc, http=None), {"NVIDIA_TRITON_GRPCURI": grpc}, tmp_path)
    assert hint == (f"the Triton at {grpc} does not answer (NVIDIA_TRITON_GRPCURI of this environment): {FAILS};"
                    " start that server or unset NVIDIA_TRITON_GRPCURI/NVIDIA_TRITON_HTTPURI to use 'make triton'")


def test_a_recorded_make_triton_that_does_not_answer(tmp_path: Path) -> None:
    grpc, http = (f"127.0.0.1:{p}" for p in free_ports(2))
    hint = triton_warning(Triton(grpc=grpc, http=http), {}, tmp_path / "triton")
    assert hint == (f"the Triton at {http} does not answer (the Triton of 'make triton', recorded in "
                    f"{tmp_path / 'triton'}): {FAILS}; 'make triton-status' says why")


def test_no_warning_when_something_answers(tmp_path: Path, triton_server) -> None:
    grpc, http = triton_server.grpc_url, triton_server.http_url.removeprefix("http://")
    assert triton_warning(Triton(grpc=grpc, http=http), {}, tmp_path) is None
    assert triton_warning(Triton(grpc=grpc, http=None), {"NVIDIA_TRITON_GRPCURI": grpc}, tmp_path) is None
    with socket.create_server(("127.0.0.1", 0)) as server:  # only a gRPC address given: a TCP connection will do
        port = server.getsockname()[1]
        assert triton_warning(Triton(grpc=None, http=None), {"TRITON_URL": f"127.0.0.1:{port}"}, tmp_path) is None
