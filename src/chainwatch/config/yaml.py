"""Step 1 of loading: YAML to plain data, with the line of every value kept in a path map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from chainwatch.config.schema import _MAX_NODES, YamlPath
from chainwatch.errors import InventoryError

# -- step 1: YAML to data with a line for every path ----------------------------------------


@dataclass
class _Document:
    data: Any
    lines: dict[YamlPath, int]

    def line(self, path: YamlPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor in the file."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return None


def _field_name(path: YamlPath) -> str:
    out = ""
    for seg in path:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else str(seg))
    return out


MAX_DEPTH = 64
"""Deepest nesting of mappings and lists accepted (an inventory needs about six)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses tags it does not know instead of dropping them."""


_Fast: type[Any] | None = None  # CSafeLoader is no SafeLoader subclass to the stubs
if getattr(yaml, "__with_libyaml__", False):
    class _CLoader(yaml.CSafeLoader):
        """The same, with libyaml's parser and composer (its nodes carry their marks, so
        lines stay exact; about 20 times faster than the pure-Python composer)."""

    _Fast = _CLoader


def _unknown_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"unknown YAML tag {node.tag!r}", node.start_mark)


for _cls in (_Loader, _Fast):
    if _cls is not None:
        _cls.add_multi_constructor("!", _unknown_tag)
        _cls.add_multi_constructor("tag:yaml.org,2002:python/", _unknown_tag)


class _Refused(Exception):
    """libyaml refused the text: the pure-Python loader reads it again for its message."""


def _read_yaml(text: str, source: str) -> _Document:
    """The document's data and line map: composed by libyaml when PyYAML has it; a text
    libyaml refuses is read again by PyYAML's own composer, whose messages (and lines)
    the errors give, so they do not depend on how PyYAML was built."""
    if _Fast is not None:
        try:
            return _read_with(_Fast, text, source)
        except _Refused:
            pass
    return _read_with(_Loader, text, source)


def _read_with(cls: type[Any], text: str, source: str) -> _Document:
    fast = cls is not _Loader
    try:
        loader = cls(text)
    except yaml.YAMLError as exc:  # a character YAML refuses (NUL), seen while reading
        if fast:
            raise _Refused from None
        raise InventoryError(source, _line_of(exc, text), None,
                             f"invalid YAML: {_problem(exc)}") from None
    lines: dict[YamlPath, int] = {}
    budget = [_MAX_NODES]

    def convert(node: yaml.Node, path: YamlPath, stack: tuple[int, ...]) -> Any:
        lines.setdefault(path, node.start_mark.line + 1)
        budget[0] -= 1
        if budget[0] < 0:
            raise InventoryError(source, node.start_mark.line + 1, None,
                                 f"document expands to more than {_MAX_NODES} values")
        if id(node) in stack:
            raise InventoryError(source, node.start_mark.line + 1, _field_name(path) or None,
                                 "an alias refers to the value that contains it")
        stack = (*stack, id(node))
        if len(stack) > MAX_DEPTH:
            raise InventoryError(source, node.start_mark.line + 1, None,
                                 f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, yaml.MappingNode):
            if node.tag not in ("tag:yaml.org,2002:map",):
                raise InventoryError(source, node.start_mark.line + 1, _field_name(path) or None,
                                     f"unknown YAML tag {node.tag!r}")
            own: dict[str, int] = {}
            for key_node, _ in node.value:
                key_line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    raise InventoryError(source, key_line, _field_name(path) or None,
                                         "mapping keys must be plain names")
                key = str(key_node.value)
                if key in own and key_node.tag != "tag:yaml.org,2002:merge":
                    raise InventoryError(source, key_line, _field_name((*path, key)),
                                         f"duplicate key (first given on line {own[key]})")
                own.setdefault(key, key_line)
            # Resolve ``<<: *anchor`` merge keys: merged pairs come first, so the
            # mapping's own keys override them, as YAML says.
            loader.flatten_mapping(node)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = convert(value_node, (*path, key), stack)
            return out
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise InventoryError(source, node.start_mark.line + 1, _field_name(path) or None,
                                     f"unknown YAML tag {node.tag!r}")
            return [convert(item, (*path, i), stack) for i, item in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    try:
        root = loader.get_single_node()
        data = None if root is None else convert(root, (), ())
    except yaml.YAMLError as exc:
        if fast:
            raise _Refused from None
        raise _yaml_error(exc, text, source) from None
    except RecursionError:  # the composer recursed out before convert() could count
        raise InventoryError(source, None, None,
                             f"nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()
    return _Document(data, lines)


def _yaml_error(exc: yaml.YAMLError, text: str, source: str) -> InventoryError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot parse"
        if exc.problem and exc.context and exc.context_mark is not None and (
            mark is None or exc.context_mark.line != mark.line
        ):
            problem += f" ({exc.context} on line {exc.context_mark.line + 1})"
        return InventoryError(
            source, None if mark is None else mark.line + 1, None, f"invalid YAML: {problem}")
    return InventoryError(source, _line_of(exc, text), None, f"invalid YAML: {_problem(exc)}")


def _line_of(exc: yaml.YAMLError, text: str = "") -> int | None:
    """The line a YAML error points at (the reader gives a character position only)."""
    if isinstance(exc, yaml.reader.ReaderError):
        return text[: exc.position].count("\n") + 1
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return None if mark is None else int(mark.line) + 1


def _problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character
        shown = repr(chr(char)) if isinstance(char, int) else repr(char)
        return f"character {shown} is not allowed in YAML"
    return " ".join(str(getattr(exc, "problem", None) or exc).split())[:200]
