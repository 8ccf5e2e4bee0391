"""Runs a NodePortProxy (in its own thread) inside a namespace: each stdin line is a JSON
{"views": [...], "node_ips": [...]}, applied with update_blocking and answered "ok" (or
"error: ..."); EOF stops the proxy."""

from __future__ import annotations

import json
import sys

from raftorch.net import EndpointView, NodePortProxy, ServiceView


def main() -> None:
    proxy = NodePortProxy(connect_timeout=1.0)
    proxy.start_in_thread()
    try:
        for line in sys.stdin:
            request = json.loads(line)
            views = [ServiceView(**{**v, "endpoints": tuple(EndpointView(**e) for e in v["endpoints"])})
                     for v in request["views"]]
            try:
                proxy.update_blocking(views, request["node_ips"])
                print("ok" if not proxy.bind_errors else f"error: {proxy.bind_errors}", flush=True)
            except Exception as e:
                print(f"error: {e!r}", flush=True)
    finally:
        proxy.stop()


if __name__ == "__main__":
    main()
