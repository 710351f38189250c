"""Territorial unit (属地街镇) resolution from an order's area, address and text."""

from __future__ import annotations

from routing_rules.config import RoutingConfig


def resolve_area(
    address: str | None, area: str | None, text: str, cfg: RoutingConfig
) -> str | None:
    """The 街镇 (its unit name) for an order, or None when nothing matches.

    Order of evidence: the explicit `area` the intake gave (if it names a known 街镇 or place),
    then place names in the `address`, then place names in the `text`. Within one string the
    longest matching place name wins (金山卫站 over 金山卫); on equal length the earliest
    occurrence wins.
    """
    for source in (area, address, text):
        found = match_place(source, cfg)
        if found is not None:
            return found
    return None


def match_place(source: str | None, cfg: RoutingConfig) -> str | None:
    """The 街镇 whose place name is the longest match in `source`, or None."""
    pattern = cfg.place_pattern
    if not source or pattern is None:
        return None
    best: tuple[int, int, str] | None = None  # (-length, start, place)
    found = pattern.search(source)
    while found is not None:  # every start of a place, overlapping ones included
        place, start = found.group(), found.start()
        key = (-len(place), start, place)
        if best is None or key < best:
            best = key
        found = pattern.search(source, start + 1)
    return cfg.areas[best[2]] if best is not None else None
