"""Character n-gram TF-IDF (字符 n 元特征), vectorised with numpy.

scikit-learn's ``TfidfVectorizer(analyzer="char")`` builds every n-gram as a Python string and
looks it up in a dict, one at a time: for Chinese work orders of ~130 characters that is ~500
lookups per order and most of the classification time. Here a batch of texts becomes one
array of character codes; an n-gram is the integer ``c0·B^(n-1) + … + c(n-1)`` over an
alphabet of the characters seen in training (codes 1..A, B = A + 1, 0 = unknown or the
separator between texts), so n-grams of different lengths never collide and an n-gram with an
unknown character is never in the vocabulary. The vocabulary is a sorted integer array and
lookup is one `np.searchsorted` for the whole batch.

Weights follow ``TfidfVectorizer(sublinear_tf=True, smooth_idf=True, norm="l2")``:
``(1 + ln tf) · (ln((1 + n) / (1 + df)) + 1)``, each row scaled to unit length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2

_WHITESPACE = re.compile(r"\s+")
MAX_ALPHABET = 50_000  # B^4 must fit in int64: 50,001^4 ≈ 6.3e18 < 9.2e18


def prepare(text: str) -> str:
    """Lower-case, whitespace runs as one space (what the n-grams are taken over)."""
    return _WHITESPACE.sub(" ", text.lower())


def codepoints(texts: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """All ``texts`` as one array of code points, separated by a 0, and each text's start."""
    prepared = [prepare(t) for t in texts]
    joined = "\x00".join(prepared) + "\x00"
    cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    lengths = np.fromiter((len(t) + 1 for t in prepared), dtype=np.int64, count=len(prepared))
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(prepared) else lengths
    return cps, starts


class CharNgrams(TransformerMixin, BaseEstimator):
    """Sublinear TF-IDF of character n-grams, ``ngram_range`` inclusive, ``min_df`` texts."""

    def __init__(
        self, ngram_range: tuple[int, int] = (1, 4), min_df: int = 2, max_features: int = 300_000
    ) -> None:
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_features = max_features

    def fit(self, X: Any, y: Any = None) -> CharNgrams:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> sp.csr_matrix:
        texts = _texts(X)
        cps, starts = codepoints(texts)
        chars, counts = np.unique(cps[cps > 0], return_counts=True)
        if chars.size > MAX_ALPHABET:
            chars = np.sort(chars[np.argsort(-counts, kind="stable")[:MAX_ALPHABET]])
        self.alphabet_ = chars
        docs, keys = self._grams(cps, starts)
        pairs = np.unique(np.stack([keys, docs]), axis=1)  # one (gram, text) pair per text
        vocab, df = np.unique(pairs[0], return_counts=True)
        tf_total = np.unique(keys, return_counts=True)[1]  # same order as vocab
        keep = df >= self.min_df
        if keep.sum() > self.max_features:
            top = np.argsort(-np.where(keep, tf_total, -1), kind="stable")[: self.max_features]
            keep = np.zeros_like(keep)
            keep[top] = True
        self.vocabulary_ = vocab[keep]
        self.table_ = IntTable(self.vocabulary_)
        n = len(texts)
        self.idf_ = (np.log((1.0 + n) / (1.0 + df[keep])) + 1.0).astype(np.float32)
        return self._weigh(docs, keys, n)

    def transform(self, X: Any) -> sp.csr_matrix:
        texts = _texts(X)
        cps, starts = codepoints(texts)
        docs, keys = self._grams(cps, starts)
        return self._weigh(docs, keys, len(texts))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([self.decode(k) for k in self.vocabulary_], dtype=object)

    def decode(self, key: int) -> str:
        """The n-gram string of a vocabulary key."""
        base = self.alphabet_.size + 1
        out = []
        k = int(key)
        while k:
            k, c = divmod(k, base)
            out.append(chr(int(self.alphabet_[c - 1])))
        return "".join(reversed(out))

    # internals -----------------------------------------------------------------------------
    def _grams(self, cps: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(text index, n-gram key) of every n-gram made only of known characters."""
        pos = np.searchsorted(self.alphabet_, cps)
        pos = np.minimum(pos, max(self.alphabet_.size - 1, 0))
        known = self.alphabet_.size > 0
        codes = np.where(known & (self.alphabet_[pos] == cps), pos + 1, 0) if known else cps * 0
        lengths = np.diff(np.append(starts, cps.size))
        doc_of = np.repeat(np.arange(starts.size, dtype=np.int64), lengths)
        base = np.int64(self.alphabet_.size + 1)
        lo, hi = self.ngram_range
        all_docs, all_keys = [], []
        key = np.zeros(cps.size, dtype=np.int64)
        valid = np.ones(cps.size, dtype=bool)
        for n in range(1, hi + 1):
            m = cps.size - n + 1
            if m <= 0:
                break
            key = key[:m] * base + codes[n - 1 : n - 1 + m]
            valid = valid[:m] & (codes[n - 1 : n - 1 + m] > 0)
            if n >= lo:
                all_docs.append(doc_of[:m][valid])
                all_keys.append(key[valid])
        if not all_keys:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(all_docs), np.concatenate(all_keys)

    def _weigh(self, docs: np.ndarray, keys: np.ndarray, n_docs: int) -> sp.csr_matrix:
        col = self.table_.lookup(keys)
        hit = col >= 0
        counts = sp.csr_matrix(
            (np.ones(int(hit.sum()), dtype=np.float32), (docs[hit], col[hit])),
            shape=(n_docs, self.vocabulary_.size),
        )
        counts.sum_duplicates()
        counts.data = (1.0 + np.log(counts.data)) * self.idf_[counts.indices]
        inplace_csr_row_normalize_l2(counts)  # what `normalize` runs, without its checks
        return counts.astype(np.float32, copy=False)


class IntTable:
    """An open-addressing hash table from int64 keys to their positions, probed for a whole
    array of keys at once (a sorted-array binary search misses the cache on every step)."""

    _MULT = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing

    def __init__(self, keys: np.ndarray) -> None:
        bits = max(4, int(np.ceil(np.log2(max(keys.size, 1) * 3))))
        self.shift = np.uint64(64 - bits)
        self.mask = np.int64((1 << bits) - 1)
        self.keys = np.full(1 << bits, -1, dtype=np.int64)
        self.values = np.full(1 << bits, -1, dtype=np.int32)
        pending = np.arange(keys.size)
        slot = self._hash(keys)
        while pending.size:
            # among keys aiming at the same free slot, the first wins; the rest probe on
            free = self.keys[slot[pending]] == -1
            cand = pending[free]
            _, first = np.unique(slot[cand], return_index=True)
            winners = cand[first]
            self.keys[slot[winners]] = keys[winners]
            self.values[slot[winners]] = winners
            placed = np.zeros(keys.size, dtype=bool)
            placed[winners] = True
            pending = pending[~placed[pending]]
            slot[pending] = (slot[pending] + 1) & self.mask

    def _hash(self, keys: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            h = (keys.astype(np.uint64) * self._MULT) >> self.shift
        return h.astype(np.int64)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The position of each key, or -1 when absent."""
        out = np.full(keys.size, -1, dtype=np.int64)
        slot = self._hash(keys)
        pending = np.arange(keys.size)
        while pending.size:
            s = slot[pending]
            found = self.keys[s]
            match = found == keys[pending]
            out[pending[match]] = self.values[s[match]]
            pending = pending[~match & (found != -1)]
            slot[pending] = (slot[pending] + 1) & self.mask
        return out


def _texts(X: Any) -> list[str]:
    """A column of texts (1-D array, list, or a one-column 2-D array) as strings."""
    arr = np.asarray(X, dtype=object)
    if arr.ndim == 2:
        arr = arr[:, 0]
    return ["" if t is None else str(t) for t in arr]
