"""The unit catalogue (承办单位目录) seen as function × territory (职能 × 属地).

Units of a city are often one function in several districts (龙华区城管局, 美兰区城管局) or one
kind of territorial office in many towns (三江镇人民政府, 金宇街道办). `parse_unit` splits a unit
name into territory, function and town; `CatalogueMatcher` scores, per unit, whether an order
mentions the unit (its name, short name or town), which lets units seen once or twice be
recognised from their names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from classifier.features import ADDRESS, AREA, TEXT

CITY = "市"  # territory of a city-wide unit (市级/全域), and of units with no territory prefix

# Common official abbreviations, so that one function has one name in every district.
FUNCTION_ALIASES: dict[str, str] = {
    "住房和城乡建设局": "住建局",
    "人力资源和社会保障局": "人社局",
    "生态环境保护局": "环保局",
    "环境保护局": "环保局",
    "生态环境局": "环保局",
    "城市管理行政执法局": "城管局",
    "城市管理局": "城管局",
    "劳动保障监察大队": "劳动监察大队",
    "物价监督检查局": "物价局",
    "文化体育和旅游发展局": "文体局",
    "食品药品监督管理局": "食药监局",
    "国土资源局": "国土局",
}

_CITY_PREFIX = re.compile(r"^(?:海口市|海口)")
_TERRITORY = re.compile(r"^(?P<t>[^\s区市县]{2}(?:区|县))(?P<rest>.+)$")
_TOWN = re.compile(r"^(?P<town>[^\s]{1,4}?(?:镇|街道|乡))(?:人民政府|政府|办事处|办)$")
_SUFFIXES = (
    "股份有限公司", "有限责任公司", "有限公司", "分公司", "公司", "人民政府", "政府",
    "管理局", "委员会", "办公室", "服务中心", "中心", "支队", "大队", "局", "委", "办", "所",
)  # fmt: skip


@dataclass(frozen=True)
class UnitParts:
    territory: str  # 龙华区 / 市
    function: str  # 城管局 / 镇政府 / 市公安局交通警察支队
    town: str  # 三江镇 / "" when not a town office


def parse_unit(unit: str, territories: frozenset[str] = frozenset()) -> UnitParts:
    """Split ``unit`` into territory, function and town, given the known ``territories``."""
    name = _CITY_PREFIX.sub("", unit.strip())
    territory, rest = CITY, name
    m = _TERRITORY.match(name)
    if m and m.group("t") in territories:
        territory, rest = m.group("t"), m.group("rest")
    elif name.startswith(CITY) and len(name) > 2 and name[1] not in "政民":  # 市政, 市民 are words
        rest = name[1:]
    town_m = _TOWN.match(rest)
    if town_m and territory != CITY:
        town = town_m.group("town")
        kind = "街道办" if town.endswith("街道") else "镇政府"
        return UnitParts(territory, kind, town)
    return UnitParts(territory, FUNCTION_ALIASES.get(rest, rest), "")


def infer_territories(units: list[str]) -> frozenset[str]:
    """Territory prefixes (X区/X县) that begin the names of at least two distinct units."""
    counts: dict[str, set[str]] = {}
    for u in units:
        m = _TERRITORY.match(_CITY_PREFIX.sub("", u.strip()))
        if m:
            counts.setdefault(m.group("t"), set()).add(u)
    return frozenset(t for t, us in counts.items() if len(us) >= 2)


def short_name(function: str) -> str:
    """The function without its organisational suffix (市政工程维修公司 → 市政工程维修)."""
    for suf in _SUFFIXES:
        if function.endswith(suf) and len(function) - len(suf) >= 2:
            return function[: -len(suf)]
    return function


def name_variants(unit: str, parts: UnitParts, unique_function: bool) -> list[str]:
    """Strings whose presence in an order points at ``unit``."""
    name = _CITY_PREFIX.sub("", unit)
    out = {unit, name}
    if parts.town:
        out.add(parts.town)
    elif parts.territory != CITY:
        out.add(parts.territory + short_name(parts.function))
    elif unique_function:
        out.add(parts.function)
        if len(short_name(parts.function)) >= 3:
            out.add(short_name(parts.function))
    return sorted(v for v in out if len(v) >= 2)


class CatalogueMatcher(TransformerMixin, BaseEstimator):
    """Per-unit name-mention scores: column j is 1 when the order's text, area or address
    mentions unit j (``classes_`` order, the sorted labels seen in ``fit``)."""

    def fit(self, X: np.ndarray, y: Any = None) -> CatalogueMatcher:
        if y is None:
            raise ValueError("CatalogueMatcher needs the unit labels")
        self.classes_ = np.unique(np.asarray(y))
        units = [str(u) for u in self.classes_]
        self.territories_ = infer_territories(units)
        parts = [parse_unit(u, self.territories_) for u in units]
        per_function: dict[str, int] = {}
        for p in parts:
            per_function[p.function] = per_function.get(p.function, 0) + 1
        self.variants_ = [
            name_variants(u, p, per_function[p.function] == 1)
            for u, p in zip(units, parts, strict=True)
        ]
        self.index_: dict[str, list[int]] = {}
        for j, vs in enumerate(self.variants_):
            for v in vs:
                self.index_.setdefault(v, []).append(j)
        # variants by their first two characters, for the vectorised prefilter
        self.by_prefix_: dict[int, list[str]] = {}
        for v in sorted(self.index_, key=lambda w: (-len(w), w)):
            self.by_prefix_.setdefault(_bigram_key(v), []).append(v)
        self.prefixes_ = np.array(sorted(self.by_prefix_), dtype=np.int64)
        return self

    def transform(self, X: np.ndarray) -> sp.csr_matrix:
        """Mentions found by a numpy prefilter (positions whose two characters begin some
        variant) and a string comparison at those positions only."""
        blobs = [f"{row[TEXT]}\n{row[AREA]}\n{row[ADDRESS]}" for row in X]
        joined = "\x00".join(blobs) + "\x00"
        cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        keys = (cps[:-1] << 21) | cps[1:]
        pos = np.searchsorted(self.prefixes_, keys)
        pos = np.minimum(pos, max(self.prefixes_.size - 1, 0))
        starts = np.nonzero(self.prefixes_[pos] == keys)[0] if self.prefixes_.size else pos[:0]
        lengths = np.fromiter((len(b) + 1 for b in blobs), dtype=np.int64, count=len(blobs))
        doc_of = np.searchsorted(np.cumsum(lengths), starts, side="right")
        pairs: set[tuple[int, int]] = set()
        for at, doc in zip(starts.tolist(), doc_of.tolist(), strict=True):
            for v in self.by_prefix_[int(keys[at])]:
                if joined.startswith(v, at):
                    pairs.update((doc, j) for j in self.index_[v])
        rows = [r for r, _ in pairs]
        cols = [c for _, c in pairs]
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=(len(blobs), len(self.classes_)))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"unit_mention:{u}" for u in self.classes_], dtype=object)


def _bigram_key(word: str) -> int:
    """The integer of a word's first two characters (as in `CatalogueMatcher.transform`)."""
    return (ord(word[0]) << 21) | ord(word[1])
