"""Jobs, cron jobs, daemon sets, taints and anti-affinity across three real masters and hollow nodes.

Hollow job pods "exit" as their `hollow.raftorch.io/exit-code` annotation says (see
raftorch/agent/hollow.py), so run-to-completion logic is exercised without containers.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from raftorch.agent.hollow import EXIT_CODE_ANNOTATION, RUN_SECONDS_ANNOTATION, HollowFleet
from raftorch.api.v1 import objects_pb2
from raftorch.cli.main import cli
from raftorch.client import Client
from raftorch.errors import Invalid, NotFound
from raftorch.local.masters import LocalMasters
from raftorch.objects import TEST_EVERY_SECONDS_ANNOTATION
from tests.integration._wait import eventually

pytestmark = pytest.mark.processes

NODES = ["node-a", "node-b", "node-c"]
HEARTBEAT = 0.5


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalMasters]:
    masters = LocalMasters(tmp_path / "masters", extra_args=["--node-grace", "2", "--eviction-timeout", "2"])
    masters.start()
    try:
        masters.wait_ready()
        yield masters
    finally:
        masters.kill()


@pytest.fixture
def fleet(cluster: LocalMasters) -> Iterator[HollowFleet]:
    nodes = HollowFleet(cluster.endpoints, NODES, heartbeat_period=HEARTBEAT)
    nodes.start()
    try:
        with cluster.client() as c:
            eventually(lambda: all(_node_ready(c, n) for n in NODES), what="nodes Ready")
        yield nodes
    finally:
        nodes.stop()



def _node_ready(c: Client, name: str) -> bool:
    try:
        node = c.objects.get("node", name)
    except NotFound:
        return False
    assert isinstance(node, objects_pb2.Node)
    return any(cd.type == "Ready" and cd.status == "True" for cd in node.status.conditions)


def raftctl(cluster: LocalMasters, tmp_path: Path, *args: str) -> Result:
    base = ["--endpoints", ",".join(cluster.endpoints), "--config", str(tmp_path / "no-config")]
    return CliRunner().invoke(cli, [*base, *args])


def _template(name: str, exit_code: int | None = 0, run_seconds: float = 0.5,
              policy: str = "Never") -> objects_pb2.PodTemplateSpec:
    annotations = {}
    if exit_code is not None:
        annotations = {EXIT_CODE_ANNOTATION: str(exit_code), RUN_SECONDS_ANNOTATION: str(run_seconds)}
    return objects_pb2.PodTemplateSpec(
        metadata=objects_pb2.ObjectMeta(labels={"app": name}, annotations=annotations),
        spec=objects_pb2.PodSpec(restart_policy=policy,
                                 containers=[objects_pb2.Container(name="work", image="work:v1")]))


def job(name: str, completions: int = 1, parallelism: int = 1, *, exit_code: int | None = 0,
        run_seconds: float = 0.5, backoff_limit: int = 6, active_deadline_seconds: int | None = None
        ) -> objects_pb2.Job:
    out = objects_pb2.Job(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.JobSpec(completions=completions, parallelism=parallelism, backoff_limit=backoff_limit,
                                 template=_template(name, exit_code, run_seconds)))
    if active_deadline_seconds is not None:
        out.spec.active_deadline_seconds = active_deadline_seconds
    return out


def _job(c: Client, name: str) -> objects_pb2.Job:
    got = c.objects.get("jobs", name, "default")
    assert isinstance(got, objects_pb2.Job)
    return got


def _finished(c: Client, name: str) -> objects_pb2.Condition | None:
    return _finished_of(_job(c, name))


def _finished_of(job: objects_pb2.Job) -> objects_pb2.Condition | None:
    for cond in job.status.conditions:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return cond
    return None


def _events(c: Client, kind: str, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the events about one object (written about once a second)."""
    items, _ = c.objects.list("events", "default")
    return [(e.type, e.reason, e.message) for e in items if isinstance(e, objects_pb2.Event)
            and e.involved_object.kind == kind and e.involved_object.name == name]


def _pods(c: Client, selector: str) -> list[objects_pb2.Pod]:
    items, _ = c.objects.list("pods", "default", label_selector=selector)
    return [p for p in items if isinstance(p, objects_pb2.Pod)]


class PodWatch:
    """Follows pods through a watch and records the most that ran at once and the fewest Ready."""

    def __init__(self, c: Client, selector: str) -> None:
        self.pods: dict[str, objects_pb2.Pod] = {}
        self.max_running = 0
        self.min_ready = 10**9
        self.started = False
        self._watch = c.objects.watch("pods", "default", label_selector=selector)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for ev in self._watch:
            pod = ev.object
            assert isinstance(pod, objects_pb2.Pod)
            if ev.type == "DELETED":
                self.pods.pop(pod.metadata.name, None)
            else:
                self.pods[pod.metadata.name] = pod
            running = sum(1 for p in self.pods.values() if p.status.phase not in ("Succeeded", "Failed"))
            self.max_running = max(self.max_running, running)
            if self.started:
                ready = sum(1 for p in self.pods.values()
                            if any(cd.type == "Ready" and cd.status == "True" for cd in p.status.conditions))
                self.min_ready = min(self.min_ready, ready)

    def close(self) -> None:
        self._watch.close()


# -- jobs ------------------------------------------------------------------------------------------


def test_job_runs_completions_at_most_parallelism_at_once_and_wait_returns(cluster: LocalMasters,
                                                                           fleet: HollowFleet, tmp_path: Path) -> None:
    with cluster.client() as c:
        watch = PodWatch(c, "job-name=batch")
        c.objects.create(job("batch", completions=5, parallelism=2))
        result = raftctl(cluster, tmp_path, "wait", "--for=condition=complete", "job/batch", "--timeout=60s")
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "job.batch/batch condition met"
        status = _job(c, "batch").status
        assert (status.succeeded, status.failed, status.active) == (5, 0, 0)
        eventually(lambda: len(watch.pods) == 5, what="the watch saw the five pods")
        watch.close()
        assert watch.max_running <= 2
        got = raftctl(cluster, tmp_path, "get", "jobs")
        assert got.output.split("\n")[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
        assert got.output.split("\n")[1].split()[:3] == ["batch", "Complete", "5/5"]
        # The job controller's events, as `raftctl describe job` shows them.
        eventually(lambda: ("Normal", "Completed", "Job completed") in _events(c, "Job", "batch"),
                   what="the Completed event")
        created = sorted(m for _, reason, m in _events(c, "Job", "batch") if reason == "SuccessfulCreate")
        assert created == sorted(f"Created pod: {name}" for name in watch.pods)


def test_wait_times_out_with_a_non_zero_exit(cluster: LocalMasters, fleet: HollowFleet, tmp_path: Path) -> None:
    with cluster.client() as c:
        c.objects.create(job("forever", exit_code=None))
        result = raftctl(cluster, tmp_path, "wait", "--for=condition=complete", "job/forever", "--timeout=1s")
        assert result.exit_code == 1
        assert "timed out waiting for the condition on jobs/forever" in result.output


def test_failing_job_fails_after_backoff_limit_plus_one_pods(cluster: LocalMasters, fleet: HollowFleet) -> None:
    with cluster.client() as c:
        c.objects.create(job("broken", exit_code=1, run_seconds=0.2, backoff_limit=2))
        eventually(lambda: _finished(c, "broken") is not None, what="job finished")
        cond = _finished(c, "broken")
        assert cond is not None and (cond.type, cond.reason) == ("Failed", "BackoffLimitExceeded")
        pods = _pods(c, "job-name=broken")
        assert len(pods) == 3 and all(p.status.phase == "Failed" for p in pods)
        eventually(lambda: ("Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
                   in _events(c, "Job", "broken"), what="the BackoffLimitExceeded event")


def test_active_deadline_kills_pods_and_fails_the_job(cluster: LocalMasters, fleet: HollowFleet) -> None:
    with cluster.client() as c:
        c.objects.create(job("slow", completions=4, parallelism=2, exit_code=None, active_deadline_seconds=2))
        eventually(lambda: len(_pods(c, "job-name=slow")) == 2, what="two pods running")
        eventually(lambda: _finished(c, "slow") is not None, what="job finished")
        cond = _finished(c, "slow")
        assert cond is not None and (cond.type, cond.reason) == ("Failed", "DeadlineExceeded")
        eventually(lambda: _pods(c, "job-name=slow") == [], what="pods deleted")


def test_finished_job_and_its_pods_go_after_ttl(cluster: LocalMasters, fleet: HollowFleet) -> None:
    with cluster.client() as c:
        # The job can finish and go within its 1 s TTL between two polls: follow its watch.
        _, revision = c.objects.list("jobs", "default")
        watch = c.objects.watch("jobs", "default", resource_version=revision)
        short = job("short", run_seconds=0.2)
        short.spec.ttl_seconds_after_finished = 1
        c.objects.create(short)
        seen: list[tuple[str, bool]] = []
        for event in watch:
            if isinstance(event.object, objects_pb2.Job) and event.object.metadata.name == "short":
                seen.append((event.type, _finished_of(event.object) is not None))
                if event.type == "DELETED":
                    break
        watch.close()
        # Finished first, then deleted after its TTL.
        assert ("MODIFIED", True) in seen[:-1], seen
        eventually(lambda: _pods(c, "job-name=short") == [], what="its pods collected")


# -- daemon sets -------------------------------------------------------------------------------------


def daemon_set(name: str, image: str = "agent:v1") -> objects_pb2.DaemonSet:
    labels = {"app": name}
    return objects_pb2.DaemonSet(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default"),
        spec=objects_pb2.DaemonSetSpec(
            selector=objects_pb2.LabelSelector(match_labels=labels),
            update_strategy=objects_pb2.DaemonSetUpdateStrategy(
                type="RollingUpdate", rolling_update=objects_pb2.RollingUpdateDaemonSet(max_unavailable="1")),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels=labels),
                spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(name="agent", image=image)]))))


def _by_node(c: Client, app: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in _pods(c, f"app={app}"):
        out.setdefault(p.spec.node_name, []).append(p.spec.containers[0].image)
    return out


def test_daemonset_one_per_node_follows_nodes_and_rolls(cluster: LocalMasters, fleet: HollowFleet,
                                                        tmp_path: Path) -> None:
    with cluster.client() as c:
        c.objects.create(daemon_set("logs"))
        eventually(lambda: {n: len(v) for n, v in _by_node(c, "logs").items()} == dict.fromkeys(NODES, 1),
                   what="one pod on each of 3 nodes")
        first = sorted(f"Created pod: {p.metadata.name}" for p in _pods(c, "app=logs"))
        eventually(lambda: sorted(m for _, reason, m in _events(c, "DaemonSet", "logs")
                                  if reason == "SuccessfulCreate") == first, what="a SuccessfulCreate per pod")
        extra = HollowFleet(cluster.endpoints, ["node-d"], heartbeat_period=HEARTBEAT)
        extra.start()
        try:
            eventually(lambda: "node-d" in _by_node(c, "logs"), what="the new node got a pod")
            assert raftctl(cluster, tmp_path, "cordon", "node-d").exit_code == 0
            eventually(lambda: "node-d" not in _by_node(c, "logs"), what="the cordoned node lost its pod")
            taint = raftctl(cluster, tmp_path, "taint", "nodes", "node-c", "dedicated=db:NoSchedule")
            assert taint.exit_code == 0, taint.output
            eventually(lambda: sorted(_by_node(c, "logs")) == ["node-a", "node-b"],
                       what="the tainted node lost its pod")
            assert raftctl(cluster, tmp_path, "taint", "nodes", "node-c", "dedicated-").exit_code == 0
            eventually(lambda: sorted(_by_node(c, "logs")) == NODES, what="the untainted node got one again")
            eventually(lambda: all(p.status.phase == "Running" for p in _pods(c, "app=logs")), what="all Running")

            watch = PodWatch(c, "app=logs")
            eventually(lambda: len(watch.pods) == 3, what="the watch caught up")
            watch.started = True
            ds = c.objects.get("ds", "logs", "default")
            assert isinstance(ds, objects_pb2.DaemonSet)
            ds.spec.template.spec.containers[0].image = "agent:v2"
            c.objects.update(ds)
            eventually(lambda: _by_node(c, "logs") == {n: ["agent:v2"] for n in NODES}, what="rolled to v2")
            eventually(lambda: all(p.status.phase == "Running" for p in _pods(c, "app=logs")), what="v2 Running")
            watch.close()
            assert watch.min_ready >= 2
            got = raftctl(cluster, tmp_path, "get", "ds")
            assert got.output.split("\n")[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE",
                                                         "AVAILABLE", "NODE", "SELECTOR", "AGE"]
        finally:
            extra.stop()


# -- taints and affinity -------------------------------------------------------------------------------


def test_no_execute_taint_evicts_pods_without_a_toleration(cluster: LocalMasters, fleet: HollowFleet,
                                                           tmp_path: Path) -> None:
    def pod(name: str, seconds: int | None = None, tolerate: bool = False) -> objects_pb2.Pod:
        p = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name, namespace="default", labels={"app": "evict"}),
                            spec=objects_pb2.PodSpec(node_selector={"kubernetes.io/hostname": "node-a"},
                                                     containers=[objects_pb2.Container(name="c", image="x:v1")]))
        if tolerate:
            t = p.spec.tolerations.add(key="maintenance", operator="Exists", effect="NoExecute")
            if seconds is not None:
                t.toleration_seconds = seconds
        return p

    with cluster.client() as c:
        for p in (pod("plain"), pod("tolerant", tolerate=True), pod("for-a-while", 2, tolerate=True)):
            c.objects.create(p)
        eventually(lambda: len([p for p in _pods(c, "app=evict") if p.status.phase == "Running"]) == 3,
                   what="three pods running on node-a")
        result = raftctl(cluster, tmp_path, "taint", "nodes", "node-a", "maintenance=yes:NoExecute")
        assert result.exit_code == 0 and result.output.strip() == "node/node-a tainted"
        names = lambda: sorted(p.metadata.name for p in _pods(c, "app=evict"))  # noqa: E731
        eventually(lambda: "plain" not in names(), what="the pod without a toleration evicted")
        eventually(lambda: names() == ["tolerant"], what="the pod with tolerationSeconds evicted after them")


def test_required_anti_affinity_spreads_and_the_extra_replica_stays_pending(cluster: LocalMasters,
                                                                             fleet: HollowFleet) -> None:
    labels = {"app": "spread"}
    term = objects_pb2.PodAffinityTerm(label_selector=objects_pb2.LabelSelector(match_labels=labels),
                                       topology_key="kubernetes.io/hostname")
    spec = objects_pb2.PodSpec(containers=[objects_pb2.Container(name="web", image="web:v1")],
                               affinity=objects_pb2.Affinity(pod_anti_affinity=objects_pb2.PodAntiAffinity(
                                   required_during_scheduling_ignored_during_execution=[term])))
    deploy = objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name="spread", namespace="default"),
        spec=objects_pb2.DeploymentSpec(replicas=4, selector=objects_pb2.LabelSelector(match_labels=labels),
                                        template=objects_pb2.PodTemplateSpec(
                                            metadata=objects_pb2.ObjectMeta(labels=labels), spec=spec)))
    with cluster.client() as c:
        c.objects.create(deploy)
        eventually(lambda: sorted(p.spec.node_name for p in _pods(c, "app=spread") if p.spec.node_name) == NODES
                   and len(_pods(c, "app=spread")) == 4, what="three pods on three nodes and a fourth")
        pending = [p for p in _pods(c, "app=spread") if not p.spec.node_name]
        assert len(pending) == 1

        def failed_scheduling() -> list[str]:
            events, _ = c.objects.list("events", "default")
            return [e.message for e in events if isinstance(e, objects_pb2.Event)
                    and e.reason == "FailedScheduling" and e.involved_object.name == pending[0].metadata.name]

        eventually(lambda: bool(failed_scheduling()), what="a FailedScheduling event")
        assert failed_scheduling()[-1] == "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."


# -- cron jobs -------------------------------------------------------------------------------------------


def cron_job(name: str, every: int, policy: str = "Allow", exit_code: int | None = 0) -> objects_pb2.CronJob:
    return objects_pb2.CronJob(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default",
                                        annotations={TEST_EVERY_SECONDS_ANNOTATION: str(every)}),
        spec=objects_pb2.CronJobSpec(schedule="* * * * *", concurrency_policy=policy,
                                     successful_jobs_history_limit=100,
                                     job_template=objects_pb2.JobTemplateSpec(spec=objects_pb2.JobSpec(
                                         template=_template(name, exit_code=exit_code)))))


def _cron_jobs(c: Client, cron: str) -> list[objects_pb2.Job]:
    items, _ = c.objects.list("jobs", "default")
    return [j for j in items if isinstance(j, objects_pb2.Job)
            and any(r.kind == "CronJob" and r.name == cron for r in j.metadata.owner_references)]


def _instants(jobs: list[objects_pb2.Job], cron: str) -> list[int]:
    return sorted(int(j.metadata.name[len(cron) + 1:]) for j in jobs)


def test_cronjob_runs_on_each_scheduled_time(cluster: LocalMasters, fleet: HollowFleet) -> None:
    with cluster.client() as c:
        c.objects.create(cron_job("tick", 2))
        eventually(lambda: len(_cron_jobs(c, "tick")) >= 3, what="three runs")
        instants = _instants(_cron_jobs(c, "tick"), "tick")
        assert all(t % 2 == 0 for t in instants)
        assert instants == list(range(instants[0], instants[0] + 2 * len(instants), 2))  # none missed, none twice
        eventually(lambda: any(_finished_of(j) for j in _cron_jobs(c, "tick")),
                   what="a run completed")
        first = _cron_jobs(c, "tick")[0].metadata.name
        eventually(lambda: ("Normal", "SuccessfulCreate", f"Created job {first}") in _events(c, "CronJob", "tick"),
                   what="the cron job's SuccessfulCreate event")


def test_cronjob_forbid_skips_runs_while_one_is_active(cluster: LocalMasters, fleet: HollowFleet) -> None:
    with cluster.client() as c:
        c.objects.create(cron_job("single", 1, policy="Forbid", exit_code=None))
        eventually(lambda: len(_cron_jobs(c, "single")) == 1, what="the first run")
        first = _cron_jobs(c, "single")[0].metadata.name

        seen: set[str] = set()

        def skipped_twice() -> bool:
            cron = c.objects.get("cronjobs", "single", "default")
            assert isinstance(cron, objects_pb2.CronJob)
            seen.add(cron.status.last_schedule_time)
            return len(seen) >= 3  # the first run's time and two skipped ones

        eventually(skipped_twice, what="two schedules skipped")
        assert [j.metadata.name for j in _cron_jobs(c, "single")] == [first]
        eventually(lambda: any(reason == "JobAlreadyActive" and "a job is still active" in message
                               for _, reason, message in _events(c, "CronJob", "single")),
                   what="the JobAlreadyActive event")


def test_leader_killed_at_the_scheduled_instant_runs_it_once(cluster: LocalMasters, fleet: HollowFleet) -> None:
    every = 5
    with cluster.client() as c:
        c.objects.create(cron_job("once", every))
        eventually(lambda: len(_cron_jobs(c, "once")) >= 1, what="the first run")
        # Kill the leader right at the next scheduled instant.
        instant = math.floor(time.time() / every) * every + every
        time.sleep(max(0.0, instant - time.time()))
        cluster.kill(cluster.leader())
        eventually(lambda: instant in _instants(_cron_jobs(c, "once"), "once"), timeout=60,
                   what="the run of the instant of the kill")
        eventually(lambda: _instants(_cron_jobs(c, "once"), "once")[-1] > instant, timeout=60,
                   what="a later run")
        instants = _instants(_cron_jobs(c, "once"), "once")
        assert instants.count(instant) == 1
        assert len(instants) == len(set(instants))


# -- bad input ------------------------------------------------------------------------------------------


def test_bad_input_is_refused_by_the_masters_with_field_paths(cluster: LocalMasters, tmp_path: Path) -> None:
    bad_job = job("neg", parallelism=-1)
    bad_cron = cron_job("bad-cron", 1)
    bad_cron.spec.schedule = "61 * * * *"
    bad_pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name="bad-pod", namespace="default"),
        spec=objects_pb2.PodSpec(containers=[objects_pb2.Container(name="c", image="x")],
                                 tolerations=[objects_pb2.Toleration(key="k", effect="NoRun")]))
    bad_pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms.add(
        match_expressions=[objects_pb2.NodeSelectorRequirement(key="zone", operator="Near", values=["a"])])
    with cluster.client() as c:
        for obj, needle in (
                (bad_job, "spec.parallelism: must not be negative, got -1"),
                (bad_cron, 'spec.schedule: invalid cron expression "61 * * * *"'),
                (bad_pod, 'spec.tolerations[0].effect: must be one of NoSchedule, PreferNoSchedule, NoExecute, '
                          'got "NoRun"'),
                (bad_pod, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution."
                          'nodeSelectorTerms[0].matchExpressions[0].operator: must be one of In, NotIn, Exists, '
                          'DoesNotExist, Gt, Lt, got "Near"')):
            with pytest.raises(Invalid) as info:
                c.objects.create(obj)
            assert needle in str(info.value)
    manifest = tmp_path / "bad.yaml"
    manifest.write_text("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: x}\nspec:\n  schedule: 'every day'\n"
                        "  jobTemplate: {spec: {template: {spec: {containers: [{name: c, image: x}]}}}}\n")
    result = raftctl(cluster, tmp_path, "apply", "-f", str(manifest))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "spec.schedule: must have five fields" in result.output
