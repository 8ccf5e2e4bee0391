"""The README's quick start as data: its commands, run one after another like a user would.

Used by scripts/demo.sh (to show it) and by the end-to-end test (to check it), so the README
cannot drift from what works."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass(frozen=True, slots=True)
class Step:
    command: str
    background: bool


def quick_start(readme: Path = README) -> list[Step]:
    """The `$ ...` lines of the first code block under "## Quick start"."""
    text = readme.read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S)
    if block is None:
        raise ValueError("README quick start has no code block")
    steps = []
    for line in block.group(1).splitlines():
        if line.startswith("$ "):
            command = line[2:].strip()
            background = command.endswith("&")
            steps.append(Step(command.rstrip("&").strip(), background))
    return steps


@dataclass
class Result:
    step: Step
    output: str
    code: int


def run(steps: list[Step], env: dict[str, str], timeout: float = 180.0) -> Iterator[Result]:
    """Run each step in a shell-less subprocess; background steps keep running until the end."""
    background: list[subprocess.Popen[str]] = []
    try:
        for step in steps:
            argv = shlex.split(step.command)
            if step.background:
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
                background.append(proc)
                assert proc.stdout is not None
                first = proc.stdout.readline()
                yield Result(step, first, 0 if proc.poll() is None else proc.returncode)
                time.sleep(0.2)
                continue
            done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
            yield Result(step, done.stdout + done.stderr, done.returncode)
    finally:
        for proc in background:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def user_env(home: Path, bindir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAFTORCH_", "XDG_"))}
    env["HOME"] = str(home)
    if bindir is not None:
        env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    return env
