"""DICOM operators of the kit, in the same image as the segmentation operator.

- ``python -u -m app.dicom.reader``: DICOM series -> one NIfTI volume (RAS, HU) + JSON sidecar per series.
- ``python -u -m app.dicom.segwriter``: label maps + their source series -> one DICOM SEG per series.
- ``python -u -m app.dicom.register``: C-STORE of every DICOM object of the input to DICOM_DESTINATION.
"""
