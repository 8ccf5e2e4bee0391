"""A pod's server: TCP reads to EOF then answers `<name>:<data>`; UDP answers each datagram
the same way. Prints "ready" once both sockets listen. Run inside the pod's namespace."""

from __future__ import annotations

import socket
import sys
import threading


def _tcp_client(conn: socket.socket, name: bytes) -> None:
    with conn:
        conn.settimeout(10)
        chunks = []
        while data := conn.recv(65536):
            chunks.append(data)
        conn.sendall(name + b":" + b"".join(chunks))


def _udp(sock: socket.socket, name: bytes) -> None:
    while True:
        data, peer = sock.recvfrom(65536)
        sock.sendto(name + b":" + data, peer)


def main() -> None:
    name, port = sys.argv[1].encode(), int(sys.argv[2])
    tcp = socket.create_server(("0.0.0.0", port), backlog=64)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", port))
    threading.Thread(target=_udp, args=(udp, name), daemon=True).start()
    print("ready", flush=True)
    while True:
        conn, _ = tcp.accept()
        threading.Thread(target=_tcp_client, args=(conn, name), daemon=True).start()


if __name__ == "__main__":
    main()
