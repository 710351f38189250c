"""集中诉求 (concentrated complaints): near-duplicate groups and topic clusters.

- Near-duplicates (近似重复): character 2–3-gram TF-IDF, cosine similarity at or above a
  threshold, groups as connected components of that similarity graph.
- Topics (主题聚类): jieba words, TF-IDF, KMeans on the L2-normalised vectors (spherical
  k-means) with a fixed seed; each cluster is labelled by its heaviest centroid terms.
Each cluster names its size, dominant unit, areas, time span and representative orders (the
ones nearest its centre), with texts masked. Dispatcher hints are removed before comparing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import TfidfVectorizer

from bulletin.source import NO_AREA, OrderView
from classifier.datasets import strip_dispatch_hints
from classifier.tokenize import tokenize
from hotline.masking import mask_pii

NEAR_DUPLICATE = "近似重复"
TOPIC = "主题聚类"

# Openings the hotline writes on every order ("市民来电反映:") say nothing about the matter.
_BOILERPLATE_RE = re.compile(
    r"(?:市民|群众|企业)?(?:来电|公众号|微信|网上|来信|电话)?(?:反映|咨询|投诉|举报|建议|求助|反馈)\s*[:：]"
)
STOP_WORDS: frozenset[str] = frozenset(
    ["市民", "来电", "反映", "咨询", "投诉", "问题", "关于", "请", "核实", "处理", "谢谢", "希望", "相关", "部门", "职能", "要求", "情况", "目前", "现在", "已经", "没有", "一直", "进行", "存在", "表示", "工单", "此单", "办结", "我们", "他们", "自己", "一个", "这个", "可以", "是否", "如何", "什么", "为什么", "的", "了", "在", "是", "有", "和", "与", "及", "也", "都", "就", "被", "把", "对", "给", "到", "从", "向", "不", "没", "很", "还", "又", "等", "该", "其", "此", "该", "导致", "造成", "影响", "严重", "联系", "电话", "号码", "市", "区"]
)


@dataclass(frozen=True)
class Representative:
    order_id: str
    received_at: str
    unit: str
    snippet: str  # masked title or text, shortened


@dataclass(frozen=True)
class Cluster:
    kind: str  # 近似重复 / 主题聚类
    label: str
    size: int
    terms: tuple[str, ...]
    dominant_unit: str
    unit_share: float
    areas: tuple[tuple[str, int], ...]
    first: str
    last: str
    representatives: tuple[Representative, ...]
    order_ids: tuple[str, ...]
    cohesion: float  # mean cosine of members to the cluster centre

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind, "label": self.label, "size": self.size, "terms": list(self.terms),
            "dominant_unit": self.dominant_unit, "unit_share": round(self.unit_share, 3),
            "areas": [list(a) for a in self.areas], "first": self.first, "last": self.last,
            "representatives": [r.__dict__ for r in self.representatives],
            "cohesion": round(self.cohesion, 3),
        }


def analysis_text(o: OrderView) -> str:
    """The citizen's matter: dispatcher hints and boilerplate openings removed."""
    return _BOILERPLATE_RE.sub(" ", strip_dispatch_hints(o.full_text))


def topic_tokens(text: str) -> list[str]:
    """jieba words without stop words and single characters (a named function: picklable)."""
    return [t for t in tokenize(text) if len(t) > 1 and t not in STOP_WORDS and not t.isdigit()]


def _snippet(o: OrderView, limit: int = 60) -> str:
    text = o.title.strip() or o.text.strip()
    text = mask_pii(re.sub(r"\s+", " ", text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(
    kind: str, members: list[int], orders: Sequence[OrderView], sims: np.ndarray,
    terms: tuple[str, ...], label: str, n_rep: int = 3,
) -> Cluster:
    chosen = [orders[i] for i in members]
    units = Counter(o.unit for o in chosen)
    unit, n_unit = units.most_common(1)[0]
    areas = Counter(o.area for o in chosen if o.area != NO_AREA).most_common(3)
    nearest = [members[i] for i in np.argsort(-sims, kind="stable")[:n_rep]]
    times = sorted(o.received_at for o in chosen)
    return Cluster(
        kind=kind, label=label, size=len(members), terms=terms, dominant_unit=unit,
        unit_share=n_unit / len(members), areas=tuple(areas),
        first=times[0].isoformat(sep=" "), last=times[-1].isoformat(sep=" "),
        representatives=tuple(
            Representative(orders[i].order_id, orders[i].received_at.isoformat(sep=" "),
                           orders[i].unit, _snippet(orders[i]))
            for i in nearest
        ),
        order_ids=tuple(orders[i].order_id for i in members),
        cohesion=float(np.mean(sims)) if len(sims) else 0.0,
    )


def near_duplicates(
    orders: Sequence[OrderView], *, threshold: float = 0.6, min_size: int = 3
) -> list[Cluster]:
    """Groups of at least ``min_size`` orders saying nearly the same thing, largest first."""
    if len(orders) < min_size:
        return []
    texts = [analysis_text(o) for o in orders]
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3), min_df=2, sublinear_tf=True)
    try:
        x = vec.fit_transform(texts)
    except ValueError:  # empty vocabulary: nothing repeats
        return []
    sim = (x @ x.T).tocsr()
    sim.data[sim.data < threshold] = 0
    sim.eliminate_zeros()
    _, labels = connected_components(csr_matrix(sim), directed=False)
    clusters = []
    for label, size in Counter(labels.tolist()).most_common():
        if size < min_size:
            break
        members = [i for i in range(len(orders)) if labels[i] == label]
        centre = np.asarray(x[members].mean(axis=0)).ravel()
        sims = np.asarray(x[members] @ centre).ravel() / (np.linalg.norm(centre) or 1.0)
        head = orders[members[int(np.argmax(sims))]]
        words = Counter(w for i in members for w in set(topic_tokens(texts[i])))
        top = tuple(w for w, _ in words.most_common(6))
        clusters.append(_describe(NEAR_DUPLICATE, members, orders, sims, top, _snippet(head, 40)))
    return clusters


#: Topic clusters whose members sit this loosely around the centre are k-means' catch-all
#: remainder, not a topic; they are left out.
MIN_TOPIC_COHESION = 0.2
_TOPIC_CHARS = 200


def topic_clusters(
    orders: Sequence[OrderView], *, k: int | None = None, min_size: int = 5, seed: int = 0
) -> list[Cluster]:
    """Topic clusters, largest first; ``k`` defaults to about one per 60 orders (4–20).
    Texts are read up to their first 200 characters (the matter is stated first)."""
    if len(orders) < 2 * min_size:
        return []
    vec = TfidfVectorizer(tokenizer=topic_tokens, lowercase=False, token_pattern=None,
                          min_df=2, max_df=0.3, sublinear_tf=True)
    try:
        x = vec.fit_transform([analysis_text(o)[:_TOPIC_CHARS] for o in orders])
    except ValueError:
        return []
    k = k or max(4, min(20, len(orders) // 60))
    k = min(k, x.shape[0] // min_size)
    model = KMeans(n_clusters=k, n_init=2, random_state=seed).fit(x)
    names = np.array(vec.get_feature_names_out())
    clusters = []
    for c in range(k):
        members = [int(i) for i in np.flatnonzero(model.labels_ == c)]
        if len(members) < min_size:
            continue
        centre = model.cluster_centers_[c]
        sims = np.asarray(x[members] @ centre).ravel() / (np.linalg.norm(centre) or 1.0)
        if float(np.mean(sims)) < MIN_TOPIC_COHESION:
            continue
        terms = tuple(names[np.argsort(-centre)[:6]].tolist())
        clusters.append(_describe(TOPIC, members, orders, sims, terms, "、".join(terms[:4])))
    return sorted(clusters, key=lambda cl: (-cl.size, cl.label))
