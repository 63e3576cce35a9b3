"""DICOM TLS for the C-STORE SCU (register-results): the client side's SSL context, from the environment.

A destination marked ``AET@host:port?tls`` is reached over TLS (DICOM's secure transport connection profile,
PS3.15 B.1: TLS 1.2 or newer). The server's certificate is checked against DICOM_TLS_CA (a PEM file of the
CAs to trust; the system's CAs when unset) and must name the host; DICOM_TLS_CERT and DICOM_TLS_KEY give
the client certificate a server that requires one (Orthanc does by default) checks.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path

from ..config import ConfigError


def client_context(env: Mapping[str, str]) -> ssl.SSLContext:
    """The context a TLS association is made with (ConfigError naming the variable when a file is unusable)."""
    ca, cert, key = (env.get(v, "").strip() for v in ("DICOM_TLS_CA", "DICOM_TLS_CERT", "DICOM_TLS_KEY"))
    for var, value in (("DICOM_TLS_CA", ca), ("DICOM_TLS_CERT", cert), ("DICOM_TLS_KEY", key)):
        if value and not Path(value).is_file():
            raise ConfigError(f"{var}={value} is not a file")
    if bool(cert) != bool(key):
        raise ConfigError("DICOM_TLS_CERT and DICOM_TLS_KEY go together (the client certificate and its key)")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert:
            ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot use the DICOM TLS files (DICOM_TLS_CA/CERT/KEY): {exc}") from None
    return ctx
