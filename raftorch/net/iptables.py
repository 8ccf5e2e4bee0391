"""Executor: loads rendered rules into the kernel with `iptables-restore --noflush`.

Every change is one `iptables-restore` transaction, so a node never shows half a rule set:

* our chains are declared (`:CHAIN - [0:0]`), which flushes and refills them, while every
  chain not named in the input keeps its rules;
* our chains that the new rules no longer declare (services gone) are flushed and deleted;
* the jumps from built-in chains (`rules.jump_rules`) are inserted when missing, and jumps
  into our chains that are extra copies or no longer wanted are deleted, so each exists
  exactly once. The current state is read with `iptables-save` just before.

`iptables` names the binary, e.g. "iptables-legacy" or "iptables-nft"; `-restore` and
`-save` are appended for its siblings. With `netns`, every command runs in that network
namespace (`ip netns exec`), which is how the tests program their fake nodes.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from raftorch.errors import Invalid
from raftorch.net._exec import Runner
from raftorch.net.rules import DEFAULT_PREFIX, jump_rules, validate_prefix

__all__ = ["TABLES", "IptablesApplier"]

TABLES = ("nat", "filter")
_WAIT_SECONDS = "5"


@dataclass(frozen=True, slots=True)
class _Table:
    """One table of restore input or of `iptables-save` output, reduced to what concerns us."""

    chains: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    # (built-in or foreign chain, rule tokens after the chain, the line as saved)
    jumps: list[tuple[str, list[str], str]] = field(default_factory=list)


class IptablesApplier:
    """Programs the chains named `<prefix>-...`; leaves every other rule alone."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, iptables: str = "iptables", *,
                 netns: str | None = None, timeout: float = 30.0) -> None:
        self.prefix = validate_prefix(prefix)
        self.iptables = iptables
        self._runner = Runner(netns=netns, timeout=timeout)

    def check(self) -> None:
        """Raises Unavailable unless iptables can be used here (installed, permitted)."""
        self._run_restore("")
        self._saved("nat")

    def apply(self, rules_text: str) -> None:
        """Atomically replaces our chains with those of `rules_text` (as rendered by
        `rules.render_nat_rules`) and makes the jumps into them exist exactly once.

        Raises Invalid when `rules_text` touches chains that are not ours, Unavailable when
        iptables cannot be used, Internal when the kernel refuses the rules."""
        wanted = self._parse_input(rules_text)
        desired = jump_rules(self.prefix)
        out: list[str] = []
        for table in sorted(set(wanted) | set(TABLES), key=_table_order):
            new = wanted.get(table, _Table())
            saved = self._saved(table)
            stale = [c for c in saved.chains if c not in new.chains]
            keep = set(new.chains)
            deletes, inserts = _jump_edits(saved, [(chain, args) for t, chain, args in desired
                                                   if t == table and args[-1] in keep])
            if not (new.chains or stale or deletes or inserts):
                continue
            out += [f"*{table}", *(f":{c} - [0:0]" for c in [*new.chains, *stale]), *new.lines,
                    *deletes, *inserts, *(f"-X {c}" for c in stale), "COMMIT"]
        self._run_restore("\n".join(out) + "\n")

    def cleanup(self) -> None:
        """Removes every jump into our chains and deletes our chains, in one transaction."""
        out: list[str] = []
        for table in TABLES:
            saved = self._saved(table)
            if not (saved.chains or saved.jumps):
                continue
            out += [f"*{table}", *(f":{c} - [0:0]" for c in saved.chains),
                    *("-D" + line[2:] for _, _, line in saved.jumps),
                    *(f"-X {c}" for c in saved.chains), "COMMIT"]
        if out:
            self._run_restore("\n".join(out) + "\n")

    def current_rules(self) -> str:
        """Our chains, their rules and the jumps into them, as `iptables-save` shows them."""
        out: list[str] = []
        for table in TABLES:
            saved = self._saved(table)
            if saved.chains or saved.jumps:
                out += [f"*{table}", *(f":{c} - [0:0]" for c in saved.chains), *saved.lines,
                        *(line for _, _, line in saved.jumps), "COMMIT"]
        return "".join(f"{line}\n" for line in out)

    def _ours(self, chain: str) -> bool:
        return chain.startswith(self.prefix + "-")

    def _parse_input(self, text: str) -> dict[str, _Table]:
        tables: dict[str, _Table] = {}
        current: _Table | None = None
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("*"):
                name = line[1:]
                if name not in TABLES or current is not None:
                    raise Invalid(f"iptables rules: unexpected table line {line!r}")
                current = tables.setdefault(name, _Table())
            elif current is None:
                raise Invalid(f"iptables rules: {line!r} outside a table")
            elif line == "COMMIT":
                current = None
            elif line.startswith(":"):
                chain = line[1:].split()[0]
                self._require_ours(chain, line)
                current.chains.append(chain)
            else:
                tokens = shlex.split(line)
                if tokens[0] not in ("-A", "-I") or len(tokens) < 2:
                    raise Invalid(f"iptables rules: only -A and -I are accepted, not {line!r}")
                self._require_ours(tokens[1], line)
                current.lines.append(line)
        if current is not None:
            raise Invalid("iptables rules: last table lacks COMMIT")
        return tables

    def _require_ours(self, chain: str, line: str) -> None:
        if not self._ours(chain):
            raise Invalid(f"iptables rules: {line!r} touches chain {chain!r}, not one of {self.prefix}-*")

    def _saved(self, table: str) -> _Table:
        text = self._runner.run([f"{self.iptables}-save", "-t", table]).stdout
        saved = _Table()
        for line in text.splitlines():
            if line.startswith(":"):
                chain = line[1:].split()[0]
                if self._ours(chain):
                    saved.chains.append(chain)
            elif line.startswith("-A "):
                tokens = shlex.split(line)
                if self._ours(tokens[1]):
                    saved.lines.append(line)
                elif (target := _target(tokens)) is not None and self._ours(target):
                    saved.jumps.append((tokens[1], tokens[2:], line))
        return saved

    def _run_restore(self, text: str) -> None:
        self._runner.run([f"{self.iptables}-restore", "-w", _WAIT_SECONDS, "--noflush"], input=text)


def _jump_edits(saved: _Table, wanted: list[tuple[str, list[str]]]) -> tuple[list[str], list[str]]:
    """Restore lines deleting the saved jumps into our chains that are not wanted or are
    extra copies, and inserting the wanted ones that are missing (at the top, in order)."""
    deletes: list[str] = []
    present: set[int] = set()
    for chain, tokens, line in saved.jumps:
        idx = next((i for i, (c, a) in enumerate(wanted) if c == chain and a == tokens), None)
        if idx is None or idx in present:
            deletes.append("-D" + line[2:])
        else:
            present.add(idx)
    inserts = [f"-I {chain} 1 {_join(args)}" for i, (chain, args) in reversed(list(enumerate(wanted)))
               if i not in present]
    return deletes, inserts


def _target(tokens: Sequence[str]) -> str | None:
    for i, token in enumerate(tokens[:-1]):
        if token in ("-j", "-g", "--jump", "--goto"):
            return tokens[i + 1]
    return None


def _join(args: Sequence[str]) -> str:
    return " ".join(f'"{a}"' if not a or " " in a else a for a in args)


def _table_order(table: str) -> tuple[int, str]:
    return (TABLES.index(table) if table in TABLES else len(TABLES), table)
