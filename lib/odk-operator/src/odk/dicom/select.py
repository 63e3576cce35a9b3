"""Which image series the reader turns into volumes: simple rules from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..config import ConfigError
from .scan import Series


@dataclass(frozen=True)
class SelectionRules:
    modalities: tuple[str, ...] = ("CT",)
    min_slices: int = 16
    description: re.Pattern[str] | None = None  # searched in SeriesDescription (case-insensitive)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SelectionRules:
        """DICOM_SELECT_MODALITY (comma-separated, default CT), DICOM_SELECT_MIN_SLICES (default 16),
        DICOM_SELECT_DESCRIPTION (a regular expression; default: any)."""
        raw = env.get("DICOM_SELECT_MODALITY", "CT")
        modalities = tuple(m.strip().upper() for m in raw.split(",") if m.strip())
        if not modalities:
            raise ConfigError("DICOM_SELECT_MODALITY is empty; give modalities such as CT or CT,MR")
        try:
            min_slices = int(env.get("DICOM_SELECT_MIN_SLICES", "16"))
        except ValueError:
            bad = env["DICOM_SELECT_MIN_SLICES"]
            raise ConfigError(f"DICOM_SELECT_MIN_SLICES={bad!r} is not a whole number") from None
        if min_slices < 2:
            raise ConfigError(f"DICOM_SELECT_MIN_SLICES={min_slices}: a volume needs at least 2 slices")
        pattern = env.get("DICOM_SELECT_DESCRIPTION", "")
        try:
            description = re.compile(pattern, re.IGNORECASE) if pattern else None
        except re.error as exc:
            raise ConfigError(f"DICOM_SELECT_DESCRIPTION={pattern!r} is not a regular expression ({exc})") from None
        return cls(modalities=modalities, min_slices=min_slices, description=description)

    def reason_to_skip(self, series: Series) -> str | None:
        """None when the series is selected, else why not."""
        if series.modality.upper() not in self.modalities:
            return f"modality {series.modality or '(none)'} is not {'/'.join(self.modalities)} (DICOM_SELECT_MODALITY)"
        if len(series.instances) < self.min_slices:
            return f"{len(series.instances)} image(s), fewer than {self.min_slices} (DICOM_SELECT_MIN_SLICES)"
        if self.description is not None and not self.description.search(series.description):
            return (f"description '{series.description}' does not match '{self.description.pattern}'"
                    " (DICOM_SELECT_DESCRIPTION)")
        return None
