"""Training configuration of the demo models (the 3D liver model, the lesion classifier, the 2D slice model),
and where each model and its preprocessing parameters live."""

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
        return use_bf16(self.bf16)

    @property
    def model_dir(self) -> Path:
        return Path(self.models_dir) / MODEL_NAME


# --- classification_lesion_v1: "does this CT contain a liver lesion?" (study level) ---------------------

CLASSIFIER_NAME = "classification_lesion_v1"
CLASSIFIER_LABELS = ("no_lesion", "lesion")
CLASSIFIER_TRAIN_SEED_BASE = 20_000  # disjoint from every other seed range here
CLASSIFIER_HELDOUT_SEED_BASE = 60_000


@dataclass(frozen=True)
class ClassifierConfig:
    seed: int = 0
    phantoms: int = 120  # even seeds are drawn lesion-free, odd seeds with the generator's 0-4 lesions
    steps: int = 300
    batch: int = 12
    channels: tuple[int, ...] = (4, 16, 32, 64)  # one conv block + 2x max-pool per entry
    lr: float = 2e-3
    weight_decay: float = 1e-4
    shift_cells: int = 1  # augmentation: random translation by up to this many lesion-map cells (4 voxels)
    map_weight: float = 1.0  # weight of the auxiliary lesion-map loss (binary cross-entropy)
    map_pos_weight: float = 10.0  # lesion cells are rare
    resize_shape: tuple[int, int, int] = (64, 64, 64)
    hu_window: tuple[float, float] = (-200.0, 300.0)
    threshold: float = 0.5  # P(lesion) above which a study is called positive
    # 1: training phantoms on the scanner-like grids of the held-out ones. A 4x coarser in-plane grid (much
    # cheaper, and still finer than 64^3) gave a model that did well on such phantoms (AUC 0.71) and no better
    # than chance on full-resolution ones: it learnt the grid, not the lesions.
    coarsen: int = 1
    threads: int = 2
    bf16: str = "auto"
    cache_dir: str = ".cache/train-classifier"
    models_dir: str = "local/models"

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def model_dir(self) -> Path:
        return Path(self.models_dir) / CLASSIFIER_NAME


# --- segmentation_liver_2d_v1: slice-wise liver/lesion segmentation -------------------------------------

SLICES_NAME = "segmentation_liver_2d_v1"
SLICES_TRAIN_SEED_BASE = TRAIN_SEED_BASE  # the liver model's training phantoms (on another grid)
SLICES_HELDOUT_SEED_BASE = HELDOUT_SEED_BASE  # and its held-out ones, so that the two compare directly


@dataclass(frozen=True)
class SliceConfig:
    seed: int = 0
    phantoms: int = 48
    steps: int = 240
    batch: int = 8
    crop: int = 128  # the served window: [1, 128, 128]
    base_channels: int = 8
    levels: int = 4
    lr: float = 3e-3
    weight_decay: float = 1e-4
    class_weights: tuple[float, float, float] = (1.0, 1.0, 3.0)
    lesion_crop_fraction: float = 0.33  # slices through a lesion voxel, crops around it
    liver_crop_fraction: float = 0.33
    spacing_mm: tuple[float, float, float] = (2.5, 2.5, 0.0)  # 0: that axis keeps its own spacing
    hu_window: tuple[float, float] = (-200.0, 300.0)
    coarsen: int = 2  # training phantoms on a 2x coarser in-plane grid (still finer than 2.5 mm)
    threads: int = 2
    bf16: str = "auto"
    cache_dir: str = ".cache/train-slices"
    models_dir: str = "local/models"

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def model_dir(self) -> Path:
        return Path(self.models_dir) / SLICES_NAME


def use_bf16(setting: str) -> bool:
    """bfloat16 autocast: "on", "off", or "auto" (when the CPU has AMX)."""
    if setting != "auto":
        return setting == "on"
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
