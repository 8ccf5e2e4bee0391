"""The domain layer of cluster objects: kinds, quantities, selectors, metadata, defaults, validation.

Pure functions over the messages of objects.proto: no I/O and no clock (times are passed in).
Every error is `raftorch.errors.Invalid`, and names the field or input it is about.

Every public name of the modules is re-exported here except the function `meta`: bound on the
package it would hide the module `raftorch.objects.meta` at run time (though not from mypy), and
`import raftorch.objects.meta as m` would then give the function. Import it from its module.
"""

from __future__ import annotations

from raftorch.objects.defaults import (
    DEFAULT_NAMESPACE,
    apply_defaults,
    default_pod_spec,
)
from raftorch.objects.kinds import (
    CONFIG_MAP,
    CRON_JOB,
    DAEMON_SET,
    DEPLOYMENT,
    ENDPOINTS,
    EVENT,
    JOB,
    KINDS,
    NAMESPACE,
    NODE,
    PERSISTENT_VOLUME_CLAIM,
    POD,
    REPLICA_SET,
    SECRET,
    SERVICE,
    Kind,
    kind_of,
    kind_of_message,
    parse_store_key,
    store_key,
    store_prefix,
    unwrap,
    wrap,
)
from raftorch.objects.meta import (
    controller_of,
    format_time,
    get_condition,
    int_or_percent,
    owned_by,
    parse_int_or_percent,
    parse_time,
    pod_is_ready,
    pod_is_terminal,
    set_condition,
)
from raftorch.objects.quantity import (
    format_cpu,
    format_memory,
    parse_count,
    parse_cpu,
    parse_memory,
)
from raftorch.objects.scheduling import (
    NODE_SELECTOR_OPERATORS,
    TAINT_EFFECTS,
    TOLERATION_OPERATORS,
)
from raftorch.objects.selectors import (
    FieldRequirement,
    LabelSelector,
    Operator,
    Requirement,
    check_field_selector,
    format_selector,
    matches,
    object_matches_fields,
    parse_field_selector,
    parse_label_selector,
    pod_matches_fields,
    selector_from_match_labels,
)
from raftorch.objects.validation import (
    MAX_OBJECT_BYTES,
    check_object_size,
    check_unknown_fields,
    validate,
)
from raftorch.objects.workloads import (
    JOB_NAME_LABEL,
    TEST_EVERY_SECONDS_ANNOTATION,
    cron_schedule_error,
    job_from_cron_job,
)

__all__ = [
    "CONFIG_MAP",
    "CRON_JOB",
    "DAEMON_SET",
    "DEFAULT_NAMESPACE",
    "DEPLOYMENT",
    "ENDPOINTS",
    "EVENT",
    "JOB",
    "JOB_NAME_LABEL",
    "KINDS",
    "MAX_OBJECT_BYTES",
    "NAMESPACE",
    "NODE",
    "NODE_SELECTOR_OPERATORS",
    "PERSISTENT_VOLUME_CLAIM",
    "POD",
    "REPLICA_SET",
    "SECRET",
    "SERVICE",
    "TAINT_EFFECTS",
    "TEST_EVERY_SECONDS_ANNOTATION",
    "TOLERATION_OPERATORS",
    "FieldRequirement",
    "Kind",
    "LabelSelector",
    "Operator",
    "Requirement",
    "apply_defaults",
    "check_field_selector",
    "check_object_size",
    "check_unknown_fields",
    "controller_of",
    "cron_schedule_error",
    "default_pod_spec",
    "format_cpu",
    "format_memory",
    "format_selector",
    "format_time",
    "get_condition",
    "int_or_percent",
    "job_from_cron_job",
    "kind_of",
    "kind_of_message",
    "matches",
    "object_matches_fields",
    "owned_by",
    "parse_count",
    "parse_cpu",
    "parse_field_selector",
    "parse_int_or_percent",
    "parse_label_selector",
    "parse_memory",
    "parse_store_key",
    "parse_time",
    "pod_is_ready",
    "pod_is_terminal",
    "pod_matches_fields",
    "selector_from_match_labels",
    "set_condition",
    "store_key",
    "store_prefix",
    "unwrap",
    "validate",
    "wrap",
]
