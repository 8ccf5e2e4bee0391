"""HTTP requests made from inside a network namespace (`ip netns exec NS python svc_http.py JSON`).

Every request is one TCP connection (HTTP/1.0, no keep-alive), as a browser without keep-alive
or a health checker would make it. The result is printed as JSON on stdout. Modes:

``{"mode": "get", "targets": ["IP:PORT", ...], "count": N, "timeout": S}``
    N requests to each target, one after another; prints a list of
    ``{"target": ..., "ok": "<last line of the body>"}`` or
    ``{"target": ..., "err": "<exception name>", "secs": <time to the error>}``.

``{"mode": "until", "target": "IP:PORT", "want": TEXT, "deadline": S, "timeout": S, "pause": S}``
    requests (`pause` seconds apart) until a body contains TEXT (or S seconds passed); prints
    ``{"seen_at": <unix time of the first such answer, or null>, "requests": n, "errors": {...}}``.

``{"mode": "load", "target": "IP:PORT", "threads": N, "seconds": S, "timeout": S}``
    N threads request as fast as they can for S seconds; prints
    ``{"requests", "errors", "rps", "p50_ms", "p99_ms", "max_ms"}``.

Only the standard library: it runs with whatever Python runs the tests, in any namespace.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import Any


def request(target: str, timeout: float) -> str:
    """The last line of the body of `GET /` at target; raises OSError (or ValueError on a
    response that is not 200)."""
    host, _, port = target.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: svc\r\nUser-Agent: svc_http\r\n\r\n")
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise ValueError(f"unexpected response {status!r}")
    lines = body.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def _get(args: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for target in args["targets"]:
        for _ in range(int(args.get("count", 1))):
            started = time.monotonic()
            try:
                out.append({"target": target, "ok": request(target, float(args.get("timeout", 2.0)))})
            except (OSError, ValueError) as exc:
                out.append({"target": target, "err": type(exc).__name__, "detail": str(exc),
                            "secs": round(time.monotonic() - started, 4)})
    return out


def _until(args: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + float(args.get("deadline", 10.0))
    want = str(args["want"])
    errors: dict[str, int] = {}
    pause = float(args.get("pause", 0.0))
    count = 0
    while time.monotonic() < deadline:
        count += 1
        try:
            if want in request(args["target"], float(args.get("timeout", 1.0))):
                return {"seen_at": time.time(), "requests": count, "errors": errors}
        except (OSError, ValueError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        time.sleep(pause)
    return {"seen_at": None, "requests": count, "errors": errors}


def _load(args: dict[str, Any]) -> dict[str, Any]:
    target, timeout = args["target"], float(args.get("timeout", 2.0))
    seconds, threads = float(args["seconds"]), int(args["threads"])
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[int] = [0] * threads
    start = threading.Event()
    stop_at = [0.0]

    def worker(i: int) -> None:
        start.wait()
        mine = latencies[i]
        while (now := time.perf_counter()) < stop_at[0]:
            try:
                request(target, timeout)
                mine.append(time.perf_counter() - now)
            except (OSError, ValueError):
                errors[i] += 1

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start.set()
    for t in pool:
        t.join(seconds + timeout + 5)
    elapsed = time.perf_counter() - began
    merged = sorted(x for lst in latencies for x in lst)

    def pct(p: float) -> float | None:
        return round(merged[min(len(merged) - 1, int(p * len(merged)))] * 1000, 2) if merged else None

    return {"requests": len(merged), "errors": sum(errors), "rps": round(len(merged) / elapsed, 1),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": round(merged[-1] * 1000, 2) if merged else None}


def main() -> None:
    args = json.loads(sys.argv[1])
    mode = args["mode"]
    result: Any
    if mode == "get":
        result = _get(args)
    elif mode == "until":
        result = _until(args)
    elif mode == "load":
        result = _load(args)
    else:
        raise SystemExit(f"svc_http: unknown mode {mode!r}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
