"""Connects `count` times and prints one JSON outcome per attempt: {"ok": answer} or
{"error": exception class, "errno": ..., "seconds": time until the failure}.

TCP sends the payload, half-closes and reads the answer to EOF; UDP sends one datagram on a
connected socket and reads one answer. Run inside the client's namespace."""

from __future__ import annotations

import json
import socket
import sys
import time


def _tcp(host: str, port: int, timeout: float, payload: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: s.recv(65536), b""))


def _udp(host: str, port: int, timeout: float, payload: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.send(payload)
        return s.recv(65536)


def main() -> None:
    args = json.loads(sys.argv[1])
    attempt = _udp if args.get("proto") == "udp" else _tcp
    outcomes: list[dict[str, object]] = []
    for i in range(args["count"]):
        start = time.monotonic()
        try:
            answer = attempt(args["host"], args["port"], args["timeout"], f"{args['payload']}{i}".encode())
            outcomes.append({"ok": answer.decode(errors="replace")})
        except OSError as e:
            outcomes.append({"error": type(e).__name__, "errno": e.errno, "seconds": time.monotonic() - start})
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main()
