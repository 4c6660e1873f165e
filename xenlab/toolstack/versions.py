"""Pools of more than one Xen version (a rolling upgrade): which mixes are allowed and what is
said about them. Xen supports live migration from a release to the same or a newer one, not
back (a guest saved by a newer Xen may use state an older one does not know), so a mixed
pool is allowed for the 4.x releases and its notes say which way guests may move."""

from __future__ import annotations

import re


def version_tuple(version: str) -> tuple[int, int] | None:
    """'4.17.7+13-g2445b30a44-0+deb12u1' -> (4, 17); None when it is not a Xen version."""
    found = re.match(r"^(\d+)\.(\d+)", version)
    return (int(found.group(1)), int(found.group(2))) if found else None


def mixed_versions_allowed(master: str, candidate: str) -> bool:
    """Two Xen releases may share a pool (for an upgrade) when both are known 4.x releases."""
    a, b = version_tuple(master), version_tuple(candidate)
    return a is not None and b is not None and a[0] == b[0] == 4


def version_notes(versions: dict[str, str]) -> list[str]:
    """What a pool of these members' versions means for migrations (empty when all are alike)."""
    releases = {name: version_tuple(v) for name, v in versions.items()}
    if len(set(releases.values())) < 2:
        return []
    ordered = sorted(versions, key=lambda n: releases[n] or (0, 0))
    listing = ", ".join(f"{n} Xen {versions[n]}" for n in ordered)
    return [(f"mixed Xen versions ({listing}): live migration is supported from an older to a newer Xen only; "
            "a move back is tried and reported, not assumed to work")]
