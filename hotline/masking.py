"""Masking of personal data (手机号, 身份证号, 座机) in any text the product prints or logs."""

from __future__ import annotations

import re

# 18-digit resident ID (last may be X) and old 15-digit IDs, not inside a longer digit run.
_ID_RE = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8}|\d{6})(\d{3}[\dXx]|\d{1})(?![0-9A-Za-z])")
# Mainland mobile numbers, optionally +86; not inside a longer digit run.
_MOBILE_RE = re.compile(r"(?<!\d)((?:\+?86[- ]?)?1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?!\d)")
# Landlines like 021-57921234 or 0898-66668888.
_LANDLINE_RE = re.compile(r"(?<!\d)(0\d{2,3})-(\d{3,4})(\d{4})(?!\d)")


def _mask_id(m: re.Match[str]) -> str:
    whole = m.group(0)
    if len(whole) not in (15, 18):
        return whole
    return whole[:6] + "*" * (len(whole) - 10) + whole[-4:]


def mask_pii(text: str | None) -> str:
    """Return ``text`` with phone and ID numbers masked; ``None`` becomes ``""``."""
    if not text:
        return ""
    out = _ID_RE.sub(_mask_id, text)
    out = _MOBILE_RE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", out)
    out = _LANDLINE_RE.sub(lambda m: f"{m.group(1)}-****{m.group(3)}", out)
    return out
