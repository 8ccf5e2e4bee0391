"""An in-memory replica with the RaftReplica interface, for unit tests: commands apply at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager

from raftorch.api.v1 import store_pb2
from raftorch.store.machine import BATCH_FORMAT, StateMachine
from raftorch.store.replica import ReplicaStatus
from raftorch.store.watch import WatchHub


class MemoryReplica:
    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.machine = StateMachine(name)
        self.lock = threading.RLock()
        self.hub = WatchHub()
        self.is_leader = True
        self.term = 1
        self.leader_peer_addr = "memory"
        self._index = 0

    @contextmanager
    def reading(self) -> Iterator[StateMachine]:
        with self.lock:
            yield self.machine

    def submit(self, command: store_pb2.Command) -> Future[store_pb2.CommandResult]:
        batch = store_pb2.CommandBatch(format=BATCH_FORMAT, commands=[command])
        with self.lock:
            self._index += 1
            (result,) = self.machine.apply_batch(batch.SerializeToString())
            self.hub.publish(self.machine.take_changes(), self.machine.revision)
        future: Future[store_pb2.CommandResult] = Future()
        future.set_result(result)
        return future

    def barrier(self) -> Future[None]:
        future: Future[None] = Future()
        future.set_result(None)
        return future

    def read_barrier(self) -> Future[None]:
        return self.barrier()

    def status(self) -> ReplicaStatus:
        return ReplicaStatus("leader", self.term, self._index, self._index, self.leader_peer_addr,
                             self.machine.revision, True)

    def stop(self) -> None:
        pass
