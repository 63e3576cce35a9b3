"""Synthetic abdominal CT phantoms with ground-truth liver and lesion labels.

    from kit.phantom import make_phantom, write
    p = make_phantom(seed=7, shape=(256, 256, 80), spacing=(0.8, 0.8, 2.5))
    write(p, "ct.nii.gz", labels_path="truth.nii.gz", orientation="LPS")
"""

from kit.phantom.io import reorient, write
from kit.phantom.parts import LABEL_NAMES, LESION, LIVER
from kit.phantom.render import Phantom, make_phantom

__all__ = ["LABEL_NAMES", "LESION", "LIVER", "Phantom", "make_phantom", "reorient", "write"]
