"""Training configuration of the demo model, and where the model and its preprocessing parameters live."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

MODEL_NAME = "segmentation_liver_v1"
ROI = (96, 96, 96)
LABELS = ("background", "liver", "lesion")
TRAIN_SEED_BASE = 10_000  # training phantoms use seeds TRAIN_SEED_BASE + i
HELDOUT_SEED_BASE = 50_000  # evaluation phantoms: never used in training


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    phantoms: int = 72  # training phantoms (seeds TRAIN_SEED_BASE ..)
    steps: int = 2000
    checkpoint_every: int = 250  # export the model so far every N steps (a usable model early on)
    batch: int = 2
    crop: int = 64
    base_channels: int = 8
    levels: int = 4
    lr: float = 3e-3
    class_weights: tuple[float, float, float] = (1.0, 1.0, 3.0)  # cross-entropy weights: lesions are rare
    weight_decay: float = 1e-4
    lesion_crop_fraction: float = 0.33  # crops centred on a lesion voxel (when the phantom has one)
    liver_crop_fraction: float = 0.33  # crops centred on a liver voxel
    spacing_mm: tuple[float, float, float] = (2.5, 2.5, 2.5)
    hu_window: tuple[float, float] = (-200.0, 300.0)
    threads: int = 2
    bf16: str = "auto"  # bfloat16 autocast for the convolutions: "auto" (when the CPU has AMX), "on", "off"
    cache_dir: str = ".cache/train-phantoms"
    models_dir: str = "local/models"

    def to_dict(self) -> dict:
        return asdict(self)

    def use_bf16(self) -> bool:
        if self.bf16 != "auto":
            return self.bf16 == "on"
        try:
            return "amx_bf16" in Path("/proc/cpuinfo").read_text()
        except OSError:
            return False

    @property
    def model_dir(self) -> Path:
        return Path(self.models_dir) / MODEL_NAME
