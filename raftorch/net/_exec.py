"""Running the network tools (`iptables*`, `ip`), optionally inside a network namespace."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from raftorch.errors import Internal, Unavailable

# What the tools print when they may not or cannot do their job on this host at all, as
# opposed to refusing a particular rule or route.
_UNUSABLE = re.compile(
    r"permission denied|you must be root|operation not permitted|can't initialize|could not fetch rule set"
    r"|failed to initialize nft|protocol not supported|table does not exist|cannot open network namespace",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True, slots=True)
class Runner:
    """Runs commands, inside network namespace `netns` (via `ip netns exec`) when given."""

    netns: str | None = None
    timeout: float = 30.0

    def run(self, cmd: Sequence[str], *, input: str | None = None, check: bool = True) -> Result:
        """The command's result; raises Unavailable when the tool is missing, not permitted or
        times out, and Internal for any other failure when `check`."""
        full = ["ip", "netns", "exec", self.netns, *cmd] if self.netns else list(cmd)
        try:
            proc = subprocess.run(full, input=input, capture_output=True, text=True, timeout=self.timeout,
                                  check=False)
        except FileNotFoundError as e:
            raise Unavailable(f"{e.filename or full[0]}: not installed") from e
        except PermissionError as e:
            raise Unavailable(f"{full[0]}: not permitted: {e}") from e
        except subprocess.TimeoutExpired as e:
            raise Unavailable(f"{' '.join(full)}: no answer within {self.timeout:g}s") from e
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if proc.returncode != 0:
            err = proc.stderr.strip()
            if proc.returncode == 127 or ("No such file or directory" in err and cmd[0] in err):
                raise Unavailable(f"{cmd[0]}: not installed ({err})")
            if _UNUSABLE.search(err):
                raise Unavailable(f"{cmd[0]}: unusable on this host: {err}")
            if check:
                raise Internal(f"{' '.join(cmd)} failed with exit status {proc.returncode}: {err}")
        return result
