"""Which records a run is asked about: the rules every interface (API, admin, command) applies alike.

The interfaces only translate what these raise (a 400 with field errors, a usage error).
"""

from __future__ import annotations

from vapisync.exceptions import UnknownLocalIds
from vapisync.resources import resource_spec

MAX_LOCAL_ID = 2**63 - 1  # a bigint primary key: a larger number cannot name a record


def local_ids_check(resource: str, ids: list[int]) -> None:
    """Raise UnknownLocalIds naming every id in `ids` with no `resource` record here.

    Vapi ids are not checked here: the run looks them up in Vapi and reports the unknown ones."""
    model = resource_spec(resource).model
    known = set(model.objects.filter(pk__in=[i for i in ids if 0 < i <= MAX_LOCAL_ID]).values_list("pk", flat=True))
    missing = sorted(set(ids) - known)
    if missing:
        raise UnknownLocalIds(str(model._meta.verbose_name), missing)
