"""The window traffic alone: round trips of the operator's window batches through Triton with the
no-compute model, over system shared memory and over plain gRPC, using the operator's own client code
(odk.TritonSession), so the difference is the transport and nothing else."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kit.bench.measure import median
from kit.bench.model import IDENTITY_NAME, BenchModel, window_batch
from odk import OperatorConfig, TritonSession


@dataclass(frozen=True)
class TransportResult:
    transport: str
    batch: int
    mb_per_round_trip: float
    round_trip_s: float  # median
    all_s: list[float]

    @property
    def mb_per_s(self) -> float:
        return self.mb_per_round_trip / self.round_trip_s

    def as_dict(self) -> dict:
        return {"transport": self.transport, "batch": self.batch,
                "mb_per_round_trip": round(self.mb_per_round_trip, 2),
                "round_trip_s": round(self.round_trip_s, 4), "mb_per_s": round(self.mb_per_s, 1),
                "all_s": [round(t, 4) for t in self.all_s]}


def round_trips(grpc_url: str, model: BenchModel, transport: str, repeats: int = 10,
                windows: int = 0) -> TransportResult:
    """Median round trip of a batch of ``windows`` (0: the model's max batch, as the operator sends)."""
    cfg = OperatorConfig(triton_url=grpc_url, model_name=IDENTITY_NAME, transport=transport)
    batch = window_batch(model, windows or model.max_batch_size)
    with TritonSession.open(cfg) as session:
        got = session.transport
        if got != transport:
            raise RuntimeError(f"asked for transport {transport}, the session chose {got}")
        predict = session.predictor()
        predict(batch)  # warm-up: first request allocates on both sides
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = predict(batch)
            times.append(time.perf_counter() - t0)
        if out.shape != (batch.shape[0], model.channels, *model.roi) or not (out[:, 0] == batch[:, 0]).all():
            raise RuntimeError(f"{transport}: the no-compute model did not echo its input")
    mb = (batch.nbytes + batch.nbytes * model.channels) / 2**20
    return TransportResult(transport, batch.shape[0], mb, median(times), times)
