"""The rule engine (派单规则引擎): from an order, the classifier's prediction and the order's
history to a `Decision` with its audit trail. Pure: no I/O, no clock.

Precedence, first match decides (a rule that constrains wins over one that forces a unit):

1. 异常名录 `ABNORMAL-LIST` + the entry id: a listed caller / enterprise / credit code goes to
   the manual review of `settings.abnormal_review_unit` (区市场监管局); never auto-dispatched.
2. `RETURN-LIMIT`: returned (退单) `settings.max_returns` times or more → the dispatcher decides.
3. Keyword / enterprise rules with `manual: true` → manual queue.
4. The line unit (条线):
   a. a keyword rule's `force_unit`, then an enterprise rule's (file order), skipping a unit
      that already returned the order (`RULE-UNIT-RETURNED`);
   b. else the classifier's best line-bureau candidate that has not returned the order, if its
      probability reaches its threshold (the model's own with `threshold_source: model`, else
      the per-unit override, else the default; on 改派 the lower of that and
      `reroute_min_probability`);
   c. else, for a local matter, the bureau of the matched `local_matters` entry;
   d. else `LOW-CONFIDENCE` → manual queue with the top suggestions.
5. Scope: a keyword rule's `scope`, else `line` for a forced unit, else a line keyword → 条线,
   else a local-matter keyword or a bureau with `local_handling` → 属地.
6. 条线部门为主 (line-first) triggers, in this order: `LINE-FIRST-BEYOND-POWER` (街镇无力解决),
   `LINE-FIRST-REOPENED` (重办 while a 街镇 led), `LINE-FIRST-REPEAT` (repeat_count ≥ N),
   `LINE-FIRST-LEGACY` (历史遗留 flag or keyword). With a trigger the line bureau leads and the
   街镇 (from the address) co-handles.
7. Without a trigger: a local matter with a known 街镇 → `LOCAL-TERRITORIAL` (街镇主办, 条线协办);
   if that 街镇 returned it → `TERRITORIAL-RETURNED` (条线主办); a local matter with no 街镇
   found → `LOCAL-NO-AREA` (条线主办); a non-local matter → the line bureau, plus the 街镇 as
   协办 when the bureau's `territorial_co` is set (`TERRITORIAL-CO`).
8. Rules' `co_units` are added; a unit never appears twice, never as both 主办 and 协办, and a
   unit that returned the order is never 主办 again (nor 协办, except the 街镇 that co-handles
   under 条线主办、街镇协办 after a 无力解决 return, as the plan prescribes).

All units in a `Decision` are unit names. `rules` lists explicit rule ids first, then the
built-in ones; `reasons` explains every step in Chinese.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from models.records import Candidate, Decision, OrderIn, Prediction, RoutingContext
from routing_rules.areas import resolve_area
from routing_rules.config import (
    BUILTIN_RULE_IDS,
    AbnormalEntry,
    EnterpriseRule,
    KeywordRule,
    LocalMatter,
    RoutingConfig,
    UnitConfig,
    every_start,
    longest_first,
)

TRIGGER_RULES: dict[str, str] = {
    "beyond_power": "LINE-FIRST-BEYOND-POWER",
    "reopened": "LINE-FIRST-REOPENED",
    "repeat": "LINE-FIRST-REPEAT",
    "legacy": "LINE-FIRST-LEGACY",
}


class TextFacts(NamedTuple):
    """What the rules find in an order itself (文本事实): its 街镇, the keyword and enterprise
    rules it matches, its local matter and line / legacy keywords, apart from its prediction
    and history. Found by `RoutingEngine.text_facts`, possibly in another process (the
    classifier's helper, `streams.classify_ahead`, forked with this engine): `config_token`
    names the engine, and another engine finds them again rather than trust them. Rules are
    positions in the config's tuples, so the value stays small to send back."""

    config_token: str
    territorial: str | None
    keyword_hits: tuple[int, ...]  # positions in cfg.keyword_rules
    enterprise_hits: tuple[int, ...]  # positions in cfg.enterprise_rules
    local_hit: int | None  # position in cfg.local_matters
    line_keyword: str | None
    legacy_keyword: str | None


@dataclass
class _Facts:
    """What the engine found out about one order before deciding."""

    order: OrderIn
    prediction: Prediction
    ctx: RoutingContext
    returned: frozenset[str]
    candidates: tuple[Candidate, ...]  # known units, best first, returned ones removed
    territorial: str | None
    keyword_hits: tuple[KeywordRule, ...]
    enterprise_hits: tuple[EnterpriseRule, ...]
    local_hit: LocalMatter | None
    line_keyword: str | None
    legacy_keyword: str | None
    rules: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def hits(self) -> tuple[KeywordRule | EnterpriseRule, ...]:
        """Explicit rules that matched: keyword rules first, then enterprise rules."""
        return (*self.keyword_hits, *self.enterprise_hits)


class RoutingEngine:
    """Applies a `RoutingConfig` to orders. Stateless apart from the config."""

    def __init__(self, cfg: RoutingConfig) -> None:
        self.cfg = cfg
        #: names this engine (and a forked copy of it) in the `TextFacts` it finds
        self.token = uuid.uuid4().hex
        self._keywords = KeywordScan((
            *(k for r in cfg.keyword_rules for k in (*r.any, *r.all, *r.none)),
            *(k for m in cfg.local_matters for k in m.keywords),
            *cfg.line_keywords, *cfg.legacy_keywords,
        ))

    # ---- public API -------------------------------------------------------------------------
    def decide(
        self,
        order: OrderIn,
        prediction: Prediction,
        ctx: RoutingContext,
        *,
        model_thresholds: dict[str, float] | None = None,
    ) -> Decision:
        """The dispatch decision for `order` (first dispatch, or 改派 when ctx.returned_by)."""
        facts = self._facts(order, prediction, ctx)
        if ctx.returned_by:
            facts.rules.append("REROUTE")
            facts.reasons.append(f"改派：已退单单位 {'、'.join(ctx.returned_by)} 不再派回")
        constrained = self._constraints(facts)
        if constrained is not None:
            return constrained
        line_unit = self._line_unit(facts, model_thresholds)
        if line_unit is None:
            return self._manual(facts, "LOW-CONFIDENCE", "模型置信度低于阈值，转人工派单")
        return self._assign(facts, line_unit)

    def is_urgent(self, decision: Decision) -> bool:
        """Whether an urgent (紧急) rule fired for this decision."""
        return any(r in self.cfg.urgent_rule_ids for r in decision.rules)

    # ---- facts ------------------------------------------------------------------------------
    def text_facts(self, order: OrderIn) -> TextFacts:
        """The rules' findings in ``order`` itself (its text and fields): the scans that make
        up most of `decide`'s work, which a helper process can do beside classification."""
        cfg, text = self.cfg, order.full_text
        found = self._keywords.found(text)  # the rules' keywords in the text, in one pass
        return TextFacts(
            config_token=self.token,
            territorial=resolve_area(order.address, order.area, text, cfg),
            keyword_hits=tuple(
                i for i, r in enumerate(cfg.keyword_rules)
                if _keyword_fires(r, order, text, found)
            ),
            enterprise_hits=tuple(
                i for i, r in enumerate(cfg.enterprise_rules) if _enterprise_fires(r, order)
            ),
            local_hit=next(
                (i for i, m in enumerate(cfg.local_matters) if not found.isdisjoint(m.keywords)),
                None,
            ) if found else None,
            line_keyword=_first_in(cfg.line_keywords, found),
            legacy_keyword=_first_in(cfg.legacy_keywords, found),
        )

    def _facts(self, order: OrderIn, prediction: Prediction, ctx: RoutingContext) -> _Facts:
        found = prediction.rule_facts  # found beside the classification, by this engine?
        if not isinstance(found, TextFacts) or found.config_token != self.token:
            found = self.text_facts(order)
        cfg = self.cfg
        returned = frozenset(self._name(u) or u for u in ctx.returned_by)
        return _Facts(
            order=order,
            prediction=prediction,
            ctx=ctx,
            returned=returned,
            candidates=self._candidates(prediction, returned),
            territorial=found.territorial,
            keyword_hits=tuple(cfg.keyword_rules[i] for i in found.keyword_hits),
            enterprise_hits=tuple(cfg.enterprise_rules[i] for i in found.enterprise_hits),
            local_hit=None if found.local_hit is None else cfg.local_matters[found.local_hit],
            line_keyword=found.line_keyword,
            legacy_keyword=found.legacy_keyword,
        )

    def _name(self, unit: str) -> str | None:
        found = self.cfg.unit(unit)
        return found.name if found else None

    def _candidates(
        self, prediction: Prediction, returned: frozenset[str]
    ) -> tuple[Candidate, ...]:
        out: dict[str, Candidate] = {}
        for c in sorted(prediction.candidates, key=lambda c: -c.probability):
            name = self._name(c.unit)
            if name is not None and name not in returned and name not in out:
                out[name] = Candidate(unit=name, probability=c.probability)
        return tuple(out.values())

    # ---- steps 1-3: constraints ---------------------------------------------------------------
    def _constraints(self, f: _Facts) -> Decision | None:
        entry = _abnormal_entry(self.cfg.abnormal, f.order)
        if entry is not None:
            review = self.cfg.settings.abnormal_review_unit
            f.rules.append(entry.id)
            return self._manual(
                f, "ABNORMAL-LIST",
                f"命中异常名录（{entry.id}：{entry.reason}），不自动派单，转{review}人工审核",
                line_unit=review,
            )
        limit = self.cfg.settings.max_returns
        if len(f.ctx.returned_by) >= limit:
            return self._manual(
                f, "RETURN-LIMIT", f"已退单 {len(f.ctx.returned_by)} 次（上限 {limit} 次），由派单员人工派单"
            )
        manual_rules = [r for r in f.hits if r.manual]
        if manual_rules:
            first = manual_rules[0]
            f.rules.extend(r.id for r in manual_rules[1:])
            self._note_urgent(f, manual_rules)
            return self._manual(f, first.id, f"规则 {first.id}：{first.description or '转人工派单'}")
        return None

    # ---- step 4: the line unit -----------------------------------------------------------------
    def _line_unit(
        self, f: _Facts, model_thresholds: dict[str, float] | None
    ) -> tuple[str, str] | None:
        """(line unit, how it was chosen: rule | model | local), or None for the manual queue."""
        for rule in f.hits:
            if rule.force_unit is None:
                continue
            if rule.force_unit in f.returned:
                f.rules.append("RULE-UNIT-RETURNED")
                f.reasons.append(f"规则 {rule.id} 指定的 {rule.force_unit} 已退单，不再派回")
                continue
            f.rules.append(rule.id)
            f.reasons.append(f"规则 {rule.id}：{rule.description or '指定承办单位'} → {rule.force_unit}")
            return rule.force_unit, "rule"
        model_pick = self._model_pick(f, model_thresholds)
        if model_pick is not None:
            return model_pick, "model"
        if f.local_hit is not None and f.local_hit.unit not in f.returned:
            f.rules.append(f.local_hit.id)
            f.reasons.append(
                f"模型把握不足，按属地事项关键词（{f.local_hit.description or f.local_hit.id}）"
                f"确定条线为 {f.local_hit.unit}"
            )
            return f.local_hit.unit, "local"
        return None

    def _model_pick(self, f: _Facts, model_thresholds: dict[str, float] | None) -> str | None:
        best = next((c for c in f.candidates if self._is_line(c.unit)), None)
        if best is None:
            f.reasons.append("模型未给出可派的条线单位")
            return None
        threshold = self.cfg.threshold_for(best.unit, model_thresholds)
        if f.ctx.returned_by:
            threshold = min(threshold, self.cfg.settings.reroute_min_probability)
        if best.probability < threshold:
            f.reasons.append(
                f"模型首选 {best.unit} 概率 {best.probability:.2f} 低于阈值 {threshold:.2f}"
            )
            return None
        f.reasons.append(f"模型建议条线 {best.unit}（概率 {best.probability:.2f}，阈值 {threshold:.2f}）")
        if f.prediction.terms and best.unit == f.candidates[0].unit:
            words = "、".join(t for t, _ in f.prediction.terms[:5])
            f.reasons.append(f"模型依据的词：{words}")
        return best.unit

    def _is_line(self, unit: str) -> bool:
        found = self.cfg.unit(unit)
        return found is not None and found.is_line

    # ---- steps 5-8: scope, line-first, lead and co-units ----------------------------------------
    def _assign(self, f: _Facts, picked: tuple[str, str]) -> Decision:
        line_unit, how = picked
        unit = self.cfg.unit_by_name[line_unit]
        if not unit.is_line:  # a rule forced a 街镇 directly
            return self._decision(f, lead=line_unit, co=[], line_unit=None, how=how)
        local = self._is_local(f, unit, how)
        trigger = self._trigger(f)
        terr = f.territorial
        if trigger is not None:
            f.rules.append(TRIGGER_RULES[trigger])
            f.reasons.append(f"条线部门为主（{_TRIGGER_TEXT[trigger]}）：{line_unit} 主办"
                             + (f"，{terr} 协办" if terr else "，未识别属地街镇"))
            return self._decision(f, lead=line_unit, co=[terr] if terr else [],
                                  line_unit=line_unit, how=how, trigger=trigger)
        if local:
            return self._assign_local(f, line_unit, how)
        co: list[str] = []
        if terr and unit.territorial_co and terr not in f.returned:
            f.rules.append("TERRITORIAL-CO")
            co.append(terr)
            f.reasons.append(f"条线事项：{line_unit} 主办，属地 {terr} 协办")
        else:
            f.reasons.append(f"条线事项：{line_unit} 主办")
        return self._decision(f, lead=line_unit, co=co, line_unit=line_unit, how=how)

    def _assign_local(self, f: _Facts, line_unit: str, how: str) -> Decision:
        terr = f.territorial
        if terr is None:
            f.rules.append("LOCAL-NO-AREA")
            f.reasons.append(f"属地事项但未能从地址识别街镇：{line_unit} 主办")
            return self._decision(f, lead=line_unit, co=[], line_unit=line_unit, how=how)
        if terr in f.returned:
            f.rules.append("TERRITORIAL-RETURNED")
            f.reasons.append(f"属地街镇 {terr} 已退单：改由条线 {line_unit} 主办")
            return self._decision(f, lead=line_unit, co=[], line_unit=line_unit, how=how)
        f.rules.append("LOCAL-TERRITORIAL")
        f.reasons.append(f"属地事项：{terr} 主办，{line_unit} 协办")
        return self._decision(f, lead=terr, co=[line_unit], line_unit=line_unit, how=how)

    def _is_local(self, f: _Facts, unit: UnitConfig, how: str) -> bool:
        scoped = next((r for r in f.keyword_hits if r.scope is not None), None)
        if scoped is not None:
            if scoped.id not in f.rules:
                f.rules.append(scoped.id)
            return scoped.scope == "local"
        if how == "rule":
            return False
        if f.line_keyword is not None:
            f.reasons.append(f"含条线事项关键词“{f.line_keyword}”，按条线事项处理")
            return False
        if f.local_hit is not None:
            if f.local_hit.id not in f.rules:
                f.rules.append(f.local_hit.id)
            return True
        return unit.local_handling

    def _trigger(self, f: _Facts) -> str | None:
        ctx, s = f.ctx, self.cfg.settings
        if ctx.beyond_power:
            return "beyond_power"
        if ctx.reopened_with_territorial:
            return "reopened"
        if ctx.repeat_count >= s.repeat_min_count:
            return "repeat"
        if f.order.legacy or f.legacy_keyword is not None:
            return "legacy"
        return None

    # ---- building decisions ---------------------------------------------------------------------
    def _decision(
        self,
        f: _Facts,
        *,
        lead: str,
        co: list[str],
        line_unit: str | None,
        how: str,
        trigger: str | None = None,
    ) -> Decision:
        hits = f.hits
        for rule in hits:
            for unit in rule.co_units:
                if unit not in f.returned and unit != lead and unit not in co:
                    co.append(unit)
                    f.reasons.append(f"规则 {rule.id}：增加 {unit} 协办")
            if (rule.co_units or rule.urgent) and rule.id not in f.rules:
                f.rules.append(rule.id)
        self._note_urgent(f, hits)
        co_units = tuple(dict.fromkeys(u for u in co if u != lead))
        confidence = next((c.probability for c in f.candidates if c.unit == line_unit), 0.0)
        return self._base(
            f,
            lead_unit=lead,
            co_units=co_units,
            manual=False,
            line_unit=line_unit,
            line_first=trigger is not None,
            trigger=trigger,
            confidence=confidence,
        )

    def _manual(self, f: _Facts, rule_id: str, reason: str, *, line_unit: str | None = None) -> Decision:
        f.rules.insert(0, rule_id)
        f.reasons.append(reason)
        if f.candidates:
            shown = "、".join(f"{c.unit} {c.probability:.2f}" for c in self._suggestions(f))
            f.reasons.append(f"建议单位：{shown}")
        top = f.candidates[0].probability if f.candidates else 0.0
        return self._base(
            f, lead_unit=None, co_units=(), manual=True, line_unit=line_unit,
            line_first=False, trigger=None, confidence=top,
        )

    def _base(
        self,
        f: _Facts,
        *,
        lead_unit: str | None,
        co_units: tuple[str, ...],
        manual: bool,
        line_unit: str | None,
        line_first: bool,
        trigger: str | None,
        confidence: float,
    ) -> Decision:
        p = f.prediction
        return Decision(
            order_id=f.order.order_id,
            lead_unit=lead_unit,
            co_units=co_units,
            manual=manual,
            rules=_explicit_first(f.rules),
            reasons=tuple(f.reasons),
            model_version=p.model_version,
            candidates=self._suggestions(f),
            terms=p.terms,
            against=p.against,
            line_unit=line_unit,
            territorial_unit=f.territorial,
            line_first=line_first,
            trigger=trigger,
            appeal_type=p.appeal_type or f.order.appeal_type,
            confidence=confidence,
        )

    def _suggestions(self, f: _Facts) -> tuple[Candidate, ...]:
        return f.candidates[: self.cfg.settings.suggestions]

    def _note_urgent(self, f: _Facts, rules: Sequence[KeywordRule | EnterpriseRule]) -> None:
        for rule in rules:
            if rule.urgent:
                if rule.id not in f.rules:
                    f.rules.append(rule.id)
                line = f"【紧急】规则 {rule.id}：{rule.description or '紧急工单'}"
                if line not in f.reasons:
                    f.reasons.insert(0, line)


_TRIGGER_TEXT: dict[str, str] = {
    "beyond_power": "街镇退回无力解决",
    "reopened": "街镇主办期间被重办",
    "repeat": "多次重复涉企投诉",
    "legacy": "历史遗留问题",
}


def _explicit_first(rules: list[str]) -> tuple[str, ...]:
    """Rule ids without repeats, configured (YAML) ids before built-in ones, each group in the
    order they fired."""
    unique = list(dict.fromkeys(rules))
    explicit = [r for r in unique if r not in BUILTIN_RULE_IDS]
    builtin = [r for r in unique if r in BUILTIN_RULE_IDS]
    return tuple(explicit + builtin)


# ---- matching helpers ----------------------------------------------------------------------------
class KeywordScan:
    """Which of a fixed set of keywords (关键词) occur in a text, found in one pass: a
    longest-first alternation searched again from the character after each start, so every
    start of a keyword is visited, and at each start the longest keyword there stands for the
    shorter ones that are its prefixes. The same set as ``{k for k in keywords if k in text}``,
    without a substring search per keyword and rule."""

    def __init__(self, keywords: Iterable[str]) -> None:
        words = set(keywords)
        self._pattern = longest_first(words)
        self._with_prefixes = {w: frozenset(p for p in words if w.startswith(p)) for w in words}

    def found(self, text: str) -> set[str]:
        out: set[str] = set()
        if self._pattern is not None:
            for m in every_start(self._pattern, text):
                out |= self._with_prefixes[m.group()]
        return out


def _first_in(keywords: tuple[str, ...], found: set[str]) -> str | None:
    """The first of ``keywords`` (in their configured order) among those ``found``."""
    return next((k for k in keywords if k in found), None) if found else None


def _keyword_fires(rule: KeywordRule, order: OrderIn, text: str, found: set[str]) -> bool:
    """Whether ``rule`` fires for ``order``; ``found``: the keywords in its ``text``."""
    if rule.any and found.isdisjoint(rule.any):
        return False
    if rule.all and not found.issuperset(rule.all):
        return False
    if rule.none and not found.isdisjoint(rule.none):
        return False
    regex = rule.regex
    if regex is not None and regex.search(text) is None:
        return False
    if rule.appeal_types and order.appeal_type not in rule.appeal_types:
        return False
    return not rule.channels or order.channel in rule.channels


def _norm_name(name: str | None) -> str:
    if not name:
        return ""
    table = str.maketrans({"（": "(", "）": ")", " ": "", "\u3000": ""})
    return name.translate(table).strip()


def _norm_code(code: str | None) -> str:
    return (code or "").strip().upper()


def _enterprise_fires(rule: EnterpriseRule, order: OrderIn) -> bool:
    name, code = _norm_name(order.enterprise_name), _norm_code(order.credit_code)
    for e in rule.enterprises:
        if code and e.credit_code and _norm_code(e.credit_code) == code:
            return True
        if name and e.name and _norm_name(e.name) == name:
            return True
    return False


def _norm_phone(phone: str | None) -> str:
    digits = "".join(ch for ch in (phone or "") if ch.isdigit())
    return digits[2:] if digits.startswith("86") and len(digits) == 13 else digits


def _abnormal_entry(entries: tuple[AbnormalEntry, ...], order: OrderIn) -> AbnormalEntry | None:
    phone = _norm_phone(order.caller)
    name, code = _norm_name(order.enterprise_name), _norm_code(order.credit_code)
    for e in entries:
        if phone and any(_norm_phone(c) == phone for c in e.callers):
            return e
        if name and any(_norm_name(n) == name for n in e.enterprises):
            return e
        if code and any(_norm_code(c) == code for c in e.credit_codes):
            return e
    return None
