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

from typing import Any

from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from raftorch.api.v1 import objects_pb2
from raftorch.errors import Invalid
from raftorch.objects import POD, check_unknown_fields, kind_of, store_key
from raftorch.objects.validation import validate_metadata

REPLICA_SET = kind_of("ReplicaSet")
# The statuses a new pod may carry on the narrow path: none, or the Pending the controller sets.
NEW_POD_STATUSES = frozenset({b"", objects_pb2.PodStatus(phase="Pending").SerializeToString(deterministic=True)})


class TemplatePods:
    """For one batch of creates: which pods are their replica set's template (each replica set
    read, decoded and encoded once per batch). `current(key)` is the store's current key value."""

    def __init__(self, current: Any) -> None:
        self._current = current
        self._templates: dict[str, tuple[str, bytes] | None] = {}

    def checked(self, msg: Message) -> bool:
        """True if `msg` is a pod whose every part is checked already or here (metadata)."""
        if not isinstance(msg, objects_pb2.Pod):
            return False
        meta = msg.metadata
        refs = meta.owner_references
        if (len(refs) != 1 or not refs[0].controller or refs[0].kind != REPLICA_SET.name or not meta.namespace
                or UnknownFieldSet(msg)
                or msg.status.SerializeToString(deterministic=True) not in NEW_POD_STATUSES):
            return False
        template = self._template(meta.namespace, refs[0].name)
        if template is None or template[0] != refs[0].uid:
            return False
        if msg.spec.SerializeToString(deterministic=True) != template[1]:
            return False
        # What the pod adds to its template: its metadata (name, labels, annotations, owner).
        try:
            check_unknown_fields(meta)
            validate_metadata(POD, meta)
        except Invalid:
            return False  # the full create names every problem
        return True

    def _template(self, namespace: str, name: str) -> tuple[str, bytes] | None:
        """The replica set's uid and its template's spec, encoded as a pod's spec would be."""
        key = store_key(REPLICA_SET, namespace, name)
        if key not in self._templates:
            kv = self._current(key)
            found: tuple[str, bytes] | None = None
            if kv is not None:
                try:
                    rs = objects_pb2.ReplicaSet.FromString(kv.value)
                except Exception:  # an undecodable replica set has no template to trust
                    rs = None
                if (rs is not None and rs.metadata.name == name and rs.metadata.namespace == namespace
                        and _known(rs.spec.template.spec)):
                    found = (rs.metadata.uid, rs.spec.template.spec.SerializeToString(deterministic=True))
            self._templates[key] = found
        return self._templates[key]


def _known(spec: objects_pb2.PodSpec) -> bool:
    """A template written by a version that knew fields this one does not is not trusted."""
    try:
        check_unknown_fields(spec)
    except Invalid:
        return False
    return True
