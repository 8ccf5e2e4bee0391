"""The drills against masters on 127.0.0.1 (no namespaces, no root): the LocalMasters operator."""

from __future__ import annotations

import pytest

from raftorch.drill import drills
from raftorch.drill.operators import LocalMastersOperator, Unsupported
from raftorch.local.masters import LocalMasters
from tests.drill._support import OPTIONS, record

pytestmark = pytest.mark.processes


def test_failover_drill_on_local_masters(masters: LocalMasters) -> None:
    operator = LocalMastersOperator(masters)
    result = drills.failover(operator.endpoints, operator, OPTIONS)
    record([result], cluster="127.0.0.1")
    assert result.passed, result.problems
    assert result.lost_writes == 0 and result.stale_reads == 0 and result.linearizable
    assert result.failover_s is not None and result.new_leader != result.target
    assert all(m.alive for m in masters.masters.values()), "the killed master was not restarted"
    with pytest.raises(Unsupported, match="namespace"):
        drills.isolate(operator.endpoints, operator, OPTIONS)
