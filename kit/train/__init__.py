"""Training, export and evaluation of the demo liver/lesion model (PyTorch only in kit.train.train/export)."""
