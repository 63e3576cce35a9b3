"""Train the demo liver/lesion model on synthetic phantoms (CPU, seeded) and export it to local/models.

    python -m kit.train.train [--steps N] [--phantoms N]      (make train runs this in .venv-train)
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

from kit.train.config import TRAIN_SEED_BASE, TrainConfig
from kit.train.data import Case, load_case, random_crop
from kit.train.export import export
from kit.train.unet import UNet3D


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted cross-entropy plus soft Dice over the foreground classes; also returns per-class hard Dice.
    ``logits`` (N, C, *spatial), ``target`` (N, *spatial): volumes or slices."""
    classes = logits.shape[1]
    ce = F.cross_entropy(logits, target, weight=weights)
    prob = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, classes).movedim(-1, 1).to(prob.dtype)
    dims = (0, *range(2, logits.ndim))
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    soft = (2 * inter + 1) / (denom + 1)
    loss = ce + (1 - soft[1:]).mean()
    with torch.no_grad():
        hard = F.one_hot(logits.argmax(1), classes).movedim(-1, 1).to(prob.dtype)
        h_inter = (hard * onehot).sum(dims)
        h_dice = (2 * h_inter + 1e-6) / (hard.sum(dims) + onehot.sum(dims) + 1e-6)
    return loss, h_dice


def seed_torch(seed: int, threads: int) -> np.random.Generator:
    """Seeded, deterministic, ``threads`` CPU threads (the machine is shared); the numpy generator for data."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)


def load_cases(cfg: TrainConfig) -> list[Case]:
    cases, t0 = [], time.perf_counter()
    for i in range(cfg.phantoms):
        cases.append(load_case(TRAIN_SEED_BASE + i, cfg.spacing_mm, cfg.hu_window, Path(cfg.cache_dir)))
        if (i + 1) % 8 == 0 or i + 1 == cfg.phantoms:
            print(f"  phantoms {i + 1}/{cfg.phantoms} ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    return cases


def lr_at(step: int, steps: int, lr: float) -> float:
    """Linear warm-up over the first 1/30 of the steps, then cosine down to 2 % of ``lr``."""
    warm = max(1, steps // 30)
    if step < warm:
        return lr * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * t)))


def progress(step: int, steps: int, t_start: float, losses: list[float], extra: str) -> None:
    per = (time.perf_counter() - t_start) / (step + 1)
    print(f"  step {step + 1}/{steps}  loss {np.mean(losses[-25:]):.3f}  {extra}  {per:.2f} s/step, "
          f"~{per * (steps - step - 1) / 60:.0f} min left", flush=True)


def train(cfg: TrainConfig) -> dict:
    rng = seed_torch(cfg.seed, cfg.threads)
    t0 = time.perf_counter()
    print(f"preparing {cfg.phantoms} training phantoms at {cfg.spacing_mm} mm, HU window {cfg.hu_window}",
          flush=True)
    cases = load_cases(cfg)
    net = UNet3D(base=cfg.base_channels, levels=cfg.levels)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    weights = torch.tensor(cfg.class_weights, dtype=torch.float32)
    bf16 = cfg.use_bf16()
    print(f"training a 3D U-Net ({sum(p.numel() for p in net.parameters())} parameters) for {cfg.steps} steps"
          f" on {cfg.batch}x{cfg.crop}^3 crops{' (bfloat16 autocast)' if bf16 else ''}", flush=True)
    t_train, running, dice_avg = time.perf_counter(), [], np.zeros(3)
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.steps, cfg.lr)
        crops = [random_crop(cases[int(rng.integers(len(cases)))], cfg.crop, rng,
                             cfg.lesion_crop_fraction, cfg.liver_crop_fraction) for _ in range(cfg.batch)]
        x = torch.from_numpy(np.stack([c[0] for c in crops]))
        y = torch.from_numpy(np.stack([c[1] for c in crops]).astype(np.int64))
        net.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        loss, dice = dice_ce_loss(logits.float(), y, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(float(loss.detach()))
        dice_avg = 0.95 * dice_avg + 0.05 * dice.numpy() if step else dice.numpy()
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            net.eval()
            export(net, cfg, {"checkpoint_step": step + 1, "config": cfg.to_dict()})
        if (step + 1) % 25 == 0 or step + 1 == cfg.steps:
            progress(step, cfg.steps, t_train, running, f"dice liver {dice_avg[1]:.2f} lesion {dice_avg[2]:.2f}  "
                     f"lr {lr_at(step, cfg.steps, cfg.lr):.1e}")
    net.eval()
    minutes = (time.perf_counter() - t0) / 60
    card = {"model": "3D U-Net, softmax output", "trained_on": "synthetic CT phantoms (kit.phantom)",
            "train_seeds": [TRAIN_SEED_BASE, TRAIN_SEED_BASE + cfg.phantoms - 1],
            "final_loss": float(np.mean(running[-25:])), "minutes": round(minutes, 1),
            "torch": torch.__version__, "bf16": bf16, "config": cfg.to_dict(),
            "note": "Not a clinical model: trained only on synthetic phantoms."}
    model_dir = export(net, cfg, card)
    print(f"done in {minutes:.1f} min: {model_dir}", flush=True)
    return card


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kit.train.train", description=__doc__)
    defaults = TrainConfig()
    ap.add_argument("--steps", type=int, default=defaults.steps)
    ap.add_argument("--phantoms", type=int, default=defaults.phantoms)
    ap.add_argument("--seed", type=int, default=defaults.seed)
    ap.add_argument("--models-dir", default=defaults.models_dir)
    ap.add_argument("--bf16", default=defaults.bf16, choices=["auto", "on", "off"])
    args = ap.parse_args(argv)
    cfg = dataclasses.replace(defaults, steps=args.steps, phantoms=args.phantoms, seed=args.seed,
                              models_dir=args.models_dir, bf16=args.bf16)
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
