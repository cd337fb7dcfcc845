"""A throwaway certificate authority and a loopback server certificate."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import trustme

__all__ = ["LoopbackTLS"]


class LoopbackTLS:
    """CA + certificate for 127.0.0.1 and localhost, written to a private temp folder.

    Point clients at `ca_file` (requests: `session.verify = ca_file`).
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._owned = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="sandbox-tls-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="Loyalty Sandbox CA")
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = self.directory / "sandbox-ca.pem"
        self.cert_file = self.directory / "sandbox-server.pem"
        self.key_file = self.directory / "sandbox-server.key"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(self.key_file))

    def cleanup(self) -> None:
        if self._owned:
            shutil.rmtree(self.directory, ignore_errors=True)
