"""JSON as every reader parses it alike: no NaN or Infinity (Python accepts them, JSON does
not), no number that overflows to infinity, and bounded nesting, so that neither parsing
nor printing it again can recurse without end."""
from __future__ import annotations

import json
import math
from typing import Any

from mar_tasks.plan import limits


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _depth(doc: Any) -> int:
    """Nesting depth of a parsed document, without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            if depth > limits.MAX_JSON_DEPTH:
                return depth
            stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def loads(raw: bytes) -> Any:
    """Parse UTF-8 JSON strictly; ValueError (one line) for anything else."""
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError(f"nested deeper than {limits.MAX_JSON_DEPTH} levels") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason})") from None
    if _depth(doc) > limits.MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {limits.MAX_JSON_DEPTH} levels")
    return doc
