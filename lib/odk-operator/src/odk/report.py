"""The study report (``<stem>.json``) as a typed result, and the stage timer that fills its timings.

Every operator's report starts with the same fields (:class:`StudyResult`); an operator adds its own by
subclassing it (a dataclass with more fields): they appear in the JSON after ``orientation``, in the order
declared. :class:`LabelMapResult` is the result of an operator that writes a label map: its class volumes
are written as ``<class>_volume_ml`` (the report's JSON as users know it) and ``labels`` holds each label's
own voxels. The kit's tooling reads reports with :func:`read_result`, never by hand.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

if TYPE_CHECKING:
    import numpy as np

    from .files import Study
    from .nifti import Volume

VOLUME_SUFFIX = "_volume_ml"


@dataclass
class Timer:
    """Seconds spent per stage of a study, accumulated (``with timer.stage("inference"): ...``).

    >>> timer = Timer()
    >>> with timer.stage("read"):
    ...     vol = read_volume(path)
    >>> timer.stages                               # {'read': 0.41}
    """

    stages: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - t0, 4)

    def total(self) -> dict[str, float]:
        """The stages with ``total`` (since the timer was made) added."""
        self.stages["total"] = round(time.perf_counter() - self.started, 4)
        return dict(self.stages)


@dataclass
class StudyResult:
    """What every operator reports about a study. Subclass it to add fields (they are written after
    ``orientation``); :meth:`to_json` is the report as written, :meth:`dumps` its bytes.

    >>> @dataclass
    ... class MyResult(StudyResult):
    ...     lesion_probability: float = 0.0
    >>> MyResult(input="ct.nii.gz", shape=[320, 320, 64], lesion_probability=0.93).to_json()["lesion_probability"]
    0.93
    """

    input: str
    shape: list[int] = field(default_factory=list)
    spacing_mm: list[float] = field(default_factory=list)
    dtype: str = ""
    orientation: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    transport: str = ""
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    # Fields of a report this class does not declare (read back from a file): written back as they were.
    extra: dict[str, Any] = field(default_factory=dict)

    HEAD: ClassVar[tuple[str, ...]] = ("input", "shape", "spacing_mm", "dtype", "orientation")

    @classmethod
    def of(cls, study: Study, vol: Volume, **fields: Any) -> Self:
        """A result of this class for ``study`` read as ``vol``: input, shape, spacing, dtype and orientation
        filled in, ``fields`` (the others) as given.

        >>> result = MyResult.of(study, vol, transport=session.transport, lesion_probability=0.93)
        """
        from nibabel import orientations

        return cls(input=str(study.src), shape=list(vol.data.shape), spacing_mm=[round(s, 6) for s in vol.spacing],
                   dtype=str(vol.data.dtype), orientation="".join(orientations.aff2axcodes(vol.affine)), **fields)

    def own_fields(self) -> dict[str, Any]:
        """The fields a subclass declares, in order (what goes after ``orientation``)."""
        base = {f.name for f in dataclasses.fields(StudyResult)}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in base}

    def to_json(self) -> dict[str, Any]:
        """The report as written: the head fields, the operator's own, then model, transport, timings,
        warnings and outputs."""
        out: dict[str, Any] = {name: getattr(self, name) for name in self.HEAD}
        out.update(_plain(self.own_fields()))
        out.update(self.extra)
        for name in ("model", "transport", "timings_s", "warnings", "outputs"):
            out[name] = getattr(self, name)
        return out

    def dumps(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2) + "\n").encode()


@dataclass
class LabelStats:
    """One label of a label map: its value, voxel count and volume (its own voxels only)."""

    label: int
    voxels: int
    volume_ml: float


@dataclass
class LabelMapResult(StudyResult):
    """The result of an operator that writes a label map: ``volumes_ml`` (written as ``<class>_volume_ml``
    for each foreground class, as the operator defines them) and ``labels`` (each label's own voxels).

    >>> result = read_result(Path("out/ct.json"))
    >>> result.volumes_ml                          # {'liver': 1510.2, 'lesion': 12.4}
    """

    volumes_ml: dict[str, float] = field(default_factory=dict)
    labels: dict[str, LabelStats] = field(default_factory=dict)

    @classmethod
    def of(cls, study: Study, vol: Volume, labels: np.ndarray | None = None, names: Sequence[str] = (),
           nested: bool = True, **fields: Any) -> Self:
        """A label map's result: the volume of each class and each label's own voxels counted from ``labels``
        (on ``vol``'s grid, values 0..len(names)-1), ``nested`` as :func:`label_volumes` says.

        >>> result = LabelMapResult.of(study, vol, labels, ("background", "liver", "lesion"), transport="shm")
        """
        if labels is None:
            return super().of(study, vol, **fields)
        from .transforms import label_counts, volumes_ml

        counts = label_counts(labels, len(names))
        volumes = volumes_ml(counts, vol.spacing)
        stats = {name: LabelStats(i, counts[i], volumes[i]) for i, name in enumerate(names)}
        return super().of(study, vol, volumes_ml=label_volumes(names, volumes, nested), labels=stats, **fields)

    def own_fields(self) -> dict[str, Any]:
        fields = super().own_fields()
        volumes = fields.pop("volumes_ml")
        return {**{f"{name}{VOLUME_SUFFIX}": v for name, v in volumes.items()}, **fields}


def label_volumes(names: Sequence[str], volumes: Sequence[float], nested: bool = True) -> dict[str, float]:
    """The volume of each foreground class. Nested (the model's label_nesting organ), the first foreground
    class is the organ, which holds the classes after it: its volume includes theirs (the demo model: liver,
    lesions included, and lesion). Not nested, each class its own.

    >>> label_volumes(("background", "liver", "lesion"), [0.0, 1500.0, 10.0])
    {'liver': 1510.0, 'lesion': 10.0}
    """
    if not nested:
        return {name: volumes[i] for i, name in enumerate(names) if i >= 1}
    out = {names[1]: sum(volumes[1:])} if len(names) > 1 else {}
    out.update({name: volumes[i] for i, name in enumerate(names) if i >= 2})
    return out


def read_result(path: Path) -> StudyResult:
    """A study report read back: a :class:`LabelMapResult` when it has class volumes, else a
    :class:`StudyResult`; fields neither declares are kept in ``extra``. Raises OSError, ValueError."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a study report (a JSON object)")
    return result_of(data)


def result_of(data: Mapping[str, Any]) -> StudyResult:
    """:func:`read_result` of an already parsed report."""
    data = dict(data)
    volumes = {k.removesuffix(VOLUME_SUFFIX): v for k, v in data.items()
               if isinstance(k, str) and k.endswith(VOLUME_SUFFIX)}
    known = {f.name for f in dataclasses.fields(StudyResult)} - {"extra"}
    base = {k: data.pop(k) for k in list(data) if k in known}
    base.setdefault("input", "")
    if volumes or isinstance(data.get("labels"), dict):
        for k in list(data):
            if k.endswith(VOLUME_SUFFIX):
                del data[k]
        labels = {str(name): LabelStats(int(v.get("label", 0)), int(v.get("voxels", 0)), float(v.get("volume_ml", 0)))
                  for name, v in (data.pop("labels", None) or {}).items() if isinstance(v, dict)}
        return LabelMapResult(**base, extra=data, volumes_ml=volumes, labels=labels)
    return StudyResult(**base, extra=data)


def _plain(value: Any) -> Any:
    """Dataclasses (LabelStats) as dicts, for JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
