"""Train the slice-wise liver/lesion model (segmentation_liver_2d_v1) on synthetic phantoms and export it.

Input: one 128x128 window of an axial slice (the last canonical RAS+ axis, S) of the CT resampled in-plane to
2.5 mm with the slice spacing kept (``spacing_mm`` "2.5,2.5,0"), HU window -200..300 -> 0..1; output:
background/liver/lesion probabilities for that window (softmax inside the graph). Trained on random
128x128 crops of axial slices (a third through a lesion, a third through the liver), Dice + weighted
cross-entropy, as the 3D model.

    python -m kit.train.slices [--steps N] [--phantoms N]   (make train TRAIN_MODEL=slices)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kit.train.config import LABELS, SLICES_NAME, SLICES_TRAIN_SEED_BASE, SliceConfig, use_bf16
from kit.train.data import Case, load_case, random_crop
from kit.train.export import build_config, csv, export_entry
from kit.train.train import dice_ce_loss, lr_at, progress, seed_torch
from kit.train.unet import UNet, WithSoftmax

MAX_BATCH_SIZE = 16


def load_cases(cfg: SliceConfig) -> list[Case]:
    cases, t0 = [], time.perf_counter()
    for i in range(cfg.phantoms):
        cases.append(load_case(SLICES_TRAIN_SEED_BASE + i, cfg.spacing_mm, cfg.hu_window, Path(cfg.cache_dir),
                               cfg.coarsen))
        if (i + 1) % 8 == 0 or i + 1 == cfg.phantoms:
            print(f"  phantoms {i + 1}/{cfg.phantoms} ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    return cases


def slice_batch(cases: list[Case], cfg: SliceConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, crop, crop) images and (N, crop, crop) labels: windows of axial slices."""
    crops = [random_crop(cases[int(rng.integers(len(cases)))], (cfg.crop, cfg.crop, 1), rng,
                         cfg.lesion_crop_fraction, cfg.liver_crop_fraction) for _ in range(cfg.batch)]
    return np.stack([c[0][..., 0] for c in crops]), np.stack([c[1][..., 0] for c in crops])


def config(cfg: SliceConfig):
    roi = [cfg.crop, cfg.crop]
    return build_config(SLICES_NAME, [1, *roi], [len(LABELS), *roi], MAX_BATCH_SIZE, {
        "spacing_mm": csv(cfg.spacing_mm),
        "hu_window": csv(cfg.hu_window),
        "axes": "RAS",
        "labels": ",".join(LABELS),
        "label_nesting": "organ",
        "output_activation": "softmax",
    })


def train(cfg: SliceConfig) -> dict:
    rng = seed_torch(cfg.seed, cfg.threads)
    t0 = time.perf_counter()
    print(f"preparing {cfg.phantoms} training phantoms at {cfg.spacing_mm} mm (0: kept), HU window "
          f"{cfg.hu_window}", flush=True)
    cases = load_cases(cfg)
    net = UNet(base=cfg.base_channels, levels=cfg.levels, dims=2)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    weights = torch.tensor(cfg.class_weights, dtype=torch.float32)
    bf16 = use_bf16(cfg.bf16)
    print(f"training a 2D U-Net ({sum(p.numel() for p in net.parameters())} parameters) for {cfg.steps} steps"
          f" on {cfg.batch}x{cfg.crop}^2 slice crops{' (bfloat16 autocast)' if bf16 else ''}", flush=True)
    t_train, running, dice_avg = time.perf_counter(), [], np.zeros(3)
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.steps, cfg.lr)
        images, labels = slice_batch(cases, cfg, rng)
        x, y = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
        net.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        loss, dice = dice_ce_loss(logits.float(), y, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(float(loss.detach()))
        dice_avg = 0.95 * dice_avg + 0.05 * dice.numpy() if step else dice.numpy()
        if (step + 1) % 25 == 0 or step + 1 == cfg.steps:
            progress(step, cfg.steps, t_train, running, f"dice liver {dice_avg[1]:.2f} lesion {dice_avg[2]:.2f}  "
                     f"lr {lr_at(step, cfg.steps, cfg.lr):.1e}")
    net.eval()
    minutes = (time.perf_counter() - t0) / 60
    card = {"model": "2D U-Net on axial slices, softmax output", "trained_on": "synthetic CT phantoms (kit.phantom)",
            "train_seeds": [SLICES_TRAIN_SEED_BASE, SLICES_TRAIN_SEED_BASE + cfg.phantoms - 1],
            "final_loss": float(np.mean(running[-25:])), "minutes": round(minutes, 1),
            "torch": torch.__version__, "bf16": bf16, "config": cfg.to_dict(),
            "note": "Not a clinical model: trained only on synthetic phantoms."}
    model_dir = export_entry(WithSoftmax(net), (1, cfg.crop, cfg.crop), config(cfg), cfg.model_dir, card)
    print(f"done in {minutes:.1f} min: {model_dir}", flush=True)
    return card


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kit.train.slices", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = SliceConfig()
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
