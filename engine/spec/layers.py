"""Layer entries of a spec: ``{"type": <engine.nn class>, <constructor args>...}``.

Arguments are checked against the constructor's signature and annotations before anything
is built, so a spec from the internet never reaches a constructor with a wrong type.
"""
from __future__ import annotations

import inspect
import math
from typing import Any

from engine import nn
from engine.spec.errors import SpecError

_NOT_LAYERS = frozenset({"Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
                         # engine.nn layers whose shapes shapes.py does not infer yet (nn owner's addition)
                         "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "PixelShuffle"})
_FORBIDDEN_ARGS = frozenset({"device", "dtype", "self"})
# arguments that take another layer entry (a nested object) rather than a JSON value
NESTED_ARGS = {"TransformerEncoder": {"encoder_layer": ("TransformerEncoderLayer",), "norm": ("LayerNorm", "RMSNorm")}}
MAX_INT = 2**40  # larger sizes are rejected by the limits long before; this keeps arithmetic sane
_SIZE_NAMES = ("features", "channels", "input_size", "hidden_size", "kernel_size", "embeddings", "heads", "groups",
               "num_layers", "embed_dim", "embedding_dim", "d_model", "nhead", "dim_feedforward")


def layer_types() -> dict[str, type]:
    """engine.nn layer classes a spec may name (no containers, no losses)."""
    out = {}
    for name in dir(nn):
        obj = getattr(nn, name)
        if (isinstance(obj, type) and issubclass(obj, nn.Module) and name not in _NOT_LAYERS
                and not name.endswith("Loss") and not name.startswith("_")):
            out[name] = obj
    return out


def accepted_args(cls: type) -> dict[str, inspect.Parameter]:
    """Constructor arguments a spec may set (no device/dtype, no private ones)."""
    params = inspect.signature(cls.__init__).parameters
    return {n: p for n, p in params.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and n not in _FORBIDDEN_ARGS and not n.startswith("_")}


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(v), type(v).__name__)


def _check_json(path: tuple, value: Any, depth: int = 0) -> None:
    if depth > 4:
        raise SpecError(path, "is nested too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(path, "must be a finite number, not NaN or Infinity")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise SpecError(path, f"{value} is too large")
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, list):
        if len(value) > 16:
            raise SpecError(path, "is too long a list for a layer argument")
        for i, v in enumerate(value):
            _check_json(path + (i,), v, depth + 1)
        return
    raise SpecError(path, f"must be a number, string, boolean, null or a list of them, not {_type_name(value)}")


def _check_annotation(path: tuple, name: str, annotation: Any, value: Any) -> None:
    """Enforce the simple annotations (int, float, bool, str, optional ones)."""
    ann = str(annotation).replace(" ", "")
    options = set(ann.split("|"))
    if value is None:
        if "None" in options or ann in ("Any", "inspect._empty") or "Module" in ann:
            return
        raise SpecError(path, f"{name} must not be null")
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }
    simple = options & set(ok)
    if simple and options <= set(ok) | {"None"} and not any(ok[o] for o in simple):
        want = " or ".join(sorted({"int": "an integer", "float": "a number", "bool": "a boolean",
                                   "str": "a string"}[o] for o in simple))
        raise SpecError(path, f"{name} must be {want}, not {_type_name(value)}")
    if "int" in options and isinstance(value, int) and not isinstance(value, bool) and value < 1 \
            and name.endswith(_SIZE_NAMES):
        raise SpecError(path, f"{name} must be at least 1, not {value}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and name in ("p", "dropout") \
            and not 0 <= value <= 1:
        raise SpecError(path, f"{name} is a probability and must be between 0 and 1, not {value}")


def check_layer(path: tuple, entry: Any, types: dict[str, type] | None = None,
                reserved: frozenset = frozenset()) -> tuple[type, dict]:
    """Check one layer entry; returns (class, kwargs as JSON). ``reserved`` keys (name, inputs)
    belong to the enclosing form and are skipped."""
    types = types or layer_types()
    if not isinstance(entry, dict):
        raise SpecError(path, f"each layer must be an object with a 'type', not {_type_name(entry)}")
    layer_type = entry.get("type")
    if not isinstance(layer_type, str):
        raise SpecError(path + ("type",), "is required and must be a layer class name")
    cls = types.get(layer_type)
    if cls is None:
        raise SpecError(path + ("type",), f"unknown layer type {layer_type[:80]!r}; known: {', '.join(sorted(types))}")
    params = accepted_args(cls)
    nested = NESTED_ARGS.get(layer_type, {})
    kwargs = {k: v for k, v in entry.items() if k != "type" and k not in reserved}
    for key, value in kwargs.items():
        if key not in params:
            raise SpecError(path + (str(key)[:80],), f"{layer_type} has no argument {str(key)[:80]!r}; "
                                                     f"it takes {', '.join(sorted(params)) or 'none'}")
        if key in nested:
            if value is None and params[key].default is None:
                continue
            sub_cls, _ = check_layer(path + (key,), value, types)
            if sub_cls.__name__ not in nested[key]:
                raise SpecError(path + (key, "type"), f"must be one of {', '.join(nested[key])}")
            continue
        _check_json(path + (key,), value)
        _check_annotation(path + (key,), key, params[key].annotation, value)
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in kwargs]
    if missing:
        raise SpecError(path, f"{layer_type} needs argument(s) {', '.join(missing)}")
    return cls, kwargs


def to_python(value: Any) -> Any:
    """JSON lists become tuples, which is what layer arguments such as kernel_size take."""
    if isinstance(value, list):
        return tuple(to_python(v) for v in value)
    return value


def construct(path: tuple, cls: type, kwargs: dict) -> nn.Module:
    """Build a checked layer (nested layer arguments included)."""
    nested = NESTED_ARGS.get(cls.__name__, {})
    args = {}
    for k, v in kwargs.items():
        if k in nested and isinstance(v, dict):
            sub_cls, sub_kwargs = check_layer(path + (k,), v)
            args[k] = construct(path + (k,), sub_cls, sub_kwargs)
        else:
            args[k] = to_python(v)
    try:
        return cls(**args)
    except (TypeError, ValueError, AssertionError, ZeroDivisionError, NotImplementedError) as exc:
        raise SpecError(path, f"{cls.__name__}: {exc}") from exc
