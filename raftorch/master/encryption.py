"""Secrets encrypted at rest: the masters' key file and the sealing of Secret objects.

The key file (`encryption-key-file`, the same on every master, kept outside the store) is YAML,
in the spirit of Kubernetes' EncryptionConfiguration with one aesgcm provider:

    keys:
      - name: key1
        secret: <base64 of 32 random bytes>     # head -c 32 /dev/urandom | base64

The first key seals new writes; every key listed opens what it sealed, so a key is rotated by
putting the new one first, rewriting the secrets, then dropping the old one.

Where: the master that takes a write seals the Secret (Registry, before the transaction is
proposed), so the Raft log, the journal, snapshots and every replica's store hold only
ciphertext; a master opens it when it decodes the object for a reader. Sealing on the leader
alone would put plaintext on the wire between masters and in the forwarded command. What is
sealed is the secret's data (a SecretData message, AES-256-GCM with a fresh 96-bit nonce); its
metadata stays in clear so the state machine and list filters work as for every other kind.
The store key is the associated data: a sealed value copied under another name does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Conflict, Invalid

__all__ = ["KEY_BYTES", "SecretBox", "load_key_file", "new_key_file_text"]

KEY_BYTES = 32
NONCE_BYTES = 12


@dataclass(frozen=True)
class SecretBox:
    """The masters' keys, by name, first one sealing."""

    keys: tuple[tuple[str, bytes], ...]
    source: str = "encryption-key-file"
    nonce: Callable[[int], bytes] = os.urandom

    def seal(self, secret: objects_pb2.Secret, store_key: str) -> objects_pb2.Secret:
        """The stored form: data sealed, string data already merged (defaults), metadata as is."""
        name, key = self.keys[0]
        plain = objects_pb2.SecretData(data=dict(secret.data)).SerializeToString(deterministic=True)
        nonce = self.nonce(NONCE_BYTES)
        stored = objects_pb2.Secret()
        stored.CopyFrom(secret)
        stored.ClearField("data")
        stored.ClearField("string_data")
        stored.sealed.CopyFrom(objects_pb2.SealedData(
            key_name=name, nonce=nonce, ciphertext=AESGCM(key).encrypt(nonce, plain, store_key.encode())))
        return stored

    def open(self, stored: objects_pb2.Secret, store_key: str) -> None:
        """Put the data back in place of the sealed form; Conflict when no key opens it."""
        if not stored.HasField("sealed"):
            return
        sealed = stored.sealed
        key = dict(self.keys).get(sealed.key_name)
        if key is None:
            raise Conflict(f"{store_key} was sealed with key {sealed.key_name!r}, which {self.source} "
                                  "does not hold")
        try:
            plain = AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, store_key.encode())
        except (InvalidTag, ValueError):
            raise Conflict(f"{store_key} does not decrypt with key {sealed.key_name!r} of {self.source}: "
                                  "this master's key differs from the one that sealed it") from None
        data = objects_pb2.SecretData.FromString(plain)
        stored.ClearField("sealed")
        stored.data.clear()
        stored.data.update(data.data)


def load_key_file(path: Path) -> SecretBox:
    """The keys in `path`; Invalid naming the problem (never a key's value)."""
    where = f"encryption-key-file: {path}"
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise Invalid(f"{where}: cannot read it: {exc.strerror}") from None
    except yaml.YAMLError:
        raise Invalid(f"{where}: not YAML") from None
    if not isinstance(raw, dict) or set(raw) != {"keys"} or not isinstance(raw["keys"], list) or not raw["keys"]:
        raise Invalid(f"{where}: expected one mapping `keys:` with a list of {{name, secret}} entries")
    keys: list[tuple[str, bytes]] = []
    for i, entry in enumerate(raw["keys"]):
        field = f"{where}: keys[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"name", "secret"}:
            raise Invalid(f"{field}: expected exactly `name` and `secret`")
        name, secret = entry["name"], entry["secret"]
        if not isinstance(name, str) or not name or len(name) > 63:
            raise Invalid(f"{field}.name: a name of 1 to 63 characters")
        if name in dict(keys):
            raise Invalid(f"{field}.name: {name!r} is listed twice")
        try:
            key = base64.b64decode(str(secret), validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"{field}.secret: not base64") from None
        if len(key) != KEY_BYTES:
            raise Invalid(f"{field}.secret: {len(key)} bytes; AES-256-GCM needs {KEY_BYTES} "
                          "(head -c 32 /dev/urandom | base64)")
        keys.append((name, key))
    return SecretBox(tuple(keys), source=str(path))


def new_key_file_text(name: str = "key1") -> str:
    """A key file with one fresh random key."""
    secret = base64.b64encode(os.urandom(KEY_BYTES)).decode()
    return f"keys:\n  - name: {name}\n    secret: {secret}\n"
