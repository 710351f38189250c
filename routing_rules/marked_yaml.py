"""YAML loading that remembers where every key and item sits (行号), so a bad rule file can be
reported by file, line and column.

PyYAML's `compose` keeps node marks; we walk the node tree ourselves, building plain Python
values and a `{path: (line, column)}` index (1-based), and reject duplicate mapping keys, which
PyYAML would silently overwrite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: A path into the loaded document: mapping keys and sequence indexes.
PathT = tuple[str | int, ...]


class RuleFileError(ValueError):
    """A rule or unit file that cannot be used: names the file, the line/column and the reason."""

    def __init__(self, file: Path | str, line: int | None, column: int | None, reason: str):
        self.file = Path(file)
        self.line = line
        self.column = column
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        if self.line is None:
            return f"规则文件 {self.file}：{self.reason}"
        return f"规则文件 {self.file} 第 {self.line} 行第 {self.column} 列：{self.reason}"


@dataclass(frozen=True)
class MarkedDoc:
    """A loaded YAML document with the position of each path in it."""

    file: Path
    data: Any
    marks: dict[PathT, tuple[int, int]]

    def position(self, path: PathT) -> tuple[int | None, int | None]:
        """Line and column of `path`, or of its nearest ancestor that has a mark."""
        for cut in range(len(path), -1, -1):
            mark = self.marks.get(tuple(path[:cut]))
            if mark is not None:
                return mark
        return (1, 1)  # an empty document: the problem is at its start

    def error(self, path: PathT, reason: str) -> RuleFileError:
        line, column = self.position(path)
        return RuleFileError(self.file, line, column, reason)


def load_marked(file: Path) -> MarkedDoc:
    """Parse `file`; syntax errors and duplicate keys raise `RuleFileError`."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise RuleFileError(file, None, None, f"无法读取：{exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _byte_position(raw, exc.start)
        raise RuleFileError(file, line, column, "不是 UTF-8 编码（请以 UTF-8 保存）") from exc
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a control character YAML does not allow
        raise _reader_error(file, text, exc) from exc
    try:
        node = loader.get_single_node()
        marks: dict[PathT, tuple[int, int]] = {}
        data = _build(loader, node, (), marks, file) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise RuleFileError(file, line, column, f"YAML 语法错误：{exc.problem}") from exc
    except RecursionError as exc:  # e.g. an anchor that contains its own alias: a: &x [*x]
        line = next((i for i, t in enumerate(text.splitlines(), 1) if "*" in t), 1)
        raise RuleFileError(file, line, 1, "结构嵌套过深或锚点自引用（&/*）") from exc
    except yaml.reader.ReaderError as exc:  # a control character YAML does not allow
        raise _reader_error(file, text, exc) from exc
    finally:
        loader.dispose()
    return MarkedDoc(file=file, data=data, marks=marks)


def _reader_error(file: Path, text: str, exc: yaml.reader.ReaderError) -> RuleFileError:
    line, column = _char_position(text, exc.position)
    return RuleFileError(file, line, column, f"含不允许的字符 {chr(exc.character)!r}")


def _byte_position(raw: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in bytes) of ``offset``."""
    line_start = raw.rfind(b"\n", 0, offset) + 1
    return raw.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _char_position(text: str, offset: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def _pos(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _build(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: PathT,
    marks: dict[PathT, tuple[int, int]],
    file: Path,
) -> Any:
    marks.setdefault(path, _pos(node))
    if isinstance(node, yaml.MappingNode):
        return _build_mapping(loader, node, path, marks, file)
    if isinstance(node, yaml.SequenceNode):
        out: list[Any] = []
        for i, item in enumerate(node.value):
            marks[(*path, i)] = _pos(item)
            out.append(_build(loader, item, (*path, i), marks, file))
        return out
    return loader.construct_object(node, deep=True)


def _build_mapping(
    loader: yaml.SafeLoader,
    node: yaml.MappingNode,
    path: PathT,
    marks: dict[PathT, tuple[int, int]],
    file: Path,
) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)):
            line, column = _pos(key_node)
            raise RuleFileError(file, line, column, "键必须是简单的标量")
        if key in out:
            line, column = _pos(key_node)
            raise RuleFileError(file, line, column, f"重复的键 {key!r}")
        # the key's own line is what a person looks for, so it wins over the value's
        marks[(*path, str(key))] = _pos(key_node)
        out[key] = _build(loader, value_node, (*path, str(key)), marks, file)
    return out
