"""Word segmentation (分词) with jieba and the district's user dictionary (用户词典).

`tokenize` is a named, importable function so that scikit-learn pipelines using it can be
pickled. jieba is initialised lazily, quietly and once per process, on a private
`jieba.Tokenizer` so that other users of jieba in the same process are not affected.

`tokenize` gives exactly the words of jieba's ``lcut(text, HMM=False)`` (content words only),
but segments with `Segmenter`: jieba's prefix-dictionary DAG and its best-route search fused
into one pass per text block, with the log-frequencies of the words met cached. That is about
twice as fast as jieba's own three passes and the classifier's hottest loop.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from pathlib import Path
from typing import Final

import jieba

USERDICT_PATH: Path = Path(__file__).with_name("userdict.txt")

_lock = threading.Lock()
_tokenizer: jieba.Tokenizer | None = None
_segmenter: Segmenter | None = None


def _build_tokenizer() -> jieba.Tokenizer:
    jieba.setLogLevel(logging.WARNING)
    logging.getLogger("jieba").setLevel(logging.WARNING)
    tk = jieba.Tokenizer()
    tk.initialize()
    tk.load_userdict(str(USERDICT_PATH))
    return tk


def get_tokenizer() -> jieba.Tokenizer:
    """The process-wide jieba tokenizer with the user dictionary loaded."""
    global _tokenizer
    if _tokenizer is None:
        with _lock:
            if _tokenizer is None:
                _tokenizer = _build_tokenizer()
    return _tokenizer


def get_segmenter() -> Segmenter:
    """The process-wide `Segmenter` over `get_tokenizer`'s dictionary."""
    global _segmenter
    if _segmenter is None:
        tk = get_tokenizer()
        with _lock:
            if _segmenter is None:
                _segmenter = Segmenter(tk.FREQ, tk.total)
    return _segmenter


# a letter, digit or CJK character: word characters except the underscore
_CONTENT = re.compile(r"[^\W_]")
_HAN_BLOCKS = jieba.re_han_default  # runs jieba segments; what lies between is cut per character
_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


class Segmenter:
    """jieba's accurate mode without HMM over a prefix dictionary ``freq`` (word → count, 0
    for a prefix that is not itself a word) of total count ``total``.

    For each block of Han/alphanumeric characters, positions are visited right to left; at
    each, the dictionary words starting there are enumerated (stopping at the first fragment
    that is not a prefix) and the best route kept, ties going to the longer word, as jieba's
    ``max((score, end))`` does. Runs of single ASCII letters or digits are joined, as jieba
    joins them.
    """

    _ABSENT: Final = object()
    _PREFIX: Final = object()
    CACHE_LIMIT: Final = 200_000  # fragments whose log-frequency (or absence) is cached (~40 MB)
    #: Short blocks recur across orders ("市民来电反映", "工单处理情况": about a fifth of the
    #: Haikou text): their words are cached, up to this many blocks.
    BLOCK_CACHE_LIMIT: Final = 50_000
    SHORT_BLOCK: Final = 12

    def __init__(self, freq: dict[str, int], total: int) -> None:
        self._freq = freq
        self._logtotal = math.log(total)
        self._cache: dict[str, object] = {}
        self._blocks: dict[str, list[str]] = {}

    def words(self, text: str) -> list[str]:
        """The content words of ``text`` (no whitespace or punctuation tokens)."""
        out: list[str] = []
        for i, block in enumerate(_HAN_BLOCKS.split(text)):
            if i % 2:  # split() with a group: odd items are the matched runs
                out += self._block_words(block)
            else:
                out.extend(c for c in block if _CONTENT.match(c))
        return out

    def _block_words(self, block: str) -> list[str]:
        if len(block) > self.SHORT_BLOCK:
            return self._cut_block(block)
        found = self._blocks.get(block)
        if found is None:
            if len(self._blocks) >= self.BLOCK_CACHE_LIMIT:
                self._blocks.clear()
            found = self._blocks[block] = self._cut_block(block)
        return found

    def _logp(self, frag: str) -> object:
        """log(count / total) of a word, `_PREFIX` for a mere prefix, `_ABSENT` otherwise."""
        cache = self._cache
        lp = cache.get(frag)
        if lp is None:
            count = self._freq.get(frag)
            if count is None:
                lp = self._ABSENT
            elif count:
                lp = math.log(count) - self._logtotal
            else:
                lp = self._PREFIX
            if len(cache) >= self.CACHE_LIMIT:
                cache.clear()
            cache[frag] = lp
        return lp

    def _cut_block(self, s: str) -> list[str]:
        n = len(s)
        best = [0.0] * (n + 1)
        nxt = list(range(n))
        absent, prefix, logp = self._ABSENT, self._PREFIX, self._logp
        lone = -self._logtotal  # jieba scores a character outside the dictionary log(1) - log(total)
        for idx in range(n - 1, -1, -1):
            score, end = -math.inf, idx
            stop = idx + 1
            lp = logp(s[idx])
            while lp is not absent:
                if lp is not prefix:
                    cand = lp + best[stop]  # type: ignore[operator]
                    if cand >= score:
                        score, end = cand, stop - 1
                if stop >= n:
                    break
                stop += 1
                lp = logp(s[idx:stop])
            if score == -math.inf:
                score = lone + best[idx + 1]
            best[idx], nxt[idx] = score, end
        return self._walk(s, nxt)

    @staticmethod
    def _walk(s: str, nxt: list[int]) -> list[str]:
        out: list[str] = []
        x, n, buf = 0, len(s), ""
        while x < n:
            y = nxt[x] + 1
            word = s[x:y]
            if y - x == 1 and word in _ASCII_ALNUM:
                buf += word
            else:
                if buf:
                    out.append(buf)
                    buf = ""
                out.append(word)
            x = y
        if buf:
            out.append(buf)
        return out


def _is_content(token: str) -> bool:
    """True when the token has at least one letter, digit or CJK character."""
    return _CONTENT.search(token) is not None


def tokenize(text: str) -> list[str]:
    """Split ``text`` into words; whitespace and punctuation tokens are dropped.

    Latin letters are lower-cased so that "AEO" and "aeo" are the same feature. jieba's HMM
    guessing of unknown words is off: it costs a fifth of the speed, and the character
    n-gram features already cover words outside the dictionaries.
    """
    if not text:
        return []
    search = _CONTENT.search
    return [t.lower() for t in get_segmenter().words(text) if search(t) is not None]
