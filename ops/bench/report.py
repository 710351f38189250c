"""The bench report (压测报告): ratios against the ceilings measured in the same run, the goals,
the Chinese text and the JSON line."""

from __future__ import annotations

import math
from typing import Any, cast

#: Keys the JSON line always has (None when a phase was skipped).
KEYS: tuple[str, ...] = (
    "kafka_pipeline_rate", "kafka_raw_rate", "embedded_pipeline_rate", "classifier_rate",
    "kafka_p50_ms", "kafka_p99_ms", "embedded_p99_ms", "jieba_rate", "model_load_s",
    "worker_rss_mb", "burst_peak_lag", "burst_catch_up_s", "burst_rss_before_mb",
    "burst_rss_after_mb", "burst_lost",
)
#: CPU milliseconds per order at full Kafka speed: the workers' processes, their classifier
#: processes, the rest of the machine (broker, PostgreSQL, the bench's producer)
CPU_KEYS = ("kafka_cpu_worker_ms", "kafka_cpu_helper_ms", "kafka_cpu_other_ms")
KAFKA_GOAL = 0.50  # of the lower ceiling (transport or classification)
EMBEDDED_GOAL = 0.60  # of the classifier alone
P99_GOAL_MS = 500.0


def _num(v: Any) -> float | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


def ratios(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    clf, emb = _num(r.get("classifier_rate")), _num(r.get("embedded_pipeline_rate"))
    if clf and emb is not None:
        out["embedded_vs_classifier"] = emb / clf
        out["embedded_goal_met"] = emb / clf >= EMBEDDED_GOAL
    inline = _num(r.get("embedded_inline_rate"))
    if clf and inline is not None:
        out["embedded_inline_vs_classifier"] = inline / clf
    raw, kp = _num(r.get("kafka_raw_rate")), _num(r.get("kafka_pipeline_rate"))
    if clf and raw and kp is not None:
        ceiling = min(raw, clf)
        out["kafka_ceiling_rate"] = ceiling
        out["kafka_vs_ceiling"] = kp / ceiling
        out["kafka_goal_met"] = kp / ceiling >= KAFKA_GOAL
    per_order = [_num(r.get(k)) for k in CPU_KEYS]
    cores = _num(r.get("kafka_cores"))
    cpu_ms = sum(cast(list[float], per_order)) if None not in per_order else 0.0
    if cores and cpu_ms:
        # every core busy with this pipeline at the CPU per order measured at full speed
        bound = cores * 1000 / cpu_ms
        out["kafka_cpu_bound_rate"] = bound
        if "kafka_ceiling_rate" in out:
            out["kafka_cpu_bound_vs_ceiling"] = bound / out["kafka_ceiling_rate"]
    p99 = _num(r.get("kafka_p99_ms"))
    if p99 is not None:
        out["kafka_p99_goal_met"] = p99 < P99_GOAL_MS
    e99 = _num(r.get("embedded_p99_ms"))
    if e99 is not None:
        out["embedded_p99_goal_met"] = e99 < P99_GOAL_MS
    if "burst_lost" in r:
        out["burst_ok"] = r["burst_lost"] == 0 and r.get("burst_catch_up_s") is not None
    return out


def _f(v: Any, fmt: str = ".1f", unit: str = "") -> str:
    n = _num(v)
    return "—" if n is None else f"{n:{fmt}}{unit}"


def _helper(r: dict[str, Any]) -> str:
    flag = r.get("embedded_classify_process")
    return "" if flag is None else ("，预先分类进程" if flag else "，无预先分类进程")


def render_local(r: dict[str, Any]) -> str:
    return "\n".join([
        "== 本机阶段 ==",
        f"模型 {r.get('model_version')} 加载 {_f(r.get('model_load_s'), '.2f', ' 秒')}",
        f"jieba 分词（分类器上限的上限）：{_f(r.get('jieba_rate'))} 单/秒",
        f"分类器单独（同批文本）：{_f(r.get('classifier_rate'))} 单/秒",
        f"内嵌流水线（SQLite，hotline run 默认{_helper(r)}）："
        f"{_f(r.get('embedded_pipeline_rate'))} 单/秒",
        f"内嵌流水线，本进程内分类（--no-classify-ahead）：{_f(r.get('embedded_inline_rate'))} 单/秒",
        (
            f"内嵌半速 {_f(r.get('embedded_paced_rate'))} 单/秒时延迟：p50 "
            f"{_f(r.get('embedded_p50_ms'), '.0f', ' ms')}，"
            f"p99 {_f(r.get('embedded_p99_ms'), '.0f', ' ms')}"
        ),
    ])


def render_kafka(r: dict[str, Any]) -> str:
    helpers = r.get("kafka_classify_process", True)
    lines = [
        "== Kafka 阶段 ==",
        f"kafka-python 原始收发（传输上限）：{_f(r.get('kafka_raw_rate'))} 单/秒",
        (
            f"Kafka 流水线（{r.get('kafka_workers', 1)} 个 faust worker，"
            f"{'各带分类子进程' if helpers else '进程内分类'}"
            f" + PostgreSQL）："
            f"{_f(r.get('kafka_pipeline_rate'))} 单/秒"
        ),
        (
            f"半速 {_f(r.get('kafka_paced_rate'))} 单/秒时，从写入到派单落库：p50 "
            f"{_f(r.get('kafka_p50_ms'), '.0f', ' ms')}，p99 {_f(r.get('kafka_p99_ms'), '.0f', ' ms')}"
            f"（{r.get('kafka_latency_orders', 0)} 单自动派出）"
        ),
        (
            f"全速时每单 CPU：worker 进程 {_f(r.get('kafka_cpu_worker_ms'), '.2f', ' ms')}"
            + (f"，分类子进程 {_f(r.get('kafka_cpu_helper_ms'), '.2f', ' ms')}，" if helpers
               else "（含分类），")
            + f"其余（broker、PostgreSQL、压测发送等）{_f(r.get('kafka_cpu_other_ms'), '.2f', ' ms')}；"
            f"机器平均 {_f(r.get('kafka_busy_cores'), '.2f')} / {r.get('kafka_cores', '—')} 核忙"
        ),
        f"worker 常驻内存（最大的一个）：{_f(r.get('worker_rss_mb'), '.0f', ' MB')}；"
        f"{'连同分类子进程' if helpers else ''}按比例计（PSS）："
        f"{_f(r.get('worker_pss_mb'), '.0f', ' MB')}",
    ]
    if "burst_orders" in r:
        catch = r.get("burst_catch_up_s")
        caught = f"{catch:.1f} 秒追平" if catch is not None else "未在时限内追平"
        lines += [
            (
                f"突发：目标 {_f(r.get('burst_rate'), '.0f')} 单/秒 × "
                f"{_f(r.get('burst_seconds'), 'g')} 秒（实发 "
                f"{_f(r.get('burst_achieved_rate'), '.0f')} 单/秒，共 {r['burst_orders']} 单）"
            ),
            (
                f"  峰值积压 {r.get('burst_peak_lag', '—')} 条；发送结束后 {caught}；"
                f"之后积压 {r.get('burst_lag_after', '—')}"
            ),
            (
                f"  内存 {_f(r.get('burst_rss_before_mb'), '.0f')} → 峰值 "
                f"{_f(r.get('burst_rss_peak_mb'), '.0f')} → "
                f"{_f(r.get('burst_rss_after_mb'), '.0f')} MB；丢失 {r.get('burst_lost')} 单；"
                f"突发期 p99 {_f(r.get('burst_p99_ms'), '.0f', ' ms')}"
            ),
        ]
    return "\n".join(lines)


def _mark(ok: Any) -> str:
    return "—" if ok is None else ("达标" if ok else "未达标")


def render_goals(r: dict[str, Any]) -> str:
    lines = ["== 目标（同一次运行的上限为基准） =="]
    if "embedded_vs_classifier" in r:
        lines.append(f"内嵌流水线 / 分类器单独 = {r['embedded_vs_classifier']:.0%}"
                     f"（目标 ≥ {EMBEDDED_GOAL:.0%}）：{_mark(r.get('embedded_goal_met'))}")
    if "embedded_inline_vs_classifier" in r:
        lines.append(f"（本进程内分类：{r['embedded_inline_vs_classifier']:.0%}）")
    if "kafka_vs_ceiling" in r:
        lines.append(f"Kafka 流水线 / 较低上限 {r['kafka_ceiling_rate']:.1f} = "
                     f"{r['kafka_vs_ceiling']:.0%}（目标 ≥ {KAFKA_GOAL:.0%}）："
                     f"{_mark(r.get('kafka_goal_met'))}")
    if "kafka_cpu_bound_rate" in r:
        share = r.get("kafka_cpu_bound_vs_ceiling")
        lines.append(
            f"（按全速时的每单 CPU，{r.get('kafka_cores')} 核全部用满也只能到 "
            f"{r['kafka_cpu_bound_rate']:.0f} 单/秒"
            + (f" = 较低上限的 {share:.0%}" if share is not None else "") + "）"
        )
    if "kafka_p99_goal_met" in r:
        lines.append(f"半速 p99 < {P99_GOAL_MS:.0f} ms：{_mark(r['kafka_p99_goal_met'])}")
    if "burst_ok" in r:
        lines.append(f"突发后无丢失且追平：{_mark(r['burst_ok'])}")
    return "\n".join(lines)


def jsonable(r: dict[str, Any]) -> dict[str, Any]:
    """Every key in `KEYS` present; floats rounded; NaN becomes null."""
    out: dict[str, Any] = dict.fromkeys(KEYS)
    for k, v in r.items():
        if isinstance(v, float):
            out[k] = None if math.isnan(v) else round(v, 3)
        else:
            out[k] = v
    return out
