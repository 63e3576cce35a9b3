"""odk.Study.companion (a file an upstream operator wrote for a study, in another input entry) and odk.number
(an operator's own numeric setting from the environment)."""

from __future__ import annotations

from pathlib import Path

import pytest

import odk


def test_companion_is_found_in_the_same_sub_folder_of_another_entry(tmp_path: Path) -> None:
    payload, upstream, out = tmp_path / "payload", tmp_path / "seg", tmp_path / "out"
    (payload / "a").mkdir(parents=True)
    (payload / "a" / "ct.nii.gz").write_bytes(b"not read here")
    (payload / "b.nii").write_bytes(b"not read here")
    (upstream / "a").mkdir(parents=True)
    (upstream / "a" / "ct.json").write_text("{}")
    (upstream / "b.json").symlink_to(tmp_path / "elsewhere.json")  # a link out of its entry: never used
    (tmp_path / "elsewhere.json").write_text("{}")
    summary = odk.RunSummary()
    studies = {s.name: s for s in odk.find_studies([payload, upstream], out, summary)}
    assert sorted(studies) == ["b", "ct"]
    assert studies["ct"].companion(".json") == upstream / "a" / "ct.json"
    assert studies["ct"].companion("_seg.nii.gz") is None
    assert studies["b"].companion(".json") is None
    assert studies["b"].companion(".nii") is None, "never the study itself"
    assert odk.Study(payload / "b.nii", out).companion(".json") is None, "a study made by hand has no entries"


def test_number_reads_a_bounded_setting() -> None:
    assert odk.number({}, "ODK_THRESHOLD", 0.5, maximum=1.0) == 0.5
    assert odk.number({"ODK_THRESHOLD": " 0.25 "}, "ODK_THRESHOLD", 0.5, maximum=1.0) == 0.25
    for bad in ("1.5", "nan", "-0.1", "high"):
        with pytest.raises(odk.ConfigError, match=rf"ODK_THRESHOLD='{bad}': expected a number >= 0 and <= 1"):
            odk.number({"ODK_THRESHOLD": bad}, "ODK_THRESHOLD", 0.5, maximum=1.0)
