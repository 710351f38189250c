"""Feature extraction (特征): the model's input columns and the fitted transformers over them.

Model input is a 2-D object array with one row per order and three columns:
``text`` (工单标题 + 诉求内容), ``area`` (区域/街镇 known at intake, space separated) and
``address`` (诉求地址). Every transform lives in one `ColumnTransformer` so that nothing is
fitted outside the pipeline; the tokenizers are named importable functions (picklable).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer

from classifier.datasets import LabeledText
from classifier.tokenize import tokenize
from models.records import OrderIn

TEXT, AREA, ADDRESS, INDUSTRY = 0, 1, 2, 3
#: The hotline operator's 行业分类 levels, assigned at intake (so known when routing): an input.
INDUSTRY_KEYS: tuple[str, ...] = ("行业分类1级", "行业分类2级", "行业分类3级", "行业分类4级")
#: Length of the 行业分类 block's rows (the word and character blocks have length 1). On
#: repeated 5-fold cross-validation over the Haikou train + validation orders (ops.cv_quality,
#: shuffles 0-3), 0.7 against 1.0: accuracy 0.706 → 0.716, coverage at 95% precision 0.509 →
#: 0.507 (0.5: higher accuracy, coverage 0.013 lower; 0.6 and 0.8 no better on two shuffles).
INDUSTRY_WEIGHT = 0.7
WORD_BLOCK = "word"  # name of the word TF-IDF block, used for explanations (解释词)
CATALOGUE_BLOCK = "catalogue"  # per-unit name mentions (单位名称提及)


_PRESENT = "\u2400"  # a constant feature so that a block never has an empty vocabulary


def area_tokens(area: str) -> list[str]:
    """Area facts are already whole names (龙华区, 金贸街道办事处, 朱泾镇): split on spaces."""
    return [_PRESENT, *area.split()]


def address_grams(address: str) -> list[str]:
    """Character 2- and 3-grams of the address (诉求地址)."""
    s = "".join(address.split())
    grams = [_PRESENT]
    for n in (2, 3):
        grams.extend(s[i : i + n] for i in range(len(s) - n + 1))
    return grams


#: The caller named at the start of the content when it is not a citizen: "交警来电反馈：工单号…",
#: "龙华区环保局来电反馈", "港务公安局来电咨询" (a unit calling about an order it handles).
_CALLER_RE = re.compile(
    r"^\s*(?!关于)(?P<who>[^\s:：,，。；;（(]{2,24}?)(?:来电|来函|来)"
    r"(?:咨询|反馈|撤销|反映|补充|投诉|求助|查询|催办)"
)
_CITIZEN_CALLERS = frozenset({"市民", "群众", "来电人", "企业", "网民"})


def caller_name(text: str) -> str | None:
    """The unit or person named as the caller at the start of the content (the line after
    the title when there is one), None for citizens (市民, 群众 …) and for no caller."""
    content = text.split("\n", 1)[1] if "\n" in text else text
    m = _CALLER_RE.match(content)
    if m is None or m.group("who") in _CITIZEN_CALLERS:
        return None
    return m.group("who")


def caller_tokens(text: str) -> list[str]:
    """The caller of an order (来电方) as tokens: its whole name and its character bigrams.

    Orders that a unit phones in about an earlier order ("交警来电反馈", "龙华区环保局来电反馈")
    are mostly that unit's; the caller is read from the first line of the content (the line
    after the title when there is one). Citizens (市民, 群众 …) give no caller token.
    """
    who = caller_name(text)
    if who is None:
        return [_PRESENT]
    return [_PRESENT, f"来电方:{who}", *(f"来电方~{who[i : i + 2]}" for i in range(len(who) - 1))]


def industry_string(extra: Mapping[str, Any] | None) -> str:
    """The 行业分类 levels of an order's extra fields, "|"-joined ("" when it has none)."""
    if not extra:
        return ""
    levels = [str(extra.get(k) or "").strip().replace("|", " ") for k in INDUSTRY_KEYS]
    return "|".join(levels) if any(levels) else ""


def industry_tokens(industry: str) -> list[str]:
    """Each 行业分类 level, and each level with its parents (1级/2级 …), as one token.
    "其他" (other) at a level says nothing beyond its parent and is left out."""
    tokens = [_PRESENT]
    path = ""
    for depth, level in enumerate(industry.split("|") if industry else [], start=1):
        if not level:
            break
        path = f"{path}/{level}"
        if level != "其他":
            tokens.append(f"{depth}:{level}")
            tokens.append(path)
    return tokens


def inputs_from_records(records: Sequence[LabeledText]) -> np.ndarray:
    rows = [
        (r.text, r.area or "", r.address or "", industry_string(r.extra)) for r in records
    ]
    return _as_array(rows)


def inputs_from_orders(orders: Sequence[OrderIn]) -> np.ndarray:
    rows = [
        (o.full_text, o.area or "", o.address or "", industry_string(o.extra)) for o in orders
    ]
    return _as_array(rows)


def inputs_from_texts(texts: Sequence[str]) -> np.ndarray:
    return _as_array([(t, "", "", "") for t in texts])


def _as_array(rows: list[tuple[str, str, str, str]]) -> np.ndarray:
    arr = np.empty((len(rows), 4), dtype=object)
    for i, row in enumerate(rows):
        arr[i, TEXT], arr[i, AREA], arr[i, ADDRESS], arr[i, INDUSTRY] = row
    return arr


def text_only_features(
    *, word_ngrams: tuple[int, int] = (1, 1), char_ngrams: tuple[int, int] = (2, 4)
) -> ColumnTransformer:
    """jieba words plus character n-grams of the text, TF-IDF (the baseline's features)."""
    return ColumnTransformer(
        [
            (WORD_BLOCK, _word_vectorizer(word_ngrams), TEXT),
            ("char", _char_vectorizer(char_ngrams), TEXT),
        ],
        sparse_threshold=1.0,
    )


def full_features(
    *, word_ngrams: tuple[int, int] = (1, 2), char_ngrams: tuple[int, int] = (1, 4)
) -> ColumnTransformer:
    """Text words and characters plus the intake area facts and the address characters."""
    return ColumnTransformer(
        [
            (WORD_BLOCK, _word_vectorizer(word_ngrams), TEXT),
            ("char", _char_vectorizer(char_ngrams), TEXT),
            (
                "area",
                TfidfVectorizer(
                    analyzer=area_tokens, lowercase=False, sublinear_tf=True, dtype=np.float32
                ),
                AREA,
            ),
            (
                "address",
                TfidfVectorizer(
                    analyzer=address_grams, lowercase=False, sublinear_tf=True, dtype=np.float32
                ),
                ADDRESS,
            ),
        ],
        sparse_threshold=1.0,
    )


def catalogue_features() -> ColumnTransformer:
    """`full_features` plus, last, the per-unit name-mention block (`CatalogueMatcher`)."""
    from classifier.catalogue import CatalogueMatcher

    base = full_features()
    blocks = [*base.transformers, (CATALOGUE_BLOCK, CatalogueMatcher(), [TEXT, AREA, ADDRESS])]
    return ColumnTransformer(blocks, sparse_threshold=1.0)


def text_catalogue_features(
    *,
    char_ngrams: tuple[int, int] = (1, 4),
    industry: bool = True,
    caller: bool = True,
    area: bool = False,
    industry_weight: float = INDUSTRY_WEIGHT,
    abbreviations: bool = True,
    callers: bool = True,
) -> ColumnTransformer:
    """The product's features: jieba words, character n-grams (numpy-vectorised,
    `classifier.chargrams`), the operator's 行业分类 (``industry``, rows of length
    ``industry_weight``), the caller named in the content (``caller``, `caller_tokens`), the
    intake area facts (``area``) and, last, the per-unit name-mention block (with official
    short forms and callers' names when ``abbreviations`` / ``callers``, `CatalogueMatcher`)."""
    from classifier.catalogue import CatalogueMatcher
    from classifier.chargrams import CharNgrams

    blocks: list[tuple[str, Any, Any]] = [
        (WORD_BLOCK, _word_vectorizer((1, 1)), TEXT),
        ("char", CharNgrams(char_ngrams, min_df=2, max_features=300_000), TEXT),
    ]
    weights: dict[str, float] = {}
    if industry:
        blocks.append(("industry", _token_vectorizer(industry_tokens), INDUSTRY))
        if industry_weight != 1.0:
            weights["industry"] = industry_weight
    if caller:
        blocks.append(("caller", _token_vectorizer(caller_tokens), TEXT))
    if area:
        blocks.append(("area", _token_vectorizer(area_tokens), AREA))
    matcher = CatalogueMatcher(abbreviations=abbreviations, callers=callers)
    blocks.append((CATALOGUE_BLOCK, matcher, [TEXT, AREA, ADDRESS]))
    return ColumnTransformer(blocks, sparse_threshold=1.0, transformer_weights=weights or None)


def _token_vectorizer(analyzer: Callable[[str], list[str]]) -> TfidfVectorizer:
    return TfidfVectorizer(analyzer=analyzer, lowercase=False, sublinear_tf=True, dtype=np.float32)


def catalogue_columns(features: ColumnTransformer) -> tuple[int, int] | None:
    """Column range of the name-mention block in the transformed matrix, if any."""
    sl = features.output_indices_.get(CATALOGUE_BLOCK)
    if sl is None or sl.stop <= sl.start:
        return None
    return (sl.start, sl.stop)


def catalogue_block(
    features: ColumnTransformer,
) -> tuple[tuple[int, int], tuple[str, ...]] | None:
    """(column range, unit labels) of the name-mention block, if the features have one."""
    cols = catalogue_columns(features)
    if cols is None:
        return None
    labels = features.named_transformers_[CATALOGUE_BLOCK].classes_
    return cols, tuple(str(u) for u in labels)


def _word_vectorizer(ngrams: tuple[int, int]) -> TfidfVectorizer:
    return TfidfVectorizer(
        tokenizer=tokenize,
        token_pattern=None,
        lowercase=False,
        ngram_range=ngrams,
        sublinear_tf=True,
        min_df=1,
        dtype=np.float32,
    )


def _char_vectorizer(ngrams: tuple[int, int]) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer="char",
        ngram_range=ngrams,
        sublinear_tf=True,
        min_df=2,
        max_features=300_000,
        dtype=np.float32,
    )


def word_block(features: ColumnTransformer) -> tuple[slice, np.ndarray]:
    """Column slice of the word block in the transformed matrix and its vocabulary."""
    sl = features.output_indices_[WORD_BLOCK]
    vec = features.named_transformers_[WORD_BLOCK]
    return sl, vec.get_feature_names_out()
