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

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._tags: dict[tuple[Any, ...], str] = {}

        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            """The resolver's tag, remembered per (kind, text, implicit) for the document:
            libyaml asks for every scalar, and an inventory repeats its keys and many of
            its values (a pure function of those three: a safe loader has no path
            resolvers)."""
            key = (kind, value, implicit)
            tag = self._tags.get(key)
            if tag is None:
                tag = self._tags[key] = super().resolve(  # type: ignore[no-untyped-call]
                    kind, value, implicit)
            return tag

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
    budget = _MAX_NODES
    active: set[int] = set()  # the collections being converted: an alias to one recurses
    constructors: dict[Any, Any] = loader.yaml_constructors
    scalar_node, mapping_node, sequence_node = yaml.ScalarNode, yaml.MappingNode, yaml.SequenceNode

    def scalar(node: yaml.Node, path: YamlPath, depth: int) -> Any:
        """A scalar's value (``convert`` for a scalar, without its collection checks)."""
        nonlocal budget
        budget -= 1
        if budget < 0:
            raise InventoryError(source, node.start_mark.line + 1, None,
                                 f"document expands to more than {_MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise InventoryError(source, node.start_mark.line + 1, None,
                                 f"nested more than {MAX_DEPTH} levels deep")
        construct = constructors.get(node.tag)
        if construct is None:  # an unknown tag: the loader's refusal
            return loader.construct_object(node, deep=True)
        return construct(loader, node)

    def convert(node: yaml.Node, path: YamlPath, depth: int) -> Any:
        """``node``'s data, at ``depth`` (the root is 1), its lines put in ``lines``."""
        nonlocal budget
        lines.setdefault(path, node.start_mark.line + 1)
        if type(node) is scalar_node:
            return scalar(node, path, depth)
        budget -= 1
        if budget < 0:
            raise InventoryError(source, node.start_mark.line + 1, None,
                                 f"document expands to more than {_MAX_NODES} values")
        if id(node) in active:
            raise InventoryError(source, node.start_mark.line + 1, _field_name(path) or None,
                                 "an alias refers to the value that contains it")
        if depth > MAX_DEPTH:
            raise InventoryError(source, node.start_mark.line + 1, None,
                                 f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, mapping_node):
            if node.tag not in ("tag:yaml.org,2002:map",):
                raise InventoryError(source, node.start_mark.line + 1, _field_name(path) or None,
                                     f"unknown YAML tag {node.tag!r}")
            own: dict[str, yaml.Node] = {}
            special = False
            for key_node, _ in node.value:
                if not isinstance(key_node, scalar_node):
                    raise InventoryError(source, key_node.start_mark.line + 1,
                                         _field_name(path) or None,
                                         "mapping keys must be plain names")
                key = str(key_node.value)
                tag = key_node.tag
                if key in own and tag != "tag:yaml.org,2002:merge":
                    raise InventoryError(
                        source, key_node.start_mark.line + 1, _field_name((*path, key)),
                        f"duplicate key (first given on line {own[key].start_mark.line + 1})")
                own.setdefault(key, key_node)
                special = special or tag in ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")
            if special:
                # Resolve ``<<: *anchor`` merge keys: merged pairs come first, so the
                # mapping's own keys override them, as YAML says.
                loader.flatten_mapping(node)
            active.add(id(node))
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                here = (*path, key)
                lines[here] = key_node.start_mark.line + 1
                out[key] = (scalar(value_node, here, depth + 1)
                            if type(value_node) is scalar_node
                            else convert(value_node, here, depth + 1))
            active.discard(id(node))
            return out
        if isinstance(node, sequence_node):
            if node.tag != "tag:yaml.org,2002:seq":
                raise InventoryError(source, node.start_mark.line + 1, _field_name(path) or None,
                                     f"unknown YAML tag {node.tag!r}")
            active.add(id(node))
            items = [convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
            active.discard(id(node))
            return items
        return loader.construct_object(node, deep=True)

    try:
        root = loader.get_single_node()
        data = None if root is None else convert(root, (), 1)
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
