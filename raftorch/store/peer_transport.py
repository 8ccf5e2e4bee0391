"""The Raft peer port: pysyncobj's TCP transport, encrypted, authenticated and bounded.

What is changed in pysyncobj and why:
- messages are sealed with AES-GCM under a key derived from the cluster secret (`PeerCipher`);
  its messages are pickles, so nothing may be read from a sender without the secret;
- every frame's length is checked against a maximum before its bytes are read: pysyncobj
  buffered whatever length a header announced, and a 2 GiB header followed by garbage held
  the Raft thread long enough to depose the leader. A connection that has not yet sent one
  authenticated frame may send only small frames (its handshake is a few hundred bytes) and is
  closed on its first bad one, so a stranger costs O(1) memory;
- authentication failures and refused frames are logged, at most once per few seconds;
- a listen backlog that a burst of connections does not overflow;
- no zlib: peer messages are small and travel a LAN, compression cost more CPU than it saved.

pysyncobj builds its connections by name inside its own modules, so the bounded connection
class is installed there when this module is imported (as the compression switch is).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import termios
import time
from typing import Any

import pysyncobj.tcp_connection
import pysyncobj.tcp_server
import pysyncobj.transport
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from pysyncobj import SyncObj
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection
from pysyncobj.tcp_server import TcpServer
from pysyncobj.transport import TCPTransport

from raftorch.store.read_index import ReadIndexTracker

log = structlog.get_logger("raftorch.store")

# The largest frame from an authenticated peer. Append-entries messages carry up to
# APPEND_BATCH_BYTES of entries plus the entry that crosses it (entries are ~256 KiB, a single
# command at most the 8 MiB gRPC message), snapshot chunks are 64 KiB: 64 MiB is well above.
APPEND_BATCH_BYTES = 8 * 1024 * 1024
MAX_FRAME_BYTES = 64 * 1024 * 1024
# The largest frame before a connection has authenticated: the handshake (a random key and a
# node address, sealed) is far smaller.
MAX_HANDSHAKE_FRAME_BYTES = 64 * 1024
# An incoming connection that has not said which master it is by then is closed: pysyncobj
# only notices idle connections when they have traffic, so a silent stranger stayed forever.
HANDSHAKE_TIMEOUT = 5.0
_LENGTH = struct.Struct("i")  # pysyncobj's frame header: a native signed 32-bit length
_INT = struct.Struct("i")
REPORT_INTERVAL = 5.0
LISTEN_BACKLOG = 512


class _RateLimited:
    """Logs an event at most once per REPORT_INTERVAL, with how many were not logged."""

    def __init__(self) -> None:
        self._last = 0.0
        self._suppressed = 0

    def error(self, event: str, **fields: Any) -> None:
        now = time.monotonic()
        if now - self._last < REPORT_INTERVAL:
            self._suppressed += 1
            return
        self._last = now
        log.error(event, suppressed_since_last=self._suppressed, **fields)
        self._suppressed = 0


_refused_frames = _RateLimited()
_slow_handshakes = _RateLimited()


class PeerCipher:
    """Authenticated encryption of Raft peer messages with a key derived from the cluster secret.

    Speaks the interface pysyncobj's transport expects of its encryptor, with AES-GCM instead of
    Fernet (a tenth of the CPU per message), and logs when a peer's message fails
    authentication: pysyncobj drops such connections silently, and an operator needs to learn
    that a master was started with the wrong cluster secret."""

    _SALT = b"raftorch-peer-v1"

    def __init__(self, secret: str) -> None:
        kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=self._SALT, iterations=200_000)
        self._aead = AESGCM(kdf.derive(secret.encode()))
        self._reports = _RateLimited()

    def encrypt_at_time(self, data: bytes, timestamp: int) -> bytes:
        stamp = struct.pack(">Q", timestamp)
        nonce = os.urandom(12)
        return stamp + nonce + self._aead.encrypt(nonce, data, stamp)

    def encrypt(self, data: bytes) -> bytes:
        return self.encrypt_at_time(data, int(time.monotonic()))

    def extract_timestamp(self, token: bytes) -> int:
        if len(token) < 8 + 12 + 16:
            self._report()
            raise InvalidTag()
        return int(struct.unpack(">Q", token[:8])[0])

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._aead.decrypt(token[8:20], token[20:], token[:8])
        except InvalidTag:
            self._report()
            raise

    def report_refused(self) -> None:
        self._report("a peer closed the connection during the encrypted handshake: the masters "
                     "probably do not share the same cluster secret (check --secret-file on every master)")

    def _report(self, reason: str = "a peer's message failed authentication: the masters do not share the "
                                     "same cluster secret (check --secret-file on every master)") -> None:
        self._reports.error("peer_auth_failed", reason=reason)


class _BoundedConnection(TcpConnection):  # type: ignore[misc]
    """A pysyncobj connection that never buffers more than one frame of the allowed size."""

    authenticated = False

    def _frame_limit(self) -> int:
        return MAX_FRAME_BYTES if self.authenticated else MAX_HANDSHAKE_FRAME_BYTES

    def _refuse(self, length: int) -> None:
        peer = ""
        sock = self._TcpConnection__socket
        if sock is not None:
            with contextlib.suppress(OSError):
                peer = "{}:{}".format(*sock.getpeername()[:2])
        _refused_frames.error("peer_frame_refused", peer=peer, length=length, limit=self._frame_limit(),
                              authenticated=self.authenticated,
                              reason="frame length out of bounds; connection closed")
        self.disconnect()

    def _header_ok(self, buffer: bytes) -> bool:
        if len(buffer) < _LENGTH.size:
            return True
        length = _LENGTH.unpack_from(buffer)[0]
        if 0 <= length <= self._frame_limit():
            return True
        self._refuse(length)
        return False

    # Replaces pysyncobj's read: reads at most up to one maximal frame ahead, and checks the
    # next frame's header as soon as it is in. Each system call here costs the Raft thread the
    # GIL (it waits to get it back), so no SO_ERROR query (recv reports a socket error itself)
    # and no second recv after a short one (it would only fail with EAGAIN; the poller reports
    # the socket again if more arrives).
    def _TcpConnection__processRead(self) -> bool:
        buffer: bytes = getattr(self, "_TcpConnection__readBuffer")  # noqa: B009 - pysyncobj's private field
        room = _LENGTH.size + self._frame_limit() - len(buffer)
        if room <= 0:
            return False  # parse what is buffered first; the rest waits in the socket
        sock = self._TcpConnection__socket
        want = min(self._TcpConnection__recvBufferSize, room)
        try:
            incoming = sock.recv(want)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.disconnect()
            return False
        if not incoming:
            self.disconnect()
            return False
        buffer += incoming
        setattr(self, "_TcpConnection__readBuffer", buffer)  # noqa: B010 - pysyncobj's private field
        return self._header_ok(buffer) and len(incoming) == want

    def _TcpConnection__processConnection(self, descr: int, eventType: int) -> None:
        """The common case, an established connection with data to read, without pysyncobj's
        SO_ERROR query per event (see above); everything else goes to pysyncobj."""
        if (eventType != POLL_EVENT_TYPE.READ or descr != self._TcpConnection__fileno
                or self._TcpConnection__state != CONNECTION_STATE.CONNECTED):
            TcpConnection._TcpConnection__processConnection(self, descr, eventType)
            return
        self._TcpConnection__processConnectionTimeout()
        if self._TcpConnection__state != CONNECTION_STATE.CONNECTED:
            return
        self._TcpConnection__tryReadBuffer()
        while self._TcpConnection__state == CONNECTION_STATE.CONNECTED:
            message = self._TcpConnection__processParseMessage()
            if message is None:
                return
            on_message = self._TcpConnection__onMessageReceived
            if on_message is not None:
                on_message(message)

    def _TcpConnection__processParseMessage(self) -> Any:
        if not self._header_ok(self._TcpConnection__readBuffer):
            return None
        message = TcpConnection._TcpConnection__processParseMessage(self)
        if message is not None:
            # It decrypted with the cluster key: a peer, allowed full-size frames.
            self.authenticated = True
        return message

    def disconnect(self) -> None:
        self.authenticated = False
        super().disconnect()


class _NoCompression:
    """Peer messages are small and travel a LAN: zlib cost more CPU per commit than it saved."""

    @staticmethod
    def compress(data: bytes, _level: int = 0) -> bytes:
        return data

    @staticmethod
    def decompress(data: bytes) -> bytes:
        return data


class _PeerServer(TcpServer):  # type: ignore[misc]
    """pysyncobj's listening socket with a real backlog: it listened with 5, so a burst of
    connections (a port scan, a flood of strangers) made the kernel drop connection requests,
    masters reconnecting among them, who then waited for retransmits (1 s, 3 s, ...)."""

    def bind(self) -> None:
        super().bind()
        getattr(self, "_TcpServer__socket").listen(LISTEN_BACKLOG)  # noqa: B009 - pysyncobj's private field


pysyncobj.tcp_connection.zlib = _NoCompression
pysyncobj.tcp_server.TcpConnection = _BoundedConnection
pysyncobj.transport.TcpConnection = _BoundedConnection
pysyncobj.transport.TcpServer = _PeerServer


class PeerTransport(TCPTransport):  # type: ignore[misc]
    """pysyncobj's TCP transport with the cipher above, the read-index hooks, and a report
    when a peer hangs up during the handshake (the side with the wrong secret learns it so)."""

    def __init__(self, syncObj: SyncObj, selfNode: Any, otherNodes: Any) -> None:
        # Swap the cipher in before any connection object copies it.
        syncObj._SyncObj__encryptor = PeerCipher(syncObj.conf.password)
        self._reads: ReadIndexTracker = syncObj._replica.reads
        self._handshaking: set[Any] = set()
        self._accepted_at: dict[Any, float] = {}
        super().__init__(syncObj, selfNode, otherNodes)

    def _onNewIncomingConnection(self, conn: Any) -> None:
        self._accepted_at[conn] = time.monotonic()
        super()._onNewIncomingConnection(conn)

    def _onTick(self) -> None:
        super()._onTick()
        if not self._accepted_at:
            return
        now = time.monotonic()
        for conn, accepted in list(self._accepted_at.items()):
            if conn not in self._unknownConnections:
                del self._accepted_at[conn]
            elif now - accepted > HANDSHAKE_TIMEOUT:
                del self._accepted_at[conn]
                _slow_handshakes.error("peer_handshake_timeout", timeout_s=HANDSHAKE_TIMEOUT,
                                       reason="an incoming peer connection did not complete the handshake; closed")
                conn.disconnect()

    def _onOutgoingConnected(self, conn: Any) -> None:
        self._handshaking.add(conn)
        super()._onOutgoingConnected(conn)

    def _onOutgoingMessageReceived(self, conn: Any, message: Any) -> None:
        self._handshaking.discard(conn)
        super()._onOutgoingMessageReceived(conn, message)

    def _onDisconnected(self, conn: Any) -> None:
        if conn in self._handshaking:
            self._handshaking.discard(conn)
            cipher = self._syncObj.encryptor
            if isinstance(cipher, PeerCipher):
                cipher.report_refused()
        super()._onDisconnected(conn)

    def send(self, node: Any, message: Any) -> None:
        super().send(node, message)
        if isinstance(message, dict) and message.get("type") == "append_entries":
            self._reads.on_sent(node)

    def _peer_connections(self) -> list[Any]:
        return [*self._connections.values(), *self._unknownConnections]

    def unread_bytes(self) -> int:
        """Peer input received and not yet parsed: in the kernel's socket buffers and in the
        connections' read buffers (for the election log: what a starved replica left unread)."""
        total = 0
        for conn in self._peer_connections():
            total += len(getattr(conn, "_TcpConnection__readBuffer", b""))
            total += _socket_queue(conn, termios.FIONREAD)
        return total

    def queued_bytes(self) -> tuple[int, int]:
        """Peer output not yet sent: (in the connections' write buffers, in the kernel's send
        queues). The first grows when a peer reads slower than this replica writes."""
        buffered = kernel = 0
        for conn in self._peer_connections():
            buffered += len(getattr(conn, "_TcpConnection__writeBuffer", b""))
            kernel += _socket_queue(conn, termios.TIOCOUTQ)
        return buffered, kernel


    def unacked_to(self, node: Any) -> int:
        """Bytes sent to `node` and not yet acknowledged by its host (buffered here, or in the
        kernel's send queue, which holds a TCP segment until the peer acknowledges it)."""
        conn = self._connections.get(node)
        if conn is None:
            return 0
        return len(getattr(conn, "_TcpConnection__writeBuffer", b"")) + _socket_queue(conn, termios.TIOCOUTQ)


def _socket_queue(conn: Any, request: int) -> int:
    sock = getattr(conn, "_TcpConnection__socket", None)
    if sock is None:
        return 0
    try:
        return int(_INT.unpack(fcntl.ioctl(sock.fileno(), request, b"\0" * _INT.size))[0])
    except (OSError, ValueError):  # closed meanwhile
        return 0
