"""The narrow create of a replica set's pods.

A replica set's pod is its template with a name, an owner reference and the template's labels
and annotations (controllers/replicaset.py `_new_pod`). The template's spec was checked when the
replica set was written (unknown fields, defaults, validation), so a pod whose spec is, byte for
byte, the spec of its owning replica set as stored now needs only its metadata checked. This is
what lets 10,000 pods be created without 10,000 full creates on the leader.

Nothing unchecked enters this way: only the controller manager may call CreateMany (the
servicer refuses anyone else); even then, the spec must equal a stored, validated template of a
replica set in the pod's namespace that the pod names as its controller (uid included), the
status can only be the new pod's Pending, and the metadata is validated and walked for unknown
fields. A pod that misses any of this is not refused here: it takes the full create, which
reports its problems as any create does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects import POD, check_unknown_fields, kind_of, store_key, validate_metadata
from raftorch.objects._checks import dns1123_subdomain_error

REPLICA_SET = kind_of("ReplicaSet")
# The statuses a new pod may carry on the narrow path: none, or the Pending the controller sets.
NEW_POD_STATUSES = frozenset({b"", objects_pb2.PodStatus(phase="Pending").SerializeToString(deterministic=True)})


@dataclass(frozen=True, slots=True)
class _Template:
    uid: str
    spec: bytes  # encoded as a pod's spec would be
    labels: dict[str, str]
    annotations: dict[str, str]
    metadata_ok: bool  # the labels and annotations pass a pod's metadata validation


class TemplatePods:
    """For one batch of creates: which pods are their replica set's template (each replica set
    read, decoded and encoded once per batch). `current(key)` is the store's current key value."""

    def __init__(self, current: Any) -> None:
        self._current = current
        self._templates: dict[str, _Template | None] = {}

    def checked(self, msg: Message) -> bool:
        """True if `msg` is a pod whose every part is checked already or here (metadata)."""
        if not isinstance(msg, objects_pb2.Pod):
            return False
        meta = msg.metadata
        refs = meta.owner_references
        # ObjectMeta's only nested messages are owner references (a map entry with an unknown
        # field is itself unknown to ObjectMeta): these three sets are the whole unknown-field
        # walk outside the spec and status, which are compared as encodings below.
        if (len(refs) != 1 or not refs[0].controller or refs[0].kind != REPLICA_SET.name or not refs[0].uid
                or not meta.namespace or UnknownFieldSet(msg) or UnknownFieldSet(meta) or UnknownFieldSet(refs[0])
                or msg.status.SerializeToString(deterministic=True) not in NEW_POD_STATUSES):
            return False
        template = self._template(meta.namespace, refs[0].name)
        if template is None or template.uid != refs[0].uid:
            return False
        if msg.spec.SerializeToString(deterministic=True) != template.spec:
            return False
        # What the pod adds to its template: its name, and labels and annotations that are the
        # template's as a rule. Its revision, generation and times are set by the create.
        if template.metadata_ok and dict(meta.labels) == template.labels \
                and dict(meta.annotations) == template.annotations:
            return dns1123_subdomain_error(meta.name) is None
        try:
            validate_metadata(POD, meta)
        except Invalid:
            return False  # the full create names every problem
        return True

    def _template(self, namespace: str, name: str) -> _Template | None:
        key = store_key(REPLICA_SET, namespace, name)
        if key not in self._templates:
            self._templates[key] = _read_template(self._current(key), namespace, name)
        return self._templates[key]


def _read_template(kv: Any, namespace: str, name: str) -> _Template | None:
    """The replica set stored at `kv`, if it is namespace/name and its template is trusted."""
    if kv is None:
        return None
    try:
        rs = objects_pb2.ReplicaSet.FromString(kv.value)
    except Exception:  # an undecodable replica set has no template to trust
        return None
    template = rs.spec.template
    if rs.metadata.name != name or rs.metadata.namespace != namespace or not _known(template.spec):
        return None
    labels, annotations = dict(template.metadata.labels), dict(template.metadata.annotations)
    try:
        validate_metadata(POD, objects_pb2.ObjectMeta(name="pod", namespace=namespace, labels=labels,
                                                      annotations=annotations))
        metadata_ok = True
    except Invalid:
        metadata_ok = False
    return _Template(rs.metadata.uid, template.spec.SerializeToString(deterministic=True), labels, annotations,
                     metadata_ok)


def _known(spec: objects_pb2.PodSpec) -> bool:
    """A template written by a version that knew fields this one does not is not trusted."""
    try:
        check_unknown_fields(spec)
    except Invalid:
        return False
    return True
