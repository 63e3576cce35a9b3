"""A label map on a series' grid -> a BINARY DICOM SEG of that series (highdicom): segment n = label n."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from .geometry import SeriesGeometry

if TYPE_CHECKING:  # highdicom (~0.3 s to import) is imported by the functions that build a SEG
    import highdicom as hd

# Label names that are abnormal structures rather than anatomy (segmented property category).
ABNORMAL = frozenset({"lesion", "tumor", "tumour", "neoplasm", "nodule", "mass", "metastasis", "cyst"})
SOFTWARE = "ODK dicom-seg-writer 0.1.0"


class SegError(ValueError):
    """This label map cannot become a SEG of its series; the message says why."""


@dataclass(frozen=True)
class Algorithm:
    """The algorithm a DICOM SEG names: its name, version and class names (index = label value).

    >>> Algorithm("segmentation_liver_v1", "1", ("background", "liver", "lesion"))
    """

    name: str
    version: str
    labels: tuple[str, ...]  # index = label value; 0 is the background


def property_codes(label: str) -> tuple[hd.sr.CodedConcept, hd.sr.CodedConcept]:
    """(category, type) SNOMED CT codes for a label name such as 'liver' or 'lesion'."""
    camel = "".join(part.capitalize() for part in label.replace("-", " ").replace("_", " ").split())
    category = codes.SCT.MorphologicallyAbnormalStructure if label.lower() in ABNORMAL else codes.SCT.Organ
    try:
        kind = getattr(codes.SCT, camel)
    except AttributeError:
        category, kind = codes.SCT.Tissue, codes.SCT.Tissue  # not a known SNOMED CT concept: generic tissue
    return category, kind


def segment_descriptions(algo: Algorithm) -> list[hd.seg.SegmentDescription]:
    import highdicom as hd

    identification = hd.AlgorithmIdentificationSequence(
        name=algo.name, family=codes.cid7162.ArtificialIntelligence, version=algo.version)
    out = []
    for number, label in enumerate(algo.labels):
        if number == 0:
            continue
        category, kind = property_codes(label)
        out.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=label, segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=identification))
    return out


def labels_on_series(img: nib.Nifti1Image, geom: SeriesGeometry, frame_uid: str) -> hd.Volume:
    """The label map as a highdicom volume whose frames follow the series' slices (per-frame references)."""
    import highdicom as hd

    series_geom = hd.VolumeGeometry(geom.highdicom_affine(), (geom.n, geom.rows, geom.columns),
                                    coordinate_system="PATIENT", frame_of_reference_uid=frame_uid)
    vol = hd.Volume.from_nibabel(img, frame_of_reference_uid=frame_uid)
    vol = vol.with_array(np.asarray(vol.array).astype(np.uint8))
    try:
        return vol.match_geometry(series_geom, tol=1e-3)
    except (ValueError, RuntimeError) as exc:
        raise SegError(f"the label map is not on the grid of its series ({exc})") from exc


def seg_uids(sources: Sequence[pydicom.Dataset], labels: np.ndarray, algo: Algorithm) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of the SEG, derived rather than random: the series from the source
    series and the model, so that a re-run of the same series (more instances arrived, a retry) is a new instance
    of the same SEG series that replaces the earlier one; the instance from the source instances and the labels,
    so that the same result sent again is the same instance (a PACS keeps it once)."""
    series_uid = str(sources[0].SeriesInstanceUID)
    series = generate_uid(entropy_srcs=["odk-seg-series", series_uid, algo.name])
    sops = sorted(str(ds.SOPInstanceUID) for ds in sources)
    instance = generate_uid(entropy_srcs=["odk-seg-instance", series, algo.version, *sops,
                                   hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest()])
    return series, instance


def build_seg(sources: Sequence[pydicom.Dataset], labels: hd.Volume, algo: Algorithm, series_number: int,
              series_description: str) -> hd.seg.Segmentation:
    import highdicom as hd

    counts = np.bincount(np.asarray(labels.array).ravel())  # uint8: at most 256 bins, far faster than unique
    unknown = [v for v in np.flatnonzero(counts).tolist() if v >= len(algo.labels)]
    if unknown:
        raise SegError(f"label value(s) {unknown} have no name in the model's labels {list(algo.labels)}")
    series_uid, instance_uid = seg_uids(sources, np.asarray(labels.array), algo)
    seg = hd.seg.Segmentation(
        source_images=list(sources), pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(algo), series_instance_uid=series_uid,
        series_number=series_number, sop_instance_uid=instance_uid, instance_number=1, manufacturer="ODK",
        manufacturer_model_name=algo.name, software_versions=SOFTWARE,
        device_serial_number="0", series_description=series_description[:64], content_label="SEGMENTATION",
        content_description=f"{algo.name} v{algo.version}"[:64], content_creator_name="ODK^Operator")
    return seg
