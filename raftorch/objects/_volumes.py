"""Validation of a pod's volumes, its containers' volume mounts and env sources."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Literal

from raftorch.api.v1 import objects_pb2
from raftorch.objects._checks import Problems, dns1123_label_error, dns1123_subdomain_error, quote
from raftorch.objects.quantity import parse_memory

MAX_VOLUMES = 64
MAX_MOUNTS_PER_CONTAINER = 64
MAX_ENV_FROM = 64
MAX_ITEMS = 256
MAX_PATH = 1024
EMPTY_DIR_MEDIA = ("", "Memory")
HOST_PATH_TYPES = ("", "Directory", "DirectoryOrCreate", "File")
Source = Literal["empty_dir", "host_path", "config_map", "secret", "persistent_volume_claim"]
SOURCES: tuple[Source, ...] = ("empty_dir", "host_path", "config_map", "secret", "persistent_volume_claim")
_JSON = {"empty_dir": "emptyDir", "host_path": "hostPath", "config_map": "configMap", "secret": "secret",
         "persistent_volume_claim": "persistentVolumeClaim"}


def volume_source(volume: objects_pb2.Volume) -> str:
    """The one source field set ("" when none is)."""
    return next((s for s in SOURCES if volume.HasField(s)), "")


def relative_path_error(path: str) -> str | None:
    """A path inside a volume: relative, and no element ".." (it would leave the volume)."""
    if not path:
        return "must not be empty"
    if len(path) > MAX_PATH:
        return f"at most {MAX_PATH} characters"
    if path.startswith("/"):
        return f"must be a relative path, got {quote(path)}"
    if ".." in path.split("/"):
        return f"must not contain '..', got {quote(path)}"
    if "\x00" in path:
        return "must not contain NUL"
    return None


def validate_volumes(problems: Problems, path: str, spec: objects_pb2.PodSpec) -> set[str]:
    """The volume names (checked); problems for each bad volume."""
    names: set[str] = set()
    if len(spec.volumes) > MAX_VOLUMES:
        problems.add(f"{path}.volumes", f"must have at most {MAX_VOLUMES} volumes, got {len(spec.volumes)}")
    for i, volume in enumerate(spec.volumes[:MAX_VOLUMES]):
        where = f"{path}.volumes[{i}]"
        problems.check(f"{where}.name", dns1123_label_error(volume.name))
        if volume.name in names:
            problems.add(f"{where}.name", f"duplicate name {quote(volume.name)}")
        names.add(volume.name)
        sources = [s for s in SOURCES if volume.HasField(s)]
        if len(sources) != 1:
            problems.add(where, "exactly one of emptyDir, hostPath, configMap, secret or persistentVolumeClaim "
                                f"is required, got {len(sources)}")
            continue
        source = sources[0]
        at = f"{where}.{_JSON[source]}"
        if source == "empty_dir":
            problems.one_of(f"{at}.medium", volume.empty_dir.medium, EMPTY_DIR_MEDIA)
            if volume.empty_dir.size_limit:
                try:
                    parse_memory(volume.empty_dir.size_limit)
                except Exception:
                    problems.add(f"{at}.sizeLimit", f"not a quantity: {quote(volume.empty_dir.size_limit)}")
        elif source == "host_path":
            hp = volume.host_path.path
            if not hp.startswith("/") or ".." in hp.split("/") or len(hp) > MAX_PATH or "\x00" in hp:
                problems.add(f"{at}.path", f"an absolute path without '..' is required, got {quote(hp)}")
            problems.one_of(f"{at}.type", volume.host_path.type, HOST_PATH_TYPES)
        elif source == "config_map":
            problems.check(f"{at}.name", dns1123_subdomain_error(volume.config_map.name))
            _items(problems, at, volume.config_map.items, volume.config_map)
        elif source == "secret":
            problems.check(f"{at}.secretName", dns1123_subdomain_error(volume.secret.secret_name))
            _items(problems, at, volume.secret.items, volume.secret)
        else:
            problems.check(f"{at}.claimName", dns1123_subdomain_error(volume.persistent_volume_claim.claim_name))
    return names


def _items(problems: Problems, at: str, items: Sequence[objects_pb2.KeyToPath],
           source: objects_pb2.ConfigMapVolumeSource | objects_pb2.SecretVolumeSource) -> None:
    if source.HasField("default_mode"):
        problems.in_range(f"{at}.defaultMode", source.default_mode, 0, 0o777)
    if len(items) > MAX_ITEMS:
        problems.add(f"{at}.items", f"must have at most {MAX_ITEMS} items, got {len(items)}")
    paths: set[str] = set()
    for j, item in enumerate(items[:MAX_ITEMS]):
        if not item.key:
            problems.add(f"{at}.items[{j}].key", "required")
        problems.check(f"{at}.items[{j}].path", relative_path_error(item.path))
        normal = posixpath.normpath(item.path) if item.path else ""
        if normal in paths:
            problems.add(f"{at}.items[{j}].path", f"duplicate path {quote(item.path)}")
        paths.add(normal)
        if item.HasField("mode"):
            problems.in_range(f"{at}.items[{j}].mode", item.mode, 0, 0o777)


def validate_mounts(problems: Problems, path: str, container: objects_pb2.Container, volumes: set[str]) -> None:
    mounts = container.volume_mounts
    if len(mounts) > MAX_MOUNTS_PER_CONTAINER:
        problems.add(f"{path}.volumeMounts", f"must have at most {MAX_MOUNTS_PER_CONTAINER} mounts, got {len(mounts)}")
    targets: set[str] = set()
    for i, mount in enumerate(mounts[:MAX_MOUNTS_PER_CONTAINER]):
        where = f"{path}.volumeMounts[{i}]"
        if mount.name not in volumes:
            problems.add(f"{where}.name", f"no volume named {quote(mount.name)} in the pod's volumes")
        mp = mount.mount_path
        if not mp.startswith("/") or len(mp) > MAX_PATH or "\x00" in mp or ":" in mp:
            problems.add(f"{where}.mountPath", f"an absolute path (no ':') is required, got {quote(mp)}")
        elif posixpath.normpath(mp) in targets:
            problems.add(f"{where}.mountPath", f"duplicate mount path {quote(mp)}")
        targets.add(posixpath.normpath(mp))
        if mount.sub_path:
            problems.check(f"{where}.subPath", relative_path_error(mount.sub_path))


def validate_env_sources(problems: Problems, path: str, container: objects_pb2.Container) -> None:
    for i, env in enumerate(container.env):
        if not env.HasField("value_from"):
            continue
        where = f"{path}.env[{i}].valueFrom"
        if env.value:
            problems.add(f"{path}.env[{i}].value", "must be empty when valueFrom is set")
        refs = [(name, ref) for name, ref in (("configMapKeyRef", env.value_from.config_map_key_ref),
                                              ("secretKeyRef", env.value_from.secret_key_ref))
                if env.value_from.HasField("config_map_key_ref" if name == "configMapKeyRef" else "secret_key_ref")]
        if len(refs) != 1:
            problems.add(where, "exactly one of configMapKeyRef or secretKeyRef is required")
            continue
        name, ref = refs[0]
        problems.check(f"{where}.{name}.name", dns1123_subdomain_error(ref.name))
        if not ref.key:
            problems.add(f"{where}.{name}.key", "required")
    if len(container.env_from) > MAX_ENV_FROM:
        problems.add(f"{path}.envFrom", f"must have at most {MAX_ENV_FROM} entries, got {len(container.env_from)}")
    for i, source in enumerate(container.env_from[:MAX_ENV_FROM]):
        where = f"{path}.envFrom[{i}]"
        set_fields = [n for n in ("config_map_ref", "secret_ref") if source.HasField(n)]
        if len(set_fields) != 1:
            problems.add(where, "exactly one of configMapRef or secretRef is required")
            continue
        obj = source.config_map_ref if set_fields[0] == "config_map_ref" else source.secret_ref
        problems.check(f"{where}.{'configMapRef' if set_fields[0] == 'config_map_ref' else 'secretRef'}.name",
                       dns1123_subdomain_error(obj.name))
        if len(source.prefix) > 253:
            problems.add(f"{where}.prefix", "at most 253 characters")


ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")


def validate_claim(problems: Problems, claim: objects_pb2.PersistentVolumeClaim) -> None:
    for i, mode in enumerate(claim.spec.access_modes):
        problems.one_of(f"spec.accessModes[{i}]", mode, ACCESS_MODES, empty_ok=False)
    for key, value in claim.spec.resources.requests.items():
        if key != "storage":
            problems.add(f"spec.resources.requests[{quote(key)}]", "only storage may be requested")
            continue
        try:
            parse_memory(value)
        except Exception:
            problems.add("spec.resources.requests.storage", f"not a quantity: {quote(value)}")
    if claim.spec.resources.limits:
        problems.add("spec.resources.limits", "a claim has no limits")
    if len(claim.spec.storage_class_name) > 253:
        problems.add("spec.storageClassName", "at most 253 characters")
    if claim.status.node_name:
        problems.check("status.nodeName", dns1123_subdomain_error(claim.status.node_name))


def pod_references(spec: objects_pb2.PodSpec) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap, Secret and PersistentVolumeClaim a pod spec reads."""
    out: set[tuple[str, str]] = set()
    for v in spec.volumes:
        if v.HasField("config_map"):
            out.add(("ConfigMap", v.config_map.name))
        elif v.HasField("secret"):
            out.add(("Secret", v.secret.secret_name))
        elif v.HasField("persistent_volume_claim"):
            out.add(("PersistentVolumeClaim", v.persistent_volume_claim.claim_name))
    for c in [*spec.containers, *spec.init_containers]:
        for e in c.env:
            if e.value_from.HasField("config_map_key_ref"):
                out.add(("ConfigMap", e.value_from.config_map_key_ref.name))
            elif e.value_from.HasField("secret_key_ref"):
                out.add(("Secret", e.value_from.secret_key_ref.name))
        for s in c.env_from:
            if s.HasField("config_map_ref"):
                out.add(("ConfigMap", s.config_map_ref.name))
            elif s.HasField("secret_ref"):
                out.add(("Secret", s.secret_ref.name))
    return out
