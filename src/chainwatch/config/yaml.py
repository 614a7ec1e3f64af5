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


def _read_yaml(text: str, source: str) -> _Document:
    loader = yaml.SafeLoader(text)
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
        if isinstance(node, yaml.MappingNode):
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
            return [convert(item, (*path, i), stack) for i, item in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    try:
        root = loader.get_single_node()
        data = None if root is None else convert(root, (), ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot parse"
        if exc.problem and exc.context and exc.context_mark is not None and (
            mark is None or exc.context_mark.line != mark.line
        ):
            problem += f" ({exc.context} on line {exc.context_mark.line + 1})"
        raise InventoryError(
            source, None if mark is None else mark.line + 1, None, f"invalid YAML: {problem}"
        ) from None
    except yaml.YAMLError as exc:
        raise InventoryError(source, None, None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return _Document(data, lines)
