"""The agent endpoint's guard: only masters may call it.

The endpoint serves TLS that requires a client certificate, and gRPC checks that certificate
against the cluster CA (signature chain and validity) during the handshake, so a call that
reaches the guard comes from a holder of a certificate the CA issued. The guard reads the
verified certificate's common name from gRPC's peer: no X.509 parsing in the agent, which keeps
`cryptography` out of its process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from raftorch.auth.identity import MASTER_PREFIX, NODE_PREFIX, master_identity, set_identity


def _describe(cn: str) -> str:
    if cn.startswith(NODE_PREFIX):
        return f'node "{cn[len(NODE_PREFIX):]}"'
    return f'"{cn}"'


class MasterOnlyInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """For a thread-pool server whose TLS requires client certificates of the cluster CA."""

    def _check(self, context: grpc.ServicerContext) -> None:
        auth = context.auth_context()
        names = auth.get("x509_common_name") or []
        if auth.get("transport_security_type") != [b"ssl"] or len(names) != 1:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "the agent endpoint needs a master's client certificate")
        cn = names[0].decode(errors="replace")
        name = cn[len(MASTER_PREFIX):]
        if not cn.startswith(MASTER_PREFIX) or not name:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"{_describe(cn)} may not call the agent endpoint: masters only")
        set_identity(master_identity(name))

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        h: Any = handler
        check = self._check
        if h.unary_stream is not None:
            inner_us = h.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Any:
                check(context)
                yield from inner_us(request, context)

            return grpc.unary_stream_rpc_method_handler(unary_stream, h.request_deserializer, h.response_serializer)
        if h.stream_stream is not None:
            inner_ss = h.stream_stream

            def stream_stream(request_iterator: Any, context: grpc.ServicerContext) -> Any:
                check(context)
                yield from inner_ss(request_iterator, context)

            return grpc.stream_stream_rpc_method_handler(stream_stream, h.request_deserializer,
                                                         h.response_serializer)
        if h.unary_unary is not None:
            inner_uu = h.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                check(context)
                return inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, h.request_deserializer, h.response_serializer)
        return handler
