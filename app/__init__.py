"""The segmentation operator: NIfTI in, Triton inference, label map + overlay + report out."""
