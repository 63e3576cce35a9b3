"""The QA overlay: radiological convention in each panel, and a legend naming the colour of each class."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from odk import overlay


def picture(labels: np.ndarray, names: tuple[str, ...] = (), title: str = "t") -> np.ndarray:
    ct = np.full(labels.shape, 40, dtype=np.int16)
    png = overlay.render(ct, labels, (1.0, 1.0, 1.0), title=title, names=names)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def coloured(rgb: np.ndarray) -> np.ndarray:
    """Where label 1's green shows over the grey CT (not the yellow direction letters)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (g > r + 30) & (g > b + 30)


def test_the_patients_right_anterior_and_top_are_where_a_radiologist_expects_them() -> None:
    labels = np.zeros((64, 64, 64), dtype=np.uint8)
    labels[44:60, 40:60, 30:34] = 1  # patient's right (RAS +x), anterior (+y); a thin axial slab
    rgb = picture(labels)
    top = 16 + 18  # the title line, then the panel's own title line
    axial = coloured(rgb[top:top + overlay.PANEL_PX, : overlay.PANEL_PX])
    rows, cols = np.nonzero(axial)
    assert cols.size and cols.max() < overlay.PANEL_PX // 2, "patient's right on the image's left"
    assert rows.max() < overlay.PANEL_PX // 2, "anterior up"
    labels[:] = 0
    labels[20:40, 20:40, 50:60] = 1  # superior
    coronal = coloured(picture(labels)[top:top + overlay.PANEL_PX, overlay.PANEL_PX: 2 * overlay.PANEL_PX])
    assert np.nonzero(coronal)[0].max() < overlay.PANEL_PX // 2, "superior up"


def test_the_legend_shows_each_class_colour_unblended_and_only_with_names() -> None:
    labels = np.zeros((32, 32, 32), dtype=np.uint8)
    labels[8:24, 8:24, 8:24] = 1
    labels[12:16, 12:16, 12:16] = 2
    plain = picture(labels)
    named = picture(labels, ("spleen", "cyst", "kidney"))
    assert named.shape[0] == plain.shape[0] + overlay.LEGEND_PX
    strip = named[-overlay.LEGEND_PX:].reshape(-1, 3)
    present = {tuple(c) for c in np.unique(strip, axis=0)}
    for k in range(3):  # every class of the model, also one absent from this study
        assert overlay.PALETTE[k] in present, f"class {k + 1} missing from the legend"
    assert overlay.PALETTE[3] not in present
