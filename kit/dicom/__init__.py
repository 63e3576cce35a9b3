"""DICOM networking of the kit: the listener (Storage SCP that turns received studies into pipeline jobs)
and the local PACS (Orthanc) used for development, the demo and the tests."""
