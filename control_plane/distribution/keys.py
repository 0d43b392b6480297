"""Signing keys of the control plane: generate, rotate, retire, sign.

Private keys stay in the control plane's key folder (0600). Each key's public half is
written to the trusted-keys folder the edges read, so rotation is: `rotate` (a new key
signs from now on; edges trust both), then, once every edge runs a snapshot signed by the
new key, `retire` the old one.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_module.distribution.signing import key_id

ACTIVE = "ACTIVE"
RETIRED = "retired"  # public halves of retired keys (manifest_trust reads them)


class KeyRingError(Exception):
    """A key operation that cannot be done (no key yet, retiring the active key...)."""


@dataclass(frozen=True)
class SigningKey:
    id: str
    private: Ed25519PrivateKey

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.private.sign(data)).decode()


class KeyRing:
    def __init__(self, keys_dir: str | Path, trusted_dir: str | Path) -> None:
        self.keys_dir = Path(keys_dir)
        self.trusted_dir = Path(trusted_dir)

    def active(self) -> SigningKey:
        """The key that signs new snapshots."""
        try:
            kid = (self.keys_dir / ACTIVE).read_text().strip()
            pem = (self.keys_dir / f"{kid}.key").read_bytes()
        except FileNotFoundError:
            raise KeyRingError(f"no signing key in {self.keys_dir}: run "
                            "'trigger-engine keys generate'") from None
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:  # a damaged or foreign file
            raise KeyRingError(f"{self.keys_dir / (kid + '.key')}: not a readable private "
                               f"key ({exc})") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise KeyRingError(f"{kid}.key is not an Ed25519 key")
        return SigningKey(kid, private)

    def ensure(self) -> SigningKey:
        """The active key, generating the first one if there is none."""
        try:
            return self.active()
        except KeyRingError:
            return self.rotate()

    def rotate(self) -> SigningKey:
        """A new key becomes the signing key; the old ones stay trusted until retired."""
        private = Ed25519PrivateKey.generate()
        kid = key_id(private.public_key())
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        self.trusted_dir.mkdir(parents=True, exist_ok=True)
        key_path = self.keys_dir / f"{kid}.key"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        (self.trusted_dir / f"{kid}.pub").write_bytes(private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        tmp = self.keys_dir / f".{ACTIVE}.tmp"
        tmp.write_text(kid + "\n")
        tmp.replace(self.keys_dir / ACTIVE)
        return SigningKey(kid, private)

    def retire(self, kid: str) -> None:
        """Stop trusting an old key (edges reject what it signed from their next poll).
        Its private half is deleted; its public half moves to the keys folder's `retired/`,
        so the control plane still recognises the manifest entries it signed
        (`manifest_trust`: a rollback to such a revision is signed anew)."""
        if kid == self.active().id:
            raise KeyRingError(f"{kid} is the active signing key: rotate first")
        pub = self.trusted_dir / f"{kid}.pub"
        if not pub.exists():
            raise KeyRingError(f"no trusted key {kid} in {self.trusted_dir}")
        retired = self.keys_dir / RETIRED
        retired.mkdir(parents=True, exist_ok=True)
        (retired / f"{kid}.pub").write_bytes(pub.read_bytes())
        pub.unlink()
        (self.keys_dir / f"{kid}.key").unlink(missing_ok=True)

    def listing(self) -> list[dict[str, object]]:
        active = None
        try:
            active = self.active().id
        except KeyRingError:
            pass
        ids = sorted({p.stem for p in self.keys_dir.glob("*.key")} |
                     {p.stem for p in self.trusted_dir.glob("*.pub")})
        return [{"key_id": k, "active": k == active,
                 "trusted": (self.trusted_dir / f"{k}.pub").exists(),
                 "private": (self.keys_dir / f"{k}.key").exists()} for k in ids]
