"""Which ``Host`` headers a local HTTP server of the kit answers: its own loopback addresses, nothing else.

A web page the user opens elsewhere can point a name it controls at 127.0.0.1 (DNS rebinding) and then read
whatever a local server answers; the browser still sends that foreign name as ``Host``. Refusing every Host
but the server's own closes that hole, as Jupyter and other local servers do.
"""

from __future__ import annotations

from dataclasses import dataclass

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class AllowedHosts:
    """The Host values (``name:port``, lower case) a server on ``port`` answers."""

    hosts: frozenset[str]

    @classmethod
    def for_port(cls, port: int, extra: str = "") -> AllowedHosts:
        """Loopback names with the port, and each name of ``extra`` (comma/space separated; ``name`` gets the
        port, ``name:port`` is taken as it is)."""
        names = [f"{n}:{port}" for n in LOOPBACK_NAMES]
        for item in extra.replace(",", " ").split():
            item = item.strip().lower()
            has_port = item.rsplit(":", 1)[-1].isdigit() and (not item.startswith("[") or "]:" in item)
            if item.count(":") > 1 and not item.startswith("["):  # a bare IPv6 address
                item, has_port = f"[{item}]", False
            names.append(item if has_port else f"{item}:{port}")
        return cls(frozenset(names))

    def allows(self, host_header: str | None) -> bool:
        return host_header is not None and host_header.strip().lower() in self.hosts

    def refusal(self, host_header: str | None) -> str:
        """The one line a refused request gets."""
        shown = "no Host header" if host_header is None else f"Host '{host_header.strip()[:100]}'"
        return (f"refused: {shown} is not this server's address (allowed: {', '.join(sorted(self.hosts))}); "
                "open it by one of those\n")
