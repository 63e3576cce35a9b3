"""The kit's operators, each one file built on the operator library ``odk``: ``python -u -m app`` (segmentation,
app/main.py), the DICOM operators (app/dicom/) and the export operator (app/export.py)."""
