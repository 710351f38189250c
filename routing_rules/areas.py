"""Territorial unit (属地街镇) resolution from an order's area, address and text."""

from __future__ import annotations

from routing_rules.config import RoutingConfig, every_start


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
    for found in every_start(pattern, source):  # overlapping places included
        key = (-len(found.group()), found.start(), found.group())
        if best is None or key < best:
            best = key
    return cfg.areas[best[2]] if best is not None else None
