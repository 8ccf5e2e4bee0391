"""Child processes of bench/control_plane_bench.py: hollow-node fleets and the create-latency
probe (separate processes, so neither competes with the benchmark's own threads)."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import random
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from raftorch.agent.hollow import HollowFleet
from raftorch.api.v1 import objects_pb2
from raftorch.client import Client, set_default_credentials
from raftorch.client.connection import default_credentials
from raftorch.errors import AlreadyExists, RaftorchError
from raftorch.objects import format_time
from raftorch.rpc import Credentials

NAMESPACE = "default"
NODE_CPU, NODE_MEMORY, NODE_PODS = "4", "16Gi", "110"
HEARTBEAT_PERIOD = 1.0
REGISTER_ATTEMPTS = 10


class BenchFleet(HollowFleet):
    """A HollowFleet whose registration survives pod CIDR collisions with other fleets."""

    collisions = 0

    def register(self, name: str) -> None:
        for attempt in range(REGISTER_ATTEMPTS):
            try:
                super().register(name)
                return
            except AlreadyExists:
                if attempt == REGISTER_ATTEMPTS - 1:
                    raise
                self.collisions += 1
                time.sleep(random.uniform(0.0, 0.05))


def fleet_main(endpoints: list[str], names: list[str], conn: multiprocessing.connection.Connection) -> None:
    """One fleet process. Sends ("ready", info) once registered; answers "stats"; exits on "stop"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent tears down on Ctrl-C
    fleet = BenchFleet(endpoints, names, HEARTBEAT_PERIOD, NODE_CPU, NODE_MEMORY, NODE_PODS)
    try:
        started = time.monotonic()
        fleet.start()
        conn.send(("ready", {"register_s": time.monotonic() - started, "collisions": fleet.collisions}))
        while (msg := conn.recv()) != "stop":
            if msg == "stats":
                conn.send(("stats", fleet.heartbeats_sent))
    except (BrokenPipeError, EOFError):
        pass
    except Exception:
        with contextlib.suppress(BrokenPipeError):
            conn.send(("error", traceback.format_exc()))
    finally:
        fleet.stop()


# -- the create-latency probe process ----------------------------------------------------------


def probe_event(i: int) -> objects_pb2.Event:
    now = format_time(time.time())
    return objects_pb2.Event(
        metadata=objects_pb2.ObjectMeta(name=f"bench-probe-{i:06d}", namespace=NAMESPACE),
        involved_object=objects_pb2.ObjectReference(kind="Pod", namespace=NAMESPACE, name="bench-probe"),
        reason="BenchProbe", message="create-latency probe", type="Normal", count=1,
        first_timestamp=now, last_timestamp=now, source="control-plane-bench")


def probe_main(endpoints: list[str], rate: float, conn: multiprocessing.connection.Connection) -> None:
    """Creates one Event every 1/rate s until "stop"; then sends (latencies, errors)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    client = Client(endpoints, timeout=10.0, retry_for=30.0)
    latencies: list[float] = []
    errors = 0
    try:
        client.cluster_status()  # connects and finds the leader before the clock starts
        conn.send(("ready",))
        interval = 1.0 / rate
        next_at = time.monotonic()
        for i in itertools.count():
            if conn.poll(max(0.0, next_at - time.monotonic())):
                break
            next_at += interval
            t0 = time.perf_counter()
            try:
                client.objects.create(probe_event(i))
            except RaftorchError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)
        conn.send(("done", latencies, errors))
    except (BrokenPipeError, EOFError):
        pass
    except Exception:
        with contextlib.suppress(BrokenPipeError):
            conn.send(("error", traceback.format_exc()))
    finally:
        client.close()


@dataclass(slots=True)
class Child:
    proc: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection

    def stop(self, timeout: float = 15.0) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _with_credentials(creds: Credentials | None, target: Callable[..., None], *args: object) -> None:
    # A spawned child starts without this process's default credentials (the cluster's admin).
    set_default_credentials(creds)
    target(*args)


def spawn(target: Callable[..., None], *args: object) -> Child:
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe()
    proc = ctx.Process(target=_with_credentials, args=(default_credentials(), target, *args, child_end),
                       daemon=True)
    proc.start()
    child_end.close()
    return Child(proc, parent_end)


# -- watches in this process -------------------------------------------------------------------
