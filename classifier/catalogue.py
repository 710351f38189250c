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

from classifier.features import ADDRESS, AREA, TEXT, caller_name

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

#: Official short forms (简称) of functions (after `FUNCTION_ALIASES`): a city unit is also
#: recognised by one of these, a district unit by its territory followed by one (龙华区安监局).
#: Read off the unit names and the train + validation orders of the Haikou data, never test.
ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "安全生产监督管理局": ("安监局",),
    "科学技术工业信息化局": ("科工信",),
    "旅游发展委员会": ("旅游委",),
    "质量技术监督局": ("质监局",),
    "国家税务局": ("国税局",),
    "地方税务局": ("地税局",),
    "海洋和渔业局": ("海洋局",),
    "规划委员会": ("规划局", "规划委"),
    "精神文明建设指导委员会办公室": ("文明办",),
    "社会保险事业局": ("社保局",),
    "公安局消防支队": ("消防支队",),
    "排水管道养护所": ("排水所",),
    "开源水务资产管理有限公司": ("开源水务",),
    "公共交通集团有限公司": ("公交集团", "公交公司"),
    "旅游文化投资控股集团有限公司": ("海旅集团",),
    "人口计划生育委员会": ("计生委",),
    "园林管理局": ("园林局",),
    "食药监局": ("食药监",),
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
    elif name.startswith(CITY) and len(name) > 2 and (
        name[1] not in "政民" or name.startswith("市民政")  # 市政, 市民 are words; 市民政局 is not
    ):
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


def name_variants(
    unit: str, parts: UnitParts, unique_function: bool, abbreviations: bool = True
) -> list[str]:
    """Strings whose presence in an order points at ``unit``; with ``abbreviations`` also
    its official short forms (`ABBREVIATIONS`) and, for a district unit, the district
    without 区 before the short function (琼山城管)."""
    name = _CITY_PREFIX.sub("", unit)
    out = {unit, name}
    short = ABBREVIATIONS.get(parts.function, ()) if abbreviations else ()
    if parts.town:
        out.add(parts.town)
    elif parts.territory != CITY:
        out.add(parts.territory + short_name(parts.function))
        out.update(parts.territory + a for a in short)
        if abbreviations and len(parts.territory) >= 3:
            out.add(parts.territory[:-1] + short_name(parts.function))
            out.update(parts.territory[:-1] + a for a in short)
    elif unique_function:
        out.add(parts.function)
        if len(short_name(parts.function)) >= 3:
            out.add(short_name(parts.function))
        out.update(short)
    return sorted(v for v in out if len(v) >= 2)


def is_subsequence(short: str, long: str) -> bool:
    """True when the characters of ``short`` appear in ``long`` in order (市安监局 in
    市安全生产监督管理局): how Chinese abbreviations are formed."""
    it = iter(long)
    return all(ch in it for ch in short)


class CatalogueMatcher(TransformerMixin, BaseEstimator):
    """Per-unit name-mention scores: column j is 1 when the order's text, area or address
    mentions unit j (``classes_`` order, the sorted labels seen in ``fit``).

    With ``abbreviations`` the official short forms count as mentions (`name_variants`).
    With ``callers`` a unit that phones in about an order (交警来电反馈, 市排水来电咨询,
    秀英发改委来电反馈) counts as mentioned when its name abbreviates one or two units
    (`caller_units`).
    """

    def __init__(self, abbreviations: bool = True, callers: bool = True) -> None:
        self.abbreviations = abbreviations
        self.callers = callers

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
            name_variants(u, p, per_function[p.function] == 1, self.abbreviations)
            for u, p in zip(units, parts, strict=True)
        ]
        self.unit_territory_ = [p.territory for p in parts]
        self.unit_names_ = [_CITY_PREFIX.sub("", u.strip()) for u in units]
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
        if self.callers:
            cache: dict[str, list[int]] = {}
            for doc, row in enumerate(X):
                who = caller_name(row[TEXT])
                if who is not None:
                    if who not in cache:
                        cache[who] = self.caller_units(who)
                    pairs.update((doc, j) for j in cache[who])
        rows = [r for r, _ in pairs]
        cols = [c for _, c in pairs]
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=(len(blobs), len(self.classes_)))

    def caller_units(self, who: str) -> list[int]:
        """Units (column indices) whose name the caller's name abbreviates: its characters in
        order, within the caller's district when it names one (龙华市政 → 龙华区市政维修管理中心),
        city units first when it names none (教育局 → 市教育局); none when more than two match."""
        name = _CITY_PREFIX.sub("", who.strip())
        territory, rest = None, name
        for t in sorted(self.territories_, key=len, reverse=True):
            form = next((f for f in (t, t[:-1]) if name.startswith(f)), None)
            if form and len(name) - len(form) >= 2:
                territory, rest = t, name[len(form) :]
                break
        if territory is None and name.startswith(CITY) and len(name) > 3:
            territory, rest = CITY, name[1:]
        exact = [j for j, full in enumerate(self.unit_names_) if full in (name, CITY + name)]
        if exact:
            return exact
        found = [
            j
            for j, (t, full) in enumerate(zip(self.unit_territory_, self.unit_names_, strict=True))
            if (territory is None or t == territory) and is_subsequence(rest, full)
        ]
        if territory is None and len(found) > 1:
            found = [j for j in found if self.unit_territory_[j] == CITY] or found
        return found if len(found) <= 2 else []

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"unit_mention:{u}" for u in self.classes_], dtype=object)


def _bigram_key(word: str) -> int:
    """The integer of a word's first two characters (as in `CatalogueMatcher.transform`)."""
    return (ord(word[0]) << 21) | ord(word[1])
