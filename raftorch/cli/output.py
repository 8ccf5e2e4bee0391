"""Tables and JSON for raftctl."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
import yaml


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], upper: bool = True) -> None:
    cells = [[str(h).upper() if upper else str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def as_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def show_bytes(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.hex()


def as_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096)


class Rows:
    """Table rows printed as they come (`get -w`): columns as wide as the widest cell seen so far."""

    def __init__(self, headers: Sequence[str]) -> None:
        self.headers = [h.upper() for h in headers]
        self.widths = [len(h) for h in self.headers]
        self.started = False

    def _line(self, cells: Sequence[str]) -> str:
        self.widths = [max(w, len(c)) for w, c in zip(self.widths, cells, strict=True)]
        return "   ".join(c.ljust(w) for c, w in zip(cells, self.widths, strict=True)).rstrip()

    def print(self, rows: Sequence[Sequence[str]]) -> None:
        cells = [[str(c) for c in r] for r in rows]
        for r in cells:
            self.widths = [max(w, len(c)) for w, c in zip(self.widths, r, strict=True)]
        if not self.started and cells:
            click.echo(self._line(self.headers))
            self.started = True
        for r in cells:
            click.echo(self._line(r))
