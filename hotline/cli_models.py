"""`hotline retrain` and `hotline models list|promote|rollback`: the learning loop."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hotline.settings import PROJECT_ROOT, Settings


def _registry(args: argparse.Namespace) -> Any:
    from classifier.registry import ModelRegistry

    settings = Settings()
    root = Path(args.registry) if args.registry else settings.models_dir or PROJECT_ROOT / "var" / "models"
    return ModelRegistry(root)


def _corrections(settings: Settings) -> list[Any]:
    """Dispatchers' manual dispatches and 退单 corrections recorded in the store."""
    from classifier.datasets import LabeledText
    from models.store import Store

    store = Store.from_url(settings.database_url)
    latest: dict[str, Any] = {}
    for label in store.training_labels():  # oldest first: the latest label for an order wins
        latest[label.order_id] = LabeledText(order_id=label.order_id, text=label.text, unit=label.unit)
    return list(latest.values())


def cmd_retrain(args: argparse.Namespace) -> int:
    from classifier.datasets import load_dataset
    from classifier.registry import retrain
    from hotline.bootstrap import current_model_path

    settings = Settings()
    registry = _registry(args)
    history = [r for path in args.data for r in load_dataset(path, args.format)]
    corrections = [] if args.no_corrections else _corrections(settings)
    result = retrain(
        registry, history, corrections, current_path=current_model_path(settings, registry),
        name=args.name, holdout_fraction=args.holdout, seed=args.seed,
    )
    if args.json:
        print(json.dumps(result.__dict__, ensure_ascii=False, indent=2, default=str))
        return 0
    print(f"历史工单 {result.n_history} 单，人工纠正 {result.n_corrections} 单，留出评估 {result.n_holdout} 单")
    c = result.candidate_scores
    print(f"候选模型 {result.candidate}：准确率 {c['accuracy']:.3f}，宏平均F1 {c['macro_f1']:.3f}")
    if result.current_scores:
        s = result.current_scores
        print(f"在用模型 {result.current}：准确率 {s['accuracy']:.3f}，宏平均F1 {s['macro_f1']:.3f}")
    print(("已启用候选模型。" if result.promoted else "未启用候选模型，继续使用在用模型。") + result.reason)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if args.action == "list":
        entries = registry.entries()
        if not entries:
            print(f"版本库 {registry.root} 中还没有模型（在用：内置模型）")
        for e in entries:
            acc = f"{e.accuracy:.3f}" if e.accuracy is not None else "—"
            mark = "＊在用" if e.current else "  "
            print(f"{mark} {e.version}  训练 {e.n_train} 单  验证准确率 {acc}  {e.trained_at}")
        return 0
    if args.action == "promote":
        if not args.version:
            raise SystemExit("请给出要启用的模型版本")
        registry.promote(args.version, reason=args.reason or "人工启用")
        print(f"已启用模型 {args.version}")
        return 0
    version = registry.rollback()
    print(f"已回滚到模型 {version}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("retrain", help="用历史工单与人工纠正训练候选模型，不差于在用模型才启用")
    p.add_argument("--data", required=True, action="append", help="历史工单文件（可重复）")
    p.add_argument("--format", default="haikou12345", choices=["haikou12345", "csv", "jsonl"])
    p.add_argument("--registry", help="模型版本库目录（默认 var/models 或 HOTLINE_MODELS_DIR）")
    p.add_argument("--name", default="model", help="模型版本号前缀")
    p.add_argument("--holdout", type=float, default=0.2, help="留出评估比例")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-corrections", action="store_true", help="不使用库中的人工纠正")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("models", help="模型版本：list 列出、promote 启用、rollback 回滚")
    p.add_argument("action", choices=["list", "promote", "rollback"])
    p.add_argument("version", nargs="?")
    p.add_argument("--reason", help="启用原因")
    p.add_argument("--registry", help="模型版本库目录")
    p.set_defaults(func=cmd_models)
