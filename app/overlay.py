"""QA overlay: axial, coronal and sagittal slices through the liver, labels coloured over the CT.

Slices are shown in the radiological convention (patient's right on the image's left, anterior and
superior up) with the true aspect ratio of the voxels.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

# Label k > 0 gets PALETTE[(k - 1) % len]: the first classes green and red (the demo model's liver and lesion).
PALETTE = ((40, 200, 70), (235, 40, 40), (40, 120, 235), (240, 200, 30), (200, 60, 220), (30, 210, 210))
ALPHA = 0.45
DISPLAY_WINDOW = (-160.0, 240.0)  # abdomen soft-tissue window (W400/L40)
PANEL_PX = 320


def _grey(ct: np.ndarray) -> np.ndarray:
    lo, hi = DISPLAY_WINDOW
    g = (np.clip(ct.astype(np.float32), lo, hi) - lo) * (255.0 / (hi - lo))
    return g.astype(np.uint8)


def _blend(ct: np.ndarray, labels: np.ndarray) -> np.ndarray:
    grey = _grey(ct)
    rgb = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
    for label in range(1, int(labels.max(initial=0)) + 1):
        colour = PALETTE[(label - 1) % len(PALETTE)]
        mask = labels == label
        rgb[mask] = (1 - ALPHA) * rgb[mask] + ALPHA * np.asarray(colour, dtype=np.float32)
    return rgb.astype(np.uint8)


def _panel(rgb: np.ndarray, px_w: float, px_h: float, title: str) -> Image.Image:
    """``rgb`` is (rows, cols, 3); px_w/px_h the physical size of a column/row in mm."""
    h_mm, w_mm = rgb.shape[0] * px_h, rgb.shape[1] * px_w
    scale = PANEL_PX / max(h_mm, w_mm)
    size = (max(1, round(w_mm * scale)), max(1, round(h_mm * scale)))
    img = Image.fromarray(rgb, "RGB").resize(size, Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (PANEL_PX, PANEL_PX + 18), (0, 0, 0))
    canvas.paste(img, ((PANEL_PX - size[0]) // 2, 18 + (PANEL_PX - size[1]) // 2))
    ImageDraw.Draw(canvas).text((4, 3), title, fill=(255, 255, 255))
    return canvas


def centre_of(labels: np.ndarray) -> tuple[int, int, int]:
    """Centre of mass of the labelled voxels (the volume's centre when there are none), cheaply."""
    organ = labels > 0
    centre = []
    for axis in range(3):
        profile = organ.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.int64)
        total = int(profile.sum())
        if total == 0:
            return (labels.shape[0] // 2, labels.shape[1] // 2, labels.shape[2] // 2)
        centre.append(round(float((profile * np.arange(len(profile))).sum()) / total))
    return (centre[0], centre[1], centre[2])


def render(ct_ras: np.ndarray, labels_ras: np.ndarray, spacing_ras: tuple[float, float, float],
           title: str = "") -> bytes:
    """PNG bytes of three orthogonal slices through the liver's centre (or the volume's centre)."""
    i, j, k = centre_of(labels_ras)
    sx, sy, sz = spacing_ras
    # Axial (k): rows = anterior->posterior, cols = patient right->left (RAS x decreasing).
    axial = _blend(ct_ras[:, :, k], labels_ras[:, :, k]).transpose(1, 0, 2)[::-1, ::-1]
    # Coronal (j): rows = superior->inferior, cols = right->left.
    coronal = _blend(ct_ras[:, j, :], labels_ras[:, j, :]).transpose(1, 0, 2)[::-1, ::-1]
    # Sagittal (i): rows = superior->inferior, cols = anterior->posterior.
    sagittal = _blend(ct_ras[i, :, :], labels_ras[i, :, :]).transpose(1, 0, 2)[::-1, ::-1]
    panels = [_panel(axial, sx, sy, f"axial {k}"), _panel(coronal, sx, sz, f"coronal {j}"),
              _panel(sagittal, sy, sz, f"sagittal {i}")]
    sheet = Image.new("RGB", (PANEL_PX * 3, PANEL_PX + 18 + (16 if title else 0)), (0, 0, 0))
    for n, p in enumerate(panels):
        sheet.paste(p, (n * PANEL_PX, 16 if title else 0))
    if title:
        ImageDraw.Draw(sheet).text((4, 2), title, fill=(255, 255, 0))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()
