"""Hollow nodes: many fake nodes in one process, for tests and scale benchmarks.

Like Kubernetes' kubemark, each hollow node registers, heartbeats and "runs" the pods bound
to it: a pod becomes Running and Ready with a made-up address at once, nothing is started.
One heartbeat stream and one pod watch (per 500 nodes) serve the whole fleet, so a thousand
nodes cost a few threads, not thousands; the watch carries the pods bound to the fleet's
nodes only, as an agent's carries its own node's. Pod status reports are batched the same
way: one call carries the statuses of many nodes' pods, each update naming its node (node
restriction checks every node and every pod's binding), and the master applies each call in
one transaction. Real agents report their own node's pods, a call per report; the master
does the same work per pod for both (a read, a status check, a write, a watch event): the
fleet saves only the per-call cost of a thousand agents.

Run-to-completion pods (jobs) can finish too: a pod annotated `hollow.raftorch.io/exit-code: N`
"exits" with N after `hollow.raftorch.io/run-seconds` (default 1): Succeeded for 0, Failed
otherwise, or, with restartPolicy OnFailure, restarted (its restart count goes up) and run again.
Pods without the annotation run until deleted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import structlog

from raftorch.api.v1 import agents_pb2, objects_pb2
from raftorch.client import Client
from raftorch.client.objects import ObjectWatch
from raftorch.errors import RaftorchError
from raftorch.objects import format_time, is_mirror
from raftorch.rpc import Credentials

log = structlog.get_logger("raftorch.hollow")

# Nodes per heartbeat message (one message per period carries a whole chunk of the fleet), and
# per pod watch (one stream for the pods bound to a chunk of the fleet's nodes).
HEARTBEAT_CHUNK = 500
WATCH_CHUNK = 500
# Pod statuses per report call (any nodes of the fleet), and calls in flight at once: a call
# waits for its transaction to commit, so the next batch goes out meanwhile.
REPORT_BATCH = 250
REPORTS_IN_FLIGHT = 4
EXIT_CODE_ANNOTATION = "hollow.raftorch.io/exit-code"
RUN_SECONDS_ANNOTATION = "hollow.raftorch.io/run-seconds"


class HollowFleet:
    def __init__(self, endpoints: list[str], names: list[str], heartbeat_period: float = 1.0,
                 cpu: str = "4", memory: str = "16Gi", pods: str = "110",
                 credentials: Credentials | None = None) -> None:
        """`credentials`: an admin's (hollow nodes share one client, so no node certificate
        names them all); None only against --insecure masters."""
        self.client = Client(endpoints, timeout=5.0, retry_for=30.0, credentials=credentials)
        self._conn = self.client._conn
        self.names = list(names)
        self.period = heartbeat_period
        self.capacity = {"cpu": cpu, "memory": memory, "pods": pods}
        self._stop = threading.Event()
        self._silenced: set[str] = set()
        self._cidrs: dict[str, ipaddress.IPv4Network] = {}
        self._next_ip: dict[str, Iterator[ipaddress.IPv4Address]] = {}
        self._reported: dict[str, str] = {}
        self._statuses: queue.Queue[tuple[str, agents_pb2.PodStatusUpdate]] = queue.Queue()
        self._in_flight: dict[str, int] = {}  # pod uid -> report calls in flight that carry it
        self._in_flight_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._watches: list[ObjectWatch] = []
        # (monotonic due time, node, pod, restarts so far) of pods that will exit.
        self._exits: list[tuple[float, str, objects_pb2.Pod, int]] = []
        self._exits_lock = threading.Lock()
        self.heartbeats_sent = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        for name in self.names:
            self.register(name)
        alive = list(self.names)
        chunks = [alive[i:i + WATCH_CHUNK] for i in range(0, len(alive), WATCH_CHUNK)]
        loops: list[tuple[Callable[..., None], tuple[object, ...]]] = [
            (self._heartbeat_loop, ()), (self._report_loop, ()), *((self._watch_loop, (c,)) for c in chunks)]
        for target, args in loops:
            t = threading.Thread(target=target, args=args, name=f"hollow-{target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for watch in list(self._watches):
            watch.close()
        for t in self._threads:
            t.join(timeout=5)
        self.client.close()

    def register(self, name: str) -> None:
        node = objects_pb2.Node(
            metadata=objects_pb2.ObjectMeta(name=name, labels={"kubernetes.io/hostname": name}),
            status=objects_pb2.NodeStatus(capacity=self.capacity, allocatable=self.capacity, runtime="fake",
                                          addresses=[objects_pb2.NodeAddress(type="Hostname", address=name)]))
        req = agents_pb2.RegisterNodeRequest(node=node)
        got: objects_pb2.Node = self._conn.call(lambda s, t: s.agents.RegisterNode(req, timeout=t))
        net = ipaddress.ip_network(got.spec.pod_cidr)
        assert isinstance(net, ipaddress.IPv4Network)
        self._cidrs[name] = net
        self._next_ip[name] = itertools.cycle(list(net.hosts())[1:])

    def silence(self, name: str) -> None:
        """Stop heartbeating and acting for one node, as if its host died."""
        self._silenced.add(name)

    def revive(self, name: str) -> None:
        self._silenced.discard(name)

    # -- heartbeats -----------------------------------------------------------------------

    def _beats(self) -> Iterator[agents_pb2.HeartbeatRequest]:
        seq = itertools.count(1)
        while not self._stop.is_set():
            started = time.monotonic()
            # One message per period for every live node of the fleet (in chunks), not one each.
            alive = [name for name in self.names if name not in self._silenced]
            for start in range(0, len(alive), HEARTBEAT_CHUNK):
                chunk = alive[start:start + HEARTBEAT_CHUNK]
                yield agents_pb2.HeartbeatRequest(node=chunk[0], nodes=chunk[1:], sequence=next(seq))
                self.heartbeats_sent += len(chunk)
            self._stop.wait(max(0.0, self.period - (time.monotonic() - started)))

    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            address = self._conn._candidate()
            try:
                for _ in self._conn.stubs(address).agents.Heartbeat(self._beats()):
                    if self._stop.is_set():
                        break
            except grpc.RpcError:
                self._conn._failed(address)
                self._stop.wait(0.2)

    # -- pods -------------------------------------------------------------------------------

    def _watch_loop(self, names: list[str]) -> None:
        # The pods of these nodes only, in one stream (as each agent watches its own node's).
        mine = set(names)
        watch = ObjectWatch(self._conn, agents_pb2.WatchNodePodsRequest(node=names[0], nodes=names[1:]), "agents")
        self._watches.append(watch)
        try:
            for event in watch:
                pod = event.object
                assert isinstance(pod, objects_pb2.Pod)
                node = pod.spec.node_name
                if node not in mine or node in self._silenced or event.type == "DELETED":
                    self._reported.pop(pod.metadata.uid, None)
                    continue
                if is_mirror(pod):
                    continue
                if pod.status.phase == "Running" or self._reported.get(pod.metadata.uid) == "Running":
                    continue
                self._reported[pod.metadata.uid] = "Running"
                self._statuses.put((node, self._running(node, pod)))
                self._plan_exit(node, pod, 0)
        except RaftorchError as err:
            if not self._stop.is_set():
                log.warning("hollow_watch_failed", error=str(err))

    def _running(self, node: str, pod: objects_pb2.Pod) -> agents_pb2.PodStatusUpdate:
        now = format_time(time.time())
        status = objects_pb2.PodStatus(
            phase="Running", pod_ip=str(next(self._next_ip[node])), host_ip=node, start_time=now,
            conditions=[objects_pb2.Condition(type="Ready", status="True", last_transition_time=now)],
            container_statuses=[objects_pb2.ContainerStatus(
                name=c.name, ready=True, image=c.image,
                state=objects_pb2.ContainerState(state="running", started_at=now)) for c in pod.spec.containers])
        return agents_pb2.PodStatusUpdate(namespace=pod.metadata.namespace, name=pod.metadata.name,
                                          uid=pod.metadata.uid, status=status)

    def _plan_exit(self, node: str, pod: objects_pb2.Pod, restarts: int) -> None:
        code = pod.metadata.annotations.get(EXIT_CODE_ANNOTATION)
        if code is None:
            return
        try:
            run = float(pod.metadata.annotations.get(RUN_SECONDS_ANNOTATION, "1"))
        except ValueError:
            run = 1.0
        with self._exits_lock:
            self._exits.append((time.monotonic() + run, node, pod, restarts))

    def _due_exits(self) -> None:
        now = time.monotonic()
        with self._exits_lock:
            due = [e for e in self._exits if e[0] <= now]
            self._exits = [e for e in self._exits if e[0] > now]
        for _, node, pod, restarts in due:
            if pod.metadata.uid not in self._reported:
                continue  # deleted meanwhile
            code_text = pod.metadata.annotations.get(EXIT_CODE_ANNOTATION, "0")
            code = int(code_text) if code_text.lstrip("-").isdigit() else 1
            update = self._running(node, pod)
            if code != 0 and pod.spec.restart_policy == "OnFailure":
                for c in update.status.container_statuses:
                    c.restart_count = restarts + 1
                self._statuses.put((node, update))
                self._plan_exit(node, pod, restarts + 1)
                continue
            now_text = format_time(time.time())
            update.status.phase = "Succeeded" if code == 0 else "Failed"
            del update.status.conditions[:]
            update.status.conditions.add(type="Ready", status="False", reason="PodCompleted",
                                         last_transition_time=now_text)
            for c in update.status.container_statuses:
                c.ready = False
                c.restart_count = restarts
                c.state.CopyFrom(objects_pb2.ContainerState(
                    state="terminated", exit_code=code, reason="Completed" if code == 0 else "Error",
                    finished_at=now_text))
            self._statuses.put((node, update))

    def _report(self, req: agents_pb2.ReportPodStatusRequest) -> None:
        self._conn.call(lambda s, t: s.agents.ReportPodStatus(req, timeout=t))

    def _report_batch(self, updates: list[agents_pb2.PodStatusUpdate], slots: threading.Semaphore) -> None:
        # One call for the pods of many nodes: each update names its node.
        req = agents_pb2.ReportPodStatusRequest(node=updates[0].node, updates=updates)
        try:
            self._report(req)
        except RaftorchError as err:
            log.warning("hollow_report_failed", pods=len(updates), error=str(err))
            for u in updates:
                self._reported.pop(u.uid, None)
        finally:
            with self._in_flight_lock:
                for u in updates:
                    self._in_flight[u.uid] -= 1
                    if not self._in_flight[u.uid]:
                        del self._in_flight[u.uid]
            slots.release()

    def _report_loop(self) -> None:
        slots = threading.Semaphore(REPORTS_IN_FLIGHT)
        with ThreadPoolExecutor(REPORTS_IN_FLIGHT, thread_name_prefix="hollow-report") as pool:
            while not self._stop.is_set():
                self._due_exits()
                try:
                    node, first = self._statuses.get(timeout=0.2)
                except queue.Empty:
                    continue
                first.node = node
                batch = [first]
                with contextlib.suppress(queue.Empty):
                    while len(batch) < REPORT_BATCH:
                        node, update = self._statuses.get_nowait()
                        update.node = node
                        batch.append(update)
                with self._in_flight_lock:
                    clash = any(u.uid in self._in_flight for u in batch)
                if clash:
                    # A pod's newer status (a job that ended) must not overtake its older one:
                    # let every call in flight finish first.
                    for _ in range(REPORTS_IN_FLIGHT):
                        slots.acquire()
                    for _ in range(REPORTS_IN_FLIGHT):
                        slots.release()
                slots.acquire()
                with self._in_flight_lock:
                    for u in batch:
                        self._in_flight[u.uid] = self._in_flight.get(u.uid, 0) + 1
                pool.submit(self._report_batch, batch, slots)
