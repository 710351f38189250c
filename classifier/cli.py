"""Classifier commands for the ``hotline`` console script: train, evaluate, predict, build-model.

`register(subparsers)` adds them; each sets ``func`` to a handler returning an exit code.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from classifier.datasets import FORMATS, DatasetError, load_dataset
from classifier.model import ModelLoadError, load_model, train_model

PREDICT_COLUMNS: tuple[str, ...] = ("工单编号", "unit", "confidence", "manual")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("train", help="用标注工单训练承办单位模型")
    p.add_argument("--data", required=True, help="训练数据文件")
    p.add_argument("--format", default="haikou12345", choices=FORMATS, help="数据格式")
    p.add_argument("--out", required=True, help="模型输出目录")
    p.add_argument("--name", default="model", help="模型版本号前缀（默认 model）")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("evaluate", help="在标注工单上评估模型")
    p.add_argument("--model", required=True, help="模型目录")
    p.add_argument("--data", required=True, help="评估数据文件")
    p.add_argument("--format", default="haikou12345", choices=FORMATS, help="数据格式")
    p.add_argument("--json", action="store_true", help="输出 JSON 而不是表格")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser("predict", help="为工单预测承办单位并写出 CSV")
    p.add_argument("--model", required=True, help="模型目录")
    p.add_argument("--data", required=True, help="工单数据文件")
    p.add_argument("--format", default="haikou12345", choices=FORMATS, help="数据格式")
    p.add_argument("--out", required=True, help="输出 CSV 文件")
    p.set_defaults(func=cmd_predict)

    p = subparsers.add_parser("build-model", help="从项目语料训练内置金山模型（已是最新则跳过）")
    p.add_argument("--force", action="store_true", help="即使已是最新也重新训练")
    p.set_defaults(func=cmd_build_model)


def _fail(message: str) -> int:
    print(f"错误：{message}", file=sys.stderr)
    return 2


def cmd_train(args: argparse.Namespace) -> int:
    from classifier.model import TrainOptions

    try:
        records = load_dataset(args.data, args.format)
    except DatasetError as exc:
        return _fail(str(exc))
    if len({r.unit for r in records}) < 2:
        return _fail(f"数据文件 {args.data} 中可用于训练的承办单位少于两个")
    model = train_model(records, out_dir=args.out, options=TrainOptions(name=args.name))
    val = model.metadata["validation"]
    print(
        f"已训练模型 {model.version}：{len(records)} 单，{len(model.labels)} 个承办单位；"
        f"交叉验证准确率 {val['accuracy']:.3f}，95% 精确率下覆盖 {val['coverage_at_0.95']:.1%}；"
        f"已保存到 {args.out}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from classifier.evaluate import evaluate, format_report

    try:
        model = load_model(args.model)
        records = load_dataset(args.data, args.format)
    except (ModelLoadError, DatasetError) as exc:
        return _fail(str(exc))
    if not records:
        return _fail(f"数据文件 {args.data} 中没有带承办单位的工单")
    report = evaluate(model, records)
    report["model_version"] = model.version
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(format_report(report, f"承办单位模型评估（{model.version}）"))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    try:
        model = load_model(args.model)
        records = load_dataset(args.data, args.format, drop_catchall=False)
    except (ModelLoadError, DatasetError) as exc:
        return _fail(str(exc))
    predictions = model.predict_records(records)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(PREDICT_COLUMNS)
        for rec, pred in zip(records, predictions, strict=True):
            manual = not model.auto_ok(pred)
            writer.writerow(
                [rec.order_id, pred.top.unit, f"{pred.top.probability:.4f}", str(manual).lower()]
            )
    n_manual = sum(1 for p in predictions if not model.auto_ok(p))
    print(f"已预测 {len(records)} 单（其中 {n_manual} 单转人工），结果写入 {out}")
    return 0


def cmd_build_model(args: argparse.Namespace) -> int:
    from classifier.bundled import ensure_bundled_model
    from classifier.model import read_metadata

    try:
        path = ensure_bundled_model(force=args.force)
    except (FileNotFoundError, DatasetError) as exc:
        return _fail(str(exc))
    meta = read_metadata(path)
    print(f"内置模型 {meta['model_version']}（{len(meta['labels'])} 个条线单位）：{path}")
    return 0
