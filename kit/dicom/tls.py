"""DICOM TLS for the kit's DICOM services: the listener's server context (LISTEN_TLS_CERT, LISTEN_TLS_KEY,
LISTEN_TLS_CA), Orthanc's DicomTls* options for `make pacs PACS_TLS=1`, and certificates made here with the
openssl command for tests and the demo (a CA, a server certificate for localhost/127.0.0.1, a client one).

    python -m kit.dicom.tls certs --dir .run/tls     # prints the folder; makes only what is missing

Plain DIMSE stays the default: nothing here is used unless those variables are given.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from odk import ConfigError

CERT_DAYS = 825
HANDSHAKE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ServerTls:
    """A TLS server's certificate and key, and the CA its clients' certificates must come from (None: no
    client certificate asked for)."""

    cert: Path
    key: Path
    ca: Path | None = None

    def context(self, log: Callable[[str], None] | None = None) -> ssl.SSLContext:
        """The server's context; ``log`` gets one line per refused TLS connection."""
        ctx = LoggingServerContext(ssl.PROTOCOL_TLS_SERVER)
        if log is not None:
            ctx.log = log  # type: ignore[method-assign]
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # DICOM's secure transport profiles: TLS 1.2 or newer
        try:
            ctx.load_cert_chain(self.cert, self.key)
            if self.ca is not None:
                ctx.load_verify_locations(self.ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"cannot use the TLS files {self.cert}, {self.key}"
                              f"{', ' + str(self.ca) if self.ca else ''}: {exc}") from None
        return ctx


def listener_tls(env: Mapping[str, str]) -> ServerTls | None:
    """LISTEN_TLS_CERT + LISTEN_TLS_KEY (+ LISTEN_TLS_CA to require client certificates); None when unset."""
    cert, key, ca = (env.get(v, "").strip() for v in ("LISTEN_TLS_CERT", "LISTEN_TLS_KEY", "LISTEN_TLS_CA"))
    if not (cert or key or ca):
        return None
    if not (cert and key):
        raise ConfigError("LISTEN_TLS_CERT and LISTEN_TLS_KEY go together (the listener's certificate and key); "
                          "LISTEN_TLS_CA alone is not enough")
    for var, value in (("LISTEN_TLS_CERT", cert), ("LISTEN_TLS_KEY", key), ("LISTEN_TLS_CA", ca)):
        if value and not Path(value).is_file():
            raise ConfigError(f"{var}={value} is not a file")
    return ServerTls(Path(cert), Path(key), Path(ca) if ca else None)


def refusal(exc: BaseException) -> str:
    """Why a TLS handshake failed, in words."""
    reason = str(getattr(exc, "reason", "") or "")
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNSUPPORTED_PROTOCOL", "UNKNOWN_PROTOCOL",
                  "VERSION_TOO_LOW", "RECORD_LAYER_FAILURE"):
        return "not a TLS client (plain DICOM to a TLS port?)"
    if reason == "CERTIFICATE_VERIFY_FAILED":
        return "its certificate is not signed by a CA of LISTEN_TLS_CA"
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "it sent no client certificate (LISTEN_TLS_CA requires one)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no TLS handshake in time"
    return f"TLS handshake failed ({reason or exc})"


class LoggingServerContext(ssl.SSLContext):
    """A server context that logs one line for each connection whose TLS handshake fails: pynetdicom
    handshakes when it accepts, and socketserver drops an OSError there without a word."""

    log: Callable[[str], None] = staticmethod(lambda _line: None)  # type: ignore[assignment]

    def wrap_socket(self, sock: socket.socket, *args: object, **kwargs: object) -> ssl.SSLSocket:  # type: ignore[override]
        try:
            peer = "{}:{}".format(*sock.getpeername()[:2])
        except OSError:
            peer = "?"
        timeout = sock.gettimeout()
        sock.settimeout(HANDSHAKE_TIMEOUT_S)  # the handshake runs in the accept loop: a silent client must end
        try:
            wrapped = super().wrap_socket(sock, *args, **kwargs)  # type: ignore[arg-type]
        except (ssl.SSLError, OSError) as exc:
            self.log(f"TLS connection from {peer} refused: {refusal(exc)}")
            sock.close()
            raise
        wrapped.settimeout(timeout)
        return wrapped


def orthanc_options(folder: Path) -> dict[str, object]:
    """Orthanc's DICOM TLS with the certificates of ``folder`` (make_certs): the DICOM port speaks TLS only,
    and a caller must present a certificate signed by the CA."""
    return {"DicomTlsEnabled": True, "DicomTlsCertificate": str(folder / "server.crt"),
            "DicomTlsPrivateKey": str(folder / "server.key"), "DicomTlsTrustedCertificates": str(folder / "ca.crt"),
            "DicomTlsRemoteCertificateRequired": True}


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConfigError(f"openssl {args[0]} failed: {done.stderr.strip().splitlines()[-1:] or '?'}")


def make_certs(folder: Path, names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Path:
    """A local CA (ca.crt), a server certificate for ``names`` (server.crt/.key) and a client certificate
    (client.crt/.key), both signed by the CA, and an untrusted client (stranger.crt/.key, its own CA): made
    with the openssl command, each only when missing. Keys are written readable by this user only."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    sans = ",".join(f"IP:{n}" if n.replace(".", "").isdigit() or ":" in n else f"DNS:{n}" for n in names)
    ext = folder / "ext.cnf"
    text = f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"
    if not ext.is_file() or ext.read_text() != text:
        ext.write_text(text)

    def ca(name: str, subject: str) -> None:
        if not (folder / f"{name}.crt").is_file():
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(folder / f"{name}.key"),
                     "-out", str(folder / f"{name}.crt"), "-days", str(CERT_DAYS), "-subj", subject)

    def leaf(name: str, subject: str, issuer: str) -> None:
        if (folder / f"{name}.crt").is_file():
            return
        csr = folder / f"{name}.csr"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(folder / f"{name}.key"), "-out", str(csr),
                 "-subj", subject)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(folder / f"{issuer}.crt"), "-CAkey",
                 str(folder / f"{issuer}.key"), "-CAcreateserial", "-out", str(folder / f"{name}.crt"),
                 "-days", str(CERT_DAYS), "-extfile", str(ext))
        csr.unlink()

    ca("ca", "/CN=ODK local DICOM CA")
    leaf("server", f"/CN={names[0]}", "ca")
    leaf("client", "/CN=ODK DICOM client", "ca")
    ca("stranger-ca", "/CN=Not the ODK CA")
    leaf("stranger", "/CN=stranger", "stranger-ca")
    for key in folder.glob("*.key"):
        key.chmod(0o600)
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kit.dicom.tls", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("certs",))
    ap.add_argument("--dir", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        print(make_certs(args.dir))
    except (ConfigError, FileNotFoundError) as exc:
        why = "the openssl command is not installed (apt-get install openssl)" if isinstance(
            exc, FileNotFoundError) else str(exc)
        print(f"[odk] error: cannot make the DICOM TLS certificates in {args.dir}: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
