"""Which members of a fleet check which camera: rendezvous (highest-random-weight) hashing.

Why rendezvous hashing: every member computes the same owners from the
camera's id and the member count alone, with no coordinator and nothing
shared but the config, and adding or removing a member moves only the cameras
whose top-R members change, ~R/N of them (a camera moves only if the new
member outranks one of its owners), instead of nearly all of them as
``hash(id) % N`` does. Ownership is static, by config (as vmagent shards
targets): a member that is down keeps its cameras, and with ``replication``
R >= 2 each camera's other owners go on checking it.

The weight of (camera, member) is a keyed BLAKE2b of the camera id, the key
being the member's number: stable across processes, Python versions and
machines (Python's ``hash()`` of a str is salted per process, so two members
would disagree). Members are numbered 0..N-1 like a StatefulSet's pods.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

#: A StatefulSet pod's name is its set's name, '-', its ordinal: camwatch-3 is member 3.
_ORDINAL = re.compile(r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?-(0|[1-9][0-9]{0,5})$", re.IGNORECASE)


@lru_cache(maxsize=4096)
def _key(member: int) -> bytes:
    return member.to_bytes(8, "big")


def weight(camera_id: str, member: int) -> int:
    """The member's weight for the camera: 64 bits of BLAKE2b keyed by the member's number."""
    digest = hashlib.blake2b(camera_id.encode(), digest_size=8, key=_key(member)).digest()
    return int.from_bytes(digest, "big")


def owners(camera_id: str, members: int, replication: int) -> tuple[int, ...]:
    """The ``replication`` members with the highest weights for the camera, highest first."""
    if members < 1 or not 1 <= replication <= members:
        raise ValueError(f"need 1 <= replication ({replication}) <= members ({members})")
    if replication == members:
        ranked = sorted(range(members), key=lambda m: weight(camera_id, m), reverse=True)
        return tuple(ranked)
    scored = sorted(((weight(camera_id, m), m) for m in range(members)), reverse=True)
    return tuple(m for _, m in scored[:replication])


def member_from_hostname(hostname: str) -> int | None:
    """The ordinal a StatefulSet gives its pod's host name (``camwatch-3`` or its FQDN: 3), or None."""
    first = hostname.strip().split(".", 1)[0]
    m = _ORDINAL.match(first)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Cluster:
    """This process's place in the fleet: member ``member`` of ``members``, each camera on ``replication``."""

    members: int = 1
    member: int = 0
    replication: int = 1

    def __post_init__(self) -> None:
        if self.members < 1 or not 0 <= self.member < self.members or not 1 <= self.replication <= self.members:
            raise ValueError(f"member {self.member} of {self.members} with replication {self.replication}: "
                             "need 0 <= member < members and 1 <= replication <= members")

    @property
    def single(self) -> bool:
        """One member owning every camera: no hashing at all."""
        return self.replication == self.members

    def owners(self, camera_id: str) -> tuple[int, ...]:
        """The members that check the camera, highest weight first."""
        return owners(camera_id, self.members, self.replication)

    def owns(self, camera_id: str) -> bool:
        return self.single or self.member in self.owners(camera_id)

    def assignment(self, camera_ids: Iterable[str]) -> dict[str, tuple[int, ...]]:
        """Every camera's owners, in the order given."""
        return {cid: self.owners(cid) for cid in camera_ids}

    def counts(self, camera_ids: Iterable[str]) -> list[int]:
        """How many of the cameras each member owns, by member number."""
        out = [0] * self.members
        for owned in self.assignment(camera_ids).values():
            for m in owned:
                out[m] += 1
        return out
