"""Hostile rule files (规则文件): a copy of routing_rules/jinshan/ with random edits either loads
or raises `RuleFileError` naming the file and the line, never anything else."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing_rules import default_rules_dir
from routing_rules.config import RoutingConfig, load_rules
from routing_rules.marked_yaml import RuleFileError

SOURCE = default_rules_dir()
FILES = ("units.yaml", "rules.yaml", "abnormal.yaml")
YAML_JUNK = (
    ":", "- ", "  ", "\t", "'", '"', "{", "}", "[", "]", "&a ", "*a", "!!python/object:os.system ",
    "? ", "|", ">", "#", "%YAML 1.1\n", "---\n", "...\n", "~", "null", "true", "0x1F", "1e999",
    "9" * 5000, "😀", "\x00", "\x1b", "\ufeff", "id: R-LOCAL", "code: zhujing", "<<: *a",
)
FAST = settings(max_examples=40, deadline=None, derandomize=True, report_multiple_bugs=False,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def edits(draw: st.DrawFn) -> tuple[str, bytes]:
    """One file and its mutated bytes: lines dropped, duplicated, swapped or spliced with junk,
    truncated, re-encoded as GBK, or salted with invalid bytes."""
    name = draw(st.sampled_from(FILES))
    text = (SOURCE / name).read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "swap", "junk", "indent", "replace"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "junk":
            at = draw(st.integers(0, len(lines[i])))
            piece = draw(st.one_of(st.sampled_from(YAML_JUNK), st.text(max_size=8)))
            lines[i] = lines[i][:at] + piece + lines[i][at:]
        elif op == "indent":
            lines[i] = draw(st.sampled_from([" ", "    ", "\t"])) + lines[i]
        else:
            lines[i] = draw(st.text(max_size=30)) + "\n"
    body = "".join(lines)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "gbk", "truncate", "salt"]))
    if encoding == "gbk":
        return name, body.encode("gbk", errors="replace")
    raw = body.encode("utf-8", errors="surrogatepass")
    if encoding == "truncate":
        return name, raw[: draw(st.integers(0, len(raw)))]
    if encoding == "salt":
        at = draw(st.integers(0, len(raw)))
        return name, raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    return name, raw


def load_mutated(name: str, raw: bytes) -> RoutingConfig | RuleFileError:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "rules"
        shutil.copytree(SOURCE, directory)
        (directory / name).write_bytes(raw)
        try:
            return load_rules(directory)
        except RuleFileError as exc:
            assert exc.file.name in FILES, exc
            assert exc.file.parent == directory
            assert exc.line is not None and exc.line >= 1, f"no line: {exc}"
            assert exc.reason.strip()
            assert exc.file.name in str(exc) and f"第 {exc.line} 行" in str(exc)
            return exc


@FAST
@given(edits())
def test_mutated_rule_files_load_or_name_file_and_line(edit: tuple[str, bytes]) -> None:
    load_mutated(*edit)


@pytest.mark.slow
@settings(FAST, max_examples=400, derandomize=False)
@given(edits())
def test_mutated_rule_files_load_or_name_file_and_line_many(edit: tuple[str, bytes]) -> None:
    load_mutated(*edit)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("units.yaml", b"\xff\xfe\x00\x01"),
        ("rules.yaml", "设置: [".encode("gbk")),
        ("units.yaml", b""),
        ("rules.yaml", b"- just\n- a list\n"),
        ("abnormal.yaml", b"abnormal_complainants: !!python/object/apply:os.system ['true']\n"),
        ("units.yaml", b"a: &x [*x]\n"),
        ("rules.yaml", b"\x00"),
    ],
)
def test_named_broken_files_raise_rule_file_error(name: str, raw: bytes) -> None:
    assert isinstance(load_mutated(name, raw), RuleFileError)
