"""Throwaway certificates for TLS tests, made with the openssl CLI (no Python crypto dependency):
a CA, a server certificate for a DNS name signed by it, and a client certificate signed by it."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    cert: str
    key: str


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(workdir: str, name: str) -> Pair:
    pair = Pair(os.path.join(workdir, f"{name}.crt"), os.path.join(workdir, f"{name}.key"))
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "2", "-subj", f"/CN={name}", "-keyout", pair.key, "-out", pair.cert)
    return pair


def issue(ca: Pair, workdir: str, name: str, dns: str | None = None) -> Pair:
    """A leaf certificate signed by `ca`; with `dns`, a server certificate for that name."""
    pair = Pair(os.path.join(workdir, f"{name}.crt"), os.path.join(workdir, f"{name}.key"))
    csr, ext = os.path.join(workdir, f"{name}.csr"), os.path.join(workdir, f"{name}.ext")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", f"/CN={dns or name}", "-keyout", pair.key, "-out", csr)
    usage = "serverAuth" if dns else "clientAuth"
    with open(ext, "w") as handle:
        handle.write(f"extendedKeyUsage={usage}\n" + (f"subjectAltName=DNS:{dns}\n" if dns else ""))
    _openssl("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-days", "2",
             "-extfile", ext, "-out", pair.cert)
    return pair
