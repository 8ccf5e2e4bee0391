"""A pod's volumes and env sources on its node.

`resolve_pod` is pure: given the pod and what its ConfigMaps and Secrets hold, it returns each
container's environment and mounts, the files of each configMap/secret volume, or why the pod
must wait (a missing ConfigMap, as the kubelet's CreateContainerConfigError). `PodVolumes`
carries that out on the host, under `DATA_DIR/pods/<uid>/volumes/<name>`:

* emptyDir: a directory there, shared by the pod's containers; `medium: Memory` is a tmpfs
  runtime volume of `sizeLimit` bytes instead. Both go when the pod is gone.
* configMap, secret: files written as the kubelet does, in a directory `..<hash>` that the
  link `..data` names, each top-level entry a link through `..data`. A change writes a new
  directory and swaps the link with one rename, so a reader never sees half an update, and the
  mounted directory shows it within a pass or two (objects are re-read every `REFRESH` seconds).
  Files mounted by `subPath` are a copy taken at start, as in Kubernetes.
* hostPath: the host's path (pod security allows it in privileged namespaces only).

Env values are read when a container starts; a later change shows after a restart.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from raftorch.agent.runtime.base import LABEL_NODE, LABEL_POD_UID, ManagesVolumes, Mount
from raftorch.api.v1 import objects_pb2
from raftorch.errors import NotFound, RaftorchError
from raftorch.objects import parse_memory, pod_references

log = structlog.get_logger("raftorch.agent.volumes")

__all__ = ["PodInputs", "PodVolumes", "Resolved", "VolumePlan", "needs_inputs", "referenced", "resolve_pod",
           "write_atomically"]

REFRESH = 2.0
# On a claim's Docker volume: the claim's name (its uid is in the volume's name).
LABEL_CLAIM = "raftorch.io/claim"
DEFAULT_MODE = 0o644
SECRET_TMPFS_BYTES = 4 * 1024 * 1024
# What a lookup returns: the object's data by key, or None when it does not exist.
Lookup = Callable[[str, str], Mapping[str, bytes] | None]
CONFIG_MAP, SECRET, CLAIM = "ConfigMap", "Secret", "PersistentVolumeClaim"


@dataclass(frozen=True, slots=True)
class VolumePlan:
    """What one volume is on the host: a directory to make (`files` None) or to fill with files
    (path -> (content, mode)), a host path, or a tmpfs runtime volume."""

    name: str
    kind: str  # emptyDir, memory, files, hostPath
    files: Mapping[str, tuple[bytes, int]] | None = None
    host_path: str = ""
    host_type: str = ""
    size_bytes: int | None = None
    # A claim: its name, uid and node (where it is bound; "" not yet), and whether it is mounted read-only.
    claim: tuple[str, str, str] = ("", "", "")
    read_only: bool = False
    # Keep the files off the node's disk (a Secret's): a tmpfs where the agent may mount one.
    in_memory: bool = False


# A container's volume mount as the spec says: (volume, mount path, read only, subPath).
WantedMount = tuple[str, str, bool, str]


@dataclass(frozen=True, slots=True)
class Resolved:
    """What the pod needs, read from its ConfigMaps and Secrets; or `problem`, why it must wait."""

    env: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    mounts: Mapping[str, tuple[WantedMount, ...]] = field(default_factory=dict)
    volumes: tuple[VolumePlan, ...] = ()
    problem: str = ""


@dataclass(frozen=True, slots=True)
class PodInputs:
    """Per container: the environment and the mounts, made on the host; or `problem`, why the
    pod's containers cannot start yet."""

    env: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    mounts: Mapping[str, tuple[Mount, ...]] = field(default_factory=dict)
    problem: str = ""


def needs_inputs(pod: objects_pb2.Pod) -> bool:
    containers = [*pod.spec.containers, *pod.spec.init_containers]
    return bool(pod.spec.volumes) or any(c.env_from or any(e.HasField("value_from") for e in c.env)
                                         for c in containers)


def referenced(pod: objects_pb2.Pod) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap, Secret and claim the pod reads."""
    return pod_references(pod.spec)


class _Wait(Exception):
    pass


def _need(lookup: Lookup, kind: str, name: str, optional: bool) -> Mapping[str, bytes] | None:
    data = lookup(kind, name)
    if data is None and not optional:
        raise _Wait(f'{kind.lower()} "{name}" not found')
    return data


def resolve_pod(pod: objects_pb2.Pod, lookup: Lookup) -> Resolved:
    try:
        volumes = tuple(_volume(v, lookup) for v in pod.spec.volumes)
        env = {c.name: _env(c, lookup) for c in [*pod.spec.init_containers, *pod.spec.containers]}
    except _Wait as wait:
        return Resolved(problem=str(wait))
    mounts = {c.name: tuple((m.name, m.mount_path, m.read_only, m.sub_path) for m in c.volume_mounts)
              for c in [*pod.spec.init_containers, *pod.spec.containers]}
    return Resolved(env=env, mounts=mounts, volumes=volumes)


def _volume(v: objects_pb2.Volume, lookup: Lookup) -> VolumePlan:
    if v.HasField("empty_dir"):
        size = parse_memory(v.empty_dir.size_limit) if v.empty_dir.size_limit else None
        return VolumePlan(v.name, "memory" if v.empty_dir.medium == "Memory" else "emptyDir", size_bytes=size)
    if v.HasField("host_path"):
        return VolumePlan(v.name, "hostPath", host_path=v.host_path.path, host_type=v.host_path.type)
    if v.HasField("config_map"):
        src: objects_pb2.ConfigMapVolumeSource | objects_pb2.SecretVolumeSource = v.config_map
        kind, name = CONFIG_MAP, v.config_map.name
    elif v.HasField("secret"):
        src, kind, name = v.secret, SECRET, v.secret.secret_name
    else:
        pvc = v.persistent_volume_claim
        found = _need(lookup, CLAIM, pvc.claim_name, False) or {}
        return VolumePlan(v.name, "claim", read_only=pvc.read_only, claim=(
            pvc.claim_name, found.get("uid", b"").decode(), found.get("node", b"").decode()))
    data = _need(lookup, kind, name, src.optional) or {}
    mode = src.default_mode if src.HasField("default_mode") else DEFAULT_MODE
    files: dict[str, tuple[bytes, int]] = {}
    if src.items:
        for item in src.items:
            if item.key not in data:
                if src.optional:
                    continue
                raise _Wait(f'volume {v.name}: key "{item.key}" not found in {kind.lower()} "{name}"')
            files[posixpath.normpath(item.path)] = (data[item.key], item.mode if item.HasField("mode") else mode)
    else:
        files = {key: (value, mode) for key, value in data.items()}
    return VolumePlan(v.name, "files", files=files, in_memory=kind == SECRET)


def _env(c: objects_pb2.Container, lookup: Lookup) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for s in c.env_from:
        ref, kind = (s.config_map_ref, CONFIG_MAP) if s.HasField("config_map_ref") else (s.secret_ref, SECRET)
        for key, value in sorted((_need(lookup, kind, ref.name, ref.optional) or {}).items()):
            out[s.prefix + key] = value.decode(errors="replace")
    for e in c.env:
        if not e.HasField("value_from"):
            out[e.name] = e.value
            continue
        vf = e.value_from
        sel, kind = (vf.config_map_key_ref, CONFIG_MAP) if vf.HasField("config_map_key_ref") else \
            (vf.secret_key_ref, SECRET)
        data = _need(lookup, kind, sel.name, sel.optional)
        if data is None:
            continue
        if sel.key not in data:
            if sel.optional:
                continue
            raise _Wait(f'container {c.name}: env {e.name}: key "{sel.key}" not found in {kind.lower()} '
                        f'"{sel.name}"')
        out[e.name] = data[sel.key].decode(errors="replace")
    return tuple(out.items())


# -- on the host ------------------------------------------------------------------------------


def _content_hash(files: Mapping[str, tuple[bytes, int]]) -> str:
    h = hashlib.sha256()
    for path in sorted(files):
        content, mode = files[path]
        h.update(f"{path}\0{mode}\0{len(content)}\0".encode())
        h.update(content)
    return h.hexdigest()[:16]


def write_atomically(directory: Path, files: Mapping[str, tuple[bytes, int]]) -> bool:
    """Make `directory` show `files` (the kubelet's layout); False when it already did."""
    version = f"..{_content_hash(files)}"
    data_link = directory / "..data"
    if data_link.is_symlink() and os.readlink(data_link) == version:
        return False
    directory.mkdir(parents=True, exist_ok=True)
    staged = directory / version
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir()
    for rel, (content, mode) in files.items():
        target = staged / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tmp_link = directory / "..data_tmp"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    os.symlink(version, tmp_link)
    os.replace(tmp_link, data_link)
    tops = {rel.split("/", 1)[0] for rel in files}
    for entry in directory.iterdir():
        if not entry.name.startswith("..") and entry.name not in tops:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    for top in tops:
        link = directory / top
        if not link.is_symlink():
            os.symlink(f"..data/{top}", link)
    if old and old != version:
        shutil.rmtree(directory / old, ignore_errors=True)
    return True


class PodVolumes:
    """The executor: reads ConfigMaps and Secrets through `fetch` (cached `REFRESH` seconds),
    makes the volumes of each pod, and removes those of pods that are gone."""

    def __init__(self, root: Path, node: str, fetch: Callable[[str, str, str], Mapping[str, bytes] | None],
                 runtime: object, clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.node = node
        self._fetch = fetch
        self._runtime = runtime
        self._clock = clock
        self._cache: dict[tuple[str, str, str], tuple[float, Mapping[str, bytes] | None]] = {}
        self._can_mount = os.geteuid() == 0

    def pod_dir(self, uid: str) -> Path:
        return self.root / uid

    def lookup_for(self, namespace: str) -> Lookup:
        def lookup(kind: str, name: str) -> Mapping[str, bytes] | None:
            key = (kind, namespace, name)
            now = self._clock()
            hit = self._cache.get(key)
            if hit is None or now - hit[0] >= REFRESH:
                try:
                    value = self._fetch(kind, namespace, name)
                except NotFound:
                    value = None
                except RaftorchError:
                    if hit is None:
                        raise
                    value = hit[1]  # the masters are away: keep what was read
                hit = (now, value)
                self._cache[key] = hit
            return hit[1]

        return lookup

    def prepare(self, pod: objects_pb2.Pod) -> PodInputs:
        """Resolve and make the pod's volumes; the mounts in the result are host paths."""
        if not self.root.is_dir():
            # Secret files are in here: no other user of the host may look in (containers reach
            # their volumes through the bind mounts, whatever the parents' modes).
            self.root.mkdir(parents=True, exist_ok=True)
            self.root.chmod(0o700)
        try:
            inputs = resolve_pod(pod, self.lookup_for(pod.metadata.namespace))
        except RaftorchError as err:
            return PodInputs(problem=f"cannot read the pod's configuration: {err}")
        if inputs.problem:
            return PodInputs(problem=inputs.problem)
        uid = pod.metadata.uid
        sources: dict[str, tuple[str, bool, bool]] = {}
        try:
            for v in inputs.volumes:
                sources[v.name] = self._make(uid, v)
            mounts = {name: tuple(self._mount(uid, sources, m) for m in ms) for name, ms in inputs.mounts.items()}
        except (OSError, RaftorchError) as err:
            return PodInputs(problem=f"volume setup failed: {err}")
        return PodInputs(env=inputs.env, mounts=mounts)

    def _make(self, uid: str, v: VolumePlan) -> tuple[str, bool, bool]:
        """The volume's source: (host path or runtime volume name, is a runtime volume, read-only)."""
        path = self.pod_dir(uid) / "volumes" / v.name
        if v.kind in ("memory", "claim") and not isinstance(self._runtime, ManagesVolumes):
            raise RaftorchError(f"volume {v.name}: needs the docker runtime")
        if v.kind == "memory":
            assert isinstance(self._runtime, ManagesVolumes)
            name = f"raftorch-{uid}-{v.name}"
            self._runtime.ensure_volume(name, {LABEL_NODE: self.node, LABEL_POD_UID: uid},
                                        tmpfs=True, size_bytes=v.size_bytes)
            return name, True, False
        if v.kind == "claim":
            assert isinstance(self._runtime, ManagesVolumes)
            claim, claim_uid, node = v.claim
            if not node:
                raise RaftorchError(f'persistentvolumeclaim "{claim}" is not bound to a node yet')
            if node != self.node:
                raise RaftorchError(f'persistentvolumeclaim "{claim}" is bound to node "{node}", not this one')
            name = f"raftorch-pvc-{claim_uid}"
            # No pod label: the volume outlives the pods that use it.
            self._runtime.ensure_volume(name, {LABEL_NODE: self.node, LABEL_CLAIM: claim}, tmpfs=False)
            return name, True, v.read_only
        if v.kind == "hostPath":
            host = Path(v.host_path)
            if v.host_type == "DirectoryOrCreate":
                host.mkdir(parents=True, exist_ok=True)
            elif v.host_type == "Directory" and not host.is_dir():
                raise RaftorchError(f"volume {v.name}: hostPath {host} is not a directory")
            elif v.host_type == "File" and not host.is_file():
                raise RaftorchError(f"volume {v.name}: hostPath {host} is not a file")
            return str(host), False, False
        if v.kind == "files":
            if v.in_memory:
                self._tmpfs(path)
            if write_atomically(path, v.files or {}):
                log.info("volume_updated", pod_uid=uid, volume=v.name, files=len(v.files or {}))
            return str(path), False, False
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # an emptyDir is writable by any user the containers run as
        return str(path), False, False

    @staticmethod
    def _mount(uid: str, sources: Mapping[str, tuple[str, bool, bool]], m: WantedMount) -> Mount:
        name, target, read_only, sub_path = m
        source, is_volume, always_read_only = sources[name]
        read_only = read_only or always_read_only
        if sub_path:
            if is_volume:
                raise RaftorchError(f"volume {name}: subPath is not supported on Docker volumes")
            base = Path(source).resolve()
            full = (Path(source) / sub_path).resolve()
            if base not in full.parents and full != base:  # a link inside the volume pointing out
                raise RaftorchError(f"volume {name}: subPath {sub_path} leads out of the volume")
            if not full.exists():
                full.mkdir(parents=True)
            source = str(full)
        return Mount(source, target, read_only, is_volume)

    def _tmpfs(self, path: Path) -> None:
        """Mount a small tmpfs at `path` (a Secret holds at most 1 MiB; two versions meet during an
        update). Where the agent may not mount (not root), the files stay on disk, in the pods
        directory only the agent may read."""
        if os.path.ismount(path) or not self._can_mount:
            return
        path.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"mode=0755,size={SECRET_TMPFS_BYTES}", "tmpfs", str(path)],
                           check=True, capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError) as exc:
            self._can_mount = False
            log.warning("secret_volumes_on_disk", reason=f"cannot mount a tmpfs: {exc}")

    def cleanup(self, keep: set[str]) -> None:
        """Remove the volumes of every pod not in `keep` (uids of pods desired or with containers)."""
        if self.root.is_dir():
            for entry in self.root.iterdir():
                if entry.name not in keep and self._unmount_all(entry):
                    shutil.rmtree(entry, ignore_errors=True)
                    log.info("pod_volumes_removed", pod_uid=entry.name)
        if isinstance(self._runtime, ManagesVolumes):
            try:
                self._runtime.remove_pod_volumes(self.node, keep)
            except RaftorchError as err:
                log.warning("pod_volumes_remove_failed", error=str(err))

    @staticmethod
    def _unmount_all(pod_dir: Path) -> bool:
        """Unmount the tmpfs volumes of a pod that is gone; False while one stays mounted."""
        volumes = pod_dir / "volumes"
        for path in volumes.iterdir() if volumes.is_dir() else ():
            if os.path.ismount(path):
                try:
                    subprocess.run(["umount", str(path)], check=True, capture_output=True, timeout=10)
                except (OSError, subprocess.SubprocessError) as exc:
                    log.warning("volume_unmount_failed", path=str(path), error=str(exc))
                    return False
        return True
