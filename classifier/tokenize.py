"""Word segmentation (分词) with jieba and the district's user dictionary (用户词典).

`tokenize` is a named, importable function so that scikit-learn pipelines using it can be
pickled. jieba is initialised lazily, quietly and once per process, on a private
`jieba.Tokenizer` so that other users of jieba in the same process are not affected.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import jieba

USERDICT_PATH: Path = Path(__file__).with_name("userdict.txt")

_lock = threading.Lock()
_tokenizer: jieba.Tokenizer | None = None


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


# a letter, digit or CJK character: word characters except the underscore
_CONTENT = re.compile(r"[^\W_]")


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
    return [t.lower() for t in get_tokenizer().lcut(text, HMM=False) if search(t) is not None]
