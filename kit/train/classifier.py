"""Train the study-level lesion classifier (classification_lesion_v1) on synthetic phantoms and export it.

Input: the whole CT in canonical RAS+, linearly resized to 64^3 voxels, HU window -200..300 -> 0..1
(kit.train.data.prepare_resized); output: [P(no lesion), P(lesion)] (softmax inside the graph).
Balanced classes: even training seeds are drawn lesion-free, odd seeds with the generator's 0-4 lesions;
the label is whether the phantom's truth has a lesion voxel. Training also asks the network for a coarse
lesion map (16^3 cells, from the truth), which tells it where to look; the exported graph gives the class
probabilities only.

    python -m kit.train.classifier [--steps N] [--phantoms N]   (make train TRAIN_MODEL=classifier)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kit.train.config import CLASSIFIER_LABELS, CLASSIFIER_NAME, CLASSIFIER_TRAIN_SEED_BASE, ClassifierConfig, use_bf16
from kit.train.data import LESION_MAP_FACTOR, StudyCase, load_study_case
from kit.train.export import build_config, csv, export_entry
from kit.train.train import lr_at, progress, seed_torch
from kit.train.unet import WithSoftmax

MAX_BATCH_SIZE = 8


class LesionCNN(nn.Module):
    """Conv-BN-ReLU + 2x max-pool per entry of ``channels``, then global average and global max pooling
    (concatenated: a small lesion is a local finding that an average alone dilutes) and a linear layer.

    For training only, a 1x1 convolution reads a lesion map off the features after ``map_block`` + 1 blocks
    (before their pooling: 16^3 cells for a 64^3 input); the exported graph (``forward``) does not have it.
    """

    def __init__(self, channels: tuple[int, ...] = (4, 16, 32, 64), classes: int = 2, map_block: int = 2) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        c_in = 1
        for c in channels:
            self.blocks.append(nn.Sequential(nn.Conv3d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm3d(c),
                                             nn.ReLU(inplace=True)))
            c_in = c
        self.pool = nn.MaxPool3d(2)
        self.head = nn.Linear(2 * c_in, classes)
        self.map_block = map_block
        self.lesion_map = nn.Conv3d(channels[map_block], 1, 1)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tap = x
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self.map_block:
                tap = x
            x = self.pool(x)
        pooled = torch.cat([x.mean(dim=(2, 3, 4)), x.amax(dim=(2, 3, 4))], dim=1)
        return self.head(pooled), tap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x)[0]

    def forward_with_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and lesion-map logits (N, 1, cells...)."""
        logits, tap = self._features(x)
        return logits, self.lesion_map(tap)


def train_seeds(cfg: ClassifierConfig) -> list[int]:
    return list(range(CLASSIFIER_TRAIN_SEED_BASE, CLASSIFIER_TRAIN_SEED_BASE + cfg.phantoms))


def load_cases(cfg: ClassifierConfig) -> list[StudyCase]:
    cases, t0 = [], time.perf_counter()
    for i, seed in enumerate(train_seeds(cfg)):
        cases.append(load_study_case(seed, cfg.resize_shape, cfg.hu_window, Path(cfg.cache_dir), cfg.coarsen))
        if (i + 1) % 40 == 0 or i + 1 == cfg.phantoms:
            print(f"  phantoms {i + 1}/{cfg.phantoms} ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    return cases


def augment(case: StudyCase, rng: np.random.Generator, shift_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """A random translation of the image by whole lesion-map cells (up to ``shift_cells`` per axis; image
    edges replicated, the map padded with no lesion), so that image and map stay aligned."""
    if shift_cells <= 0:
        return case.image, case.lesion_map
    f = LESION_MAP_FACTOR
    d = rng.integers(-shift_cells, shift_cells + 1, size=3)
    s = shift_cells
    image = np.pad(case.image, s * f, mode="edge")
    cells = np.pad(case.lesion_map, s)
    im_sl = tuple(slice(s * f + int(k) * f, s * f + int(k) * f + n) for k, n in zip(d, case.image.shape, strict=True))
    map_sl = tuple(slice(s + int(k), s + int(k) + n) for k, n in zip(d, case.lesion_map.shape, strict=True))
    return image[im_sl], cells[map_sl]


def balanced_batch(cases: list[StudyCase], batch: int, rng: np.random.Generator) -> list[StudyCase]:
    """Half positive, half negative studies."""
    pos = [c for c in cases if c.label]
    neg = [c for c in cases if not c.label]
    return [pos[int(rng.integers(len(pos)))] if k % 2 else neg[int(rng.integers(len(neg)))] for k in range(batch)]


def config(cfg: ClassifierConfig):
    return build_config(CLASSIFIER_NAME, [1, *cfg.resize_shape], [len(CLASSIFIER_LABELS)], MAX_BATCH_SIZE, {
        "resize_shape": csv(cfg.resize_shape),
        "hu_window": csv(cfg.hu_window),
        "axes": "RAS",
        "labels": ",".join(CLASSIFIER_LABELS),
        "output_activation": "softmax",
        "threshold": f"{cfg.threshold:g}",
    })


def train(cfg: ClassifierConfig) -> dict:
    rng = seed_torch(cfg.seed, cfg.threads)
    t0 = time.perf_counter()
    print(f"preparing {cfg.phantoms} classifier phantoms (resized to {cfg.resize_shape})", flush=True)
    cases = load_cases(cfg)
    positives = sum(c.label for c in cases)
    print(f"  {positives} with lesions, {len(cases) - positives} without", flush=True)
    net = LesionCNN(cfg.channels)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bf16 = use_bf16(cfg.bf16)
    print(f"training a 3D CNN ({sum(p.numel() for p in net.parameters())} parameters) for {cfg.steps} steps, "
          f"batch {cfg.batch}{' (bfloat16 autocast)' if bf16 else ''}", flush=True)
    t_train, running, acc = time.perf_counter(), [], []
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.steps, cfg.lr)
        batch = balanced_batch(cases, cfg.batch, rng)
        pairs = [augment(c, rng, cfg.shift_cells) for c in batch]
        x = torch.from_numpy(np.stack([im[None] for im, _ in pairs]))
        cells = torch.from_numpy(np.stack([m[None] for _, m in pairs]).astype(np.float32))
        y = torch.tensor([c.label for c in batch], dtype=torch.int64)
        net.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, map_logits = net.forward_with_map(x)
        loss = F.cross_entropy(logits.float(), y) + cfg.map_weight * F.binary_cross_entropy_with_logits(
            map_logits.float(), cells, pos_weight=torch.tensor(cfg.map_pos_weight))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(float(loss.detach()))
        acc.append(float((logits.argmax(1) == y).float().mean()))
        if (step + 1) % 25 == 0 or step + 1 == cfg.steps:
            progress(step, cfg.steps, t_train, running, f"batch accuracy {np.mean(acc[-25:]):.2f}  "
                     f"lr {lr_at(step, cfg.steps, cfg.lr):.1e}")
    net.eval()
    minutes = (time.perf_counter() - t0) / 60
    seeds = train_seeds(cfg)
    card = {"model": "3D CNN study classifier, softmax output", "trained_on": "synthetic CT phantoms (kit.phantom)",
            "train_seeds": [seeds[0], seeds[-1]], "train_positives": positives,
            "train_negatives": len(cases) - positives,
            "final_loss": float(np.mean(running[-25:])), "minutes": round(minutes, 1),
            "torch": torch.__version__, "bf16": bf16, "config": cfg.to_dict(),
            "note": "Not a clinical model: trained only on synthetic phantoms."}
    model_dir = export_entry(WithSoftmax(net), (1, *cfg.resize_shape), config(cfg), cfg.model_dir, card)
    print(f"done in {minutes:.1f} min: {model_dir}", flush=True)
    return card


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kit.train.classifier", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = ClassifierConfig()
    ap.add_argument("--steps", type=int, default=defaults.steps)
    ap.add_argument("--phantoms", type=int, default=defaults.phantoms)
    ap.add_argument("--seed", type=int, default=defaults.seed)
    ap.add_argument("--models-dir", default=defaults.models_dir)
    ap.add_argument("--bf16", default=defaults.bf16, choices=["auto", "on", "off"])
    args = ap.parse_args(argv)
    train(dataclasses.replace(defaults, steps=args.steps, phantoms=args.phantoms, seed=args.seed,
                              models_dir=args.models_dir, bf16=args.bf16))
    return 0


if __name__ == "__main__":
    sys.exit(main())
