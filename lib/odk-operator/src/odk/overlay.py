"""QA overlay: axial, coronal and sagittal slices through the labelled organ, labels coloured over the CT.

Slices are shown in the radiological convention (patient's right on the image's left, anterior and
superior up) with the true aspect ratio of the voxels; each panel's edges carry their anatomical
directions (R/L, A/P, S/I), and a legend under the panels names the colour of each class.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

# Label k > 0 gets PALETTE[(k - 1) % len] (colour_of): the first classes green and red (the demo model's liver and
# lesion). The one palette of the kit: the results viewer (kit/view) colours its label maps with it too.
PALETTE = ((40, 200, 70), (235, 40, 40), (40, 120, 235), (240, 200, 30), (200, 60, 220), (30, 210, 210))
ALPHA = 0.45
DISPLAY_WINDOW = (-160.0, 240.0)  # abdomen soft-tissue window (W400/L40)
PANEL_PX = 320
LEGEND_PX = 18
DIRECTION_COLOUR = (255, 220, 0)


def colour_of(label: int) -> tuple[int, int, int]:
    """The colour of label ``label`` > 0 (label 0, the background, is never coloured)."""
    return PALETTE[(label - 1) % len(PALETTE)]


def _grey(ct: np.ndarray) -> np.ndarray:
    lo, hi = DISPLAY_WINDOW
    g = (np.clip(ct.astype(np.float32), lo, hi) - lo) * (255.0 / (hi - lo))
    return g.astype(np.uint8)


def _blend(ct: np.ndarray, labels: np.ndarray) -> np.ndarray:
    grey = _grey(ct)
    rgb = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
    for label in range(1, int(labels.max(initial=0)) + 1):
        colour = colour_of(label)
        mask = labels == label
        rgb[mask] = (1 - ALPHA) * rgb[mask] + ALPHA * np.asarray(colour, dtype=np.float32)
    return rgb.astype(np.uint8)


def _panel(rgb: np.ndarray, px_w: float, px_h: float, title: str, edges: str) -> Image.Image:
    """``rgb`` is (rows, cols, 3); px_w/px_h the physical size of a column/row in mm; ``edges`` the patient
    directions at the image's left, right, top and bottom (e.g. "RLAP")."""
    h_mm, w_mm = rgb.shape[0] * px_h, rgb.shape[1] * px_w
    scale = PANEL_PX / max(h_mm, w_mm)
    size = (max(1, round(w_mm * scale)), max(1, round(h_mm * scale)))
    img = Image.fromarray(rgb, "RGB").resize(size, Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (PANEL_PX, PANEL_PX + 18), (0, 0, 0))
    canvas.paste(img, ((PANEL_PX - size[0]) // 2, 18 + (PANEL_PX - size[1]) // 2))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), title, fill=(255, 255, 255))
    mid_y, mid_x = 18 + PANEL_PX // 2, PANEL_PX // 2
    left, right, top, bottom = edges
    draw.text((3, mid_y - 5), left, fill=DIRECTION_COLOUR)
    draw.text((PANEL_PX - 9, mid_y - 5), right, fill=DIRECTION_COLOUR)
    draw.text((mid_x - 3, 20), top, fill=DIRECTION_COLOUR)
    draw.text((mid_x - 3, PANEL_PX + 18 - 12), bottom, fill=DIRECTION_COLOUR)
    return canvas


def _legend(width: int, names: Sequence[str]) -> Image.Image:
    """One strip: a square of each class's colour (unblended) and ``<label> <name>``, label 1 first."""
    strip = Image.new("RGB", (width, LEGEND_PX), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    x = 4
    for label, name in enumerate(names, start=1):
        colour = colour_of(label)
        draw.rectangle((x, 4, x + 10, 14), fill=colour)
        text = f"{label} {name}"
        draw.text((x + 14, 4), text, fill=(255, 255, 255))
        x += 14 + round(draw.textlength(text)) + 14
    return strip


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
           title: str = "", names: Sequence[str] = ()) -> bytes:
    """PNG bytes of three orthogonal slices through the labels' centre (or the volume's centre); ``names``,
    the classes of labels 1, 2, ..., gives the legend (none without names)."""
    i, j, k = centre_of(labels_ras)
    sx, sy, sz = spacing_ras
    # Axial (k): rows = anterior->posterior, cols = patient right->left (RAS x decreasing).
    axial = _blend(ct_ras[:, :, k], labels_ras[:, :, k]).transpose(1, 0, 2)[::-1, ::-1]
    # Coronal (j): rows = superior->inferior, cols = right->left.
    coronal = _blend(ct_ras[:, j, :], labels_ras[:, j, :]).transpose(1, 0, 2)[::-1, ::-1]
    # Sagittal (i): rows = superior->inferior, cols = anterior->posterior.
    sagittal = _blend(ct_ras[i, :, :], labels_ras[i, :, :]).transpose(1, 0, 2)[::-1, ::-1]
    panels = [_panel(axial, sx, sy, f"axial {k}", "RLAP"), _panel(coronal, sx, sz, f"coronal {j}", "RLSI"),
              _panel(sagittal, sy, sz, f"sagittal {i}", "APSI")]
    top = 16 if title else 0
    sheet = Image.new("RGB", (PANEL_PX * 3, top + PANEL_PX + 18 + (LEGEND_PX if names else 0)), (0, 0, 0))
    for n, p in enumerate(panels):
        sheet.paste(p, (n * PANEL_PX, top))
    if names:
        sheet.paste(_legend(PANEL_PX * 3, names), (0, top + PANEL_PX + 18))
    if title:
        ImageDraw.Draw(sheet).text((4, 2), title, fill=(255, 255, 0))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()
