"""Which members of a fleet check which camera: rendezvous (highest-random-weight) hashing.

Why rendezvous hashing: every member computes the same owners from the
camera's id and the member count alone, with no coordinator and nothing
shared but the config, and adding or removing a member moves only the cameras
whose top-R members change, ~R/N of them (a camera moves only if the new
member outranks one of its owners), instead of nearly all of them as
``hash(id) % N`` does. Ownership is static, by config (as vmagent shards
targets): a member that is down keeps its cameras, and with ``replication``
R >= 2 each camera's other owners go on checking it.

The weight of (camera, member) mixes a BLAKE2b hash of the camera id with a
key made from the member's number (SplitMix64's finaliser): stable across
processes, Python versions and machines (Python's ``hash()`` of a str is
salted per process, so two members would disagree). Members are numbered
0..N-1 like a StatefulSet's pods.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: A StatefulSet pod's name is its set's name, '-', its ordinal: camwatch-3 is member 3.
_ORDINAL = re.compile(r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?-(0|[1-9][0-9]{0,5})$", re.IGNORECASE)
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
#: Cameras per block when a whole file's owners are computed at once (bounds memory at 1,000 members).
_BLOCK = 4096


def _mix(x: int) -> int:
    """SplitMix64's finaliser: a bijection of 64-bit words in which every input bit moves every output bit."""
    x = ((x ^ (x >> 30)) * _M1) & _MASK
    x = ((x ^ (x >> 27)) * _M2) & _MASK
    return x ^ (x >> 31)


def _mix_np(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """``_mix`` on an array (uint64 arithmetic wraps modulo 2**64, as the masks do above)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(_M1)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(_M2)
    out: npt.NDArray[np.uint64] = x ^ (x >> np.uint64(31))
    return out


def camera_hash(camera_id: str) -> int:
    """64 bits of BLAKE2b of the id: the same in every process, unlike Python's salted ``hash()``."""
    return int.from_bytes(hashlib.blake2b(camera_id.encode(), digest_size=8).digest(), "big")


def member_key(member: int) -> int:
    return _mix(((member + 1) * _GOLDEN) & _MASK)


def weight(camera_id: str, member: int) -> int:
    """The member's weight for the camera: the camera's hash and the member's key, mixed.

    One BLAKE2b per camera, not per (camera, member): a whole file's owners are
    then a few array operations (``owners_of``), 50,000 cameras on 30 members in
    well under a second (benchmarks/bench_cluster.py).
    """
    return _mix(camera_hash(camera_id) ^ member_key(member))


def owners(camera_id: str, members: int, replication: int) -> tuple[int, ...]:
    """The ``replication`` members with the highest weights for the camera, highest first."""
    _check(members, replication)
    h = camera_hash(camera_id)
    scored = sorted(((_mix(h ^ member_key(m)), m) for m in range(members)), reverse=True)
    return tuple(m for _, m in scored[:replication])


def owners_of(camera_ids: Iterable[str], members: int, replication: int) -> dict[str, tuple[int, ...]]:
    """``owners`` of every camera, computed on arrays; the same answers, in the order given."""
    _check(members, replication)
    ids = list(camera_ids)
    keys = np.array([member_key(m) for m in range(members)], dtype=np.uint64)
    out: dict[str, tuple[int, ...]] = {}
    for start in range(0, len(ids), _BLOCK):
        block = ids[start:start + _BLOCK]
        hashes = np.fromiter((camera_hash(c) for c in block), dtype=np.uint64, count=len(block))
        weights = _mix_np(hashes[:, None] ^ keys[None, :])
        # Stable ascending sort read backwards: among equal weights the higher member first, as in owners().
        ranked = np.argsort(weights, axis=1, kind="stable")[:, ::-1][:, :replication]
        out.update(zip(block, map(tuple, ranked.tolist())))
    return out


def _check(members: int, replication: int) -> None:
    if members < 1 or not 1 <= replication <= members:
        raise ValueError(f"need 1 <= replication ({replication}) <= members ({members})")


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
        return owners_of(camera_ids, self.members, self.replication)

    def counts(self, assignment: Mapping[str, tuple[int, ...]]) -> list[int]:
        """How many cameras of an ``assignment`` each member owns, by member number."""
        out = [0] * self.members
        for owned in assignment.values():
            for m in owned:
                out[m] += 1
        return out
