"""Reading manifests for `apply -f` and `delete -f`: files, directories and stdin, YAML or JSON,
several documents per file."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from raftorch.errors import Invalid
from raftorch.objects import Kind, kind_of_message
from raftorch.objects.manifest import from_manifest, load_documents
from raftorch.objects.meta import meta

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"
# A manifest file holds objects of at most 1 MiB each: 4 MiB is plenty, and bounds what one
# file can cost raftctl before any of it is parsed.
MAX_FILE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Manifest:
    source: str  # "web.yaml", or "web.yaml (document 2)" when the file holds several
    object: Message

    @property
    def kind(self) -> Kind:
        return kind_of_message(self.object)

    @property
    def name(self) -> str:
        return meta(self.object).name


def _files(path_text: str, recursive: bool) -> list[tuple[str, str]]:
    """(name to show, text) of each manifest file a -f argument names."""
    if path_text == STDIN:
        text = sys.stdin.read(MAX_FILE_BYTES + 1)
        if len(text.encode()) > MAX_FILE_BYTES:
            raise Invalid(f"<stdin>: {_too_big()}")
        return [("<stdin>", text)]
    path = Path(path_text)
    if not path.exists():
        raise Invalid(f'the path "{path_text}" does not exist')
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        found = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES)
        return [(str(p), _read(p)) for p in found]
    return [(path_text, _read(path))]


def _too_big() -> str:
    return f"more than {MAX_FILE_BYTES // (1024 * 1024)} MiB; a manifest file may hold at most that"


def _read(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise Invalid(f"{path}: {_too_big()}")
        return data.decode()
    except UnicodeDecodeError:
        raise Invalid(f"{path}: not a text file") from None
    except OSError as exc:
        raise Invalid(f"{path}: cannot read: {exc.strerror}") from None


def _documents(name: str, text: str) -> list[Any]:
    try:
        docs = load_documents(text)
    except Invalid as err:
        raise Invalid(f"{name}: {err.message}") from None
    out: list[Any] = []
    for doc in docs:
        # kubectl's `kind: List` (as `get -o yaml` prints several objects) holds the objects in items.
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend(doc["items"])
        else:
            out.append(doc)
    return out


def _parsed(files: Sequence[tuple[str, str]]) -> Iterator[Manifest]:
    for name, text in files:
        docs = _documents(name, text)
        for i, doc in enumerate(docs):
            source = f"{name} (document {i + 1})" if len(docs) > 1 else name
            try:
                yield Manifest(source, from_manifest(doc))
            except Invalid as err:
                raise Invalid(f"{source}: {err.message}") from None


def load(paths: Sequence[str], recursive: bool = False) -> list[Manifest]:
    """Every object the -f arguments name, all parsed before any is used, so a bad document
    anywhere changes nothing."""
    files = [f for p in paths for f in _files(p, recursive)]
    manifests = list(_parsed(files))
    if not manifests:
        raise Invalid(f"no objects found in {', '.join(paths)}")
    return manifests
