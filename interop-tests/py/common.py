"""Shared by the interop clients: payloads, digests, the SPIFFE ID of a
peer certificate, and the one JSON line each client prints as its result."""

import hashlib
import json
import random
import sys

from cryptography import x509


def payload(size: int, seed: int) -> bytes:
    """Deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spiffe_id(cert: x509.Certificate) -> str:
    """The certificate's one URI SAN (empty when it has none)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ""
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if len(uris) == 1 else ""


def report(**fields) -> None:
    """Prints the result line the Rust test parses, and exits 0: the test
    judges the outcome, not the exit code."""
    print(json.dumps(fields), flush=True)
    sys.exit(0)
