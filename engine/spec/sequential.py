"""The ``{"layers": [...]}`` spec form: a Sequential of engine.nn layers by class name."""
from __future__ import annotations

import inspect
from typing import Any

from engine import nn
from engine.spec.errors import SpecError

_NOT_LAYERS = frozenset(
    {"Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"}
)
_FORBIDDEN_ARGS = frozenset({"device", "dtype", "self"})
_FORMS = ("layers", "graph", "zoo")


def layer_types() -> dict[str, type]:
    """engine.nn layer classes a spec may name (no containers, no losses)."""
    out = {}
    for name in dir(nn):
        obj = getattr(nn, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, nn.Module)
            and name not in _NOT_LAYERS
            and not name.endswith("Loss")
            and not name.startswith("_")
        ):
            out[name] = obj
    return out


def _to_python(value: Any) -> Any:
    """JSON lists become tuples, which is what layer arguments such as kernel_size take."""
    if isinstance(value, list):
        return tuple(_to_python(v) for v in value)
    return value


def _check_value(path: tuple, value: Any) -> None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_value(path + (i,), v)
        return
    raise SpecError(path, f"must be a number, string, boolean, null or a list of them, not {type(value).__name__}")


def _layer_args(path: tuple, entry: Any, types: dict[str, type]) -> tuple[type, dict]:
    if not isinstance(entry, dict):
        raise SpecError(path, "each layer must be an object with a 'type'")
    layer_type = entry.get("type")
    if not isinstance(layer_type, str):
        raise SpecError(path + ("type",), "is required and must be a layer class name")
    cls = types.get(layer_type)
    if cls is None:
        raise SpecError(path + ("type",), f"unknown layer type {layer_type!r}; known: {', '.join(sorted(types))}")
    kwargs = {k: v for k, v in entry.items() if k != "type"}
    params = inspect.signature(cls.__init__).parameters
    accepted = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    accepted -= _FORBIDDEN_ARGS
    for key, value in kwargs.items():
        if key not in accepted:
            raise SpecError(path + (key,), f"{layer_type} has no argument {key!r}; it takes {', '.join(sorted(accepted)) or 'none'}")
        _check_value(path + (key,), value)
    missing = [
        n for n in accepted
        if params[n].default is inspect.Parameter.empty and n not in kwargs
    ]
    if missing:
        raise SpecError(path, f"{layer_type} needs argument(s) {', '.join(missing)}")
    return cls, {k: _to_python(v) for k, v in kwargs.items()}


def _layers(spec: Any) -> list:
    if not isinstance(spec, dict):
        raise SpecError((), "the model spec must be an object")
    forms = [f for f in _FORMS if f in spec]
    if len(forms) != 1:
        raise SpecError((), f"the model spec needs exactly one of {', '.join(_FORMS)}")
    if forms[0] != "layers":
        raise SpecError((forms[0],), f"the {forms[0]!r} spec form is not supported yet; use 'layers'")
    layers = spec["layers"]
    if not isinstance(layers, list) or not layers:
        raise SpecError(("layers",), "must be a non-empty list of layers")
    return layers


def validate(spec: Any) -> list[tuple[type, dict]]:
    """Check a spec's structure, layer types and arguments without building it."""
    types = layer_types()
    return [_layer_args(("layers", i), entry, types) for i, entry in enumerate(_layers(spec))]


def build_model(spec: Any) -> nn.Module:
    """Build the Module a spec describes; state_dict keys are ``0.weight``, ``0.bias``, ..."""
    layers = []
    for i, (cls, kwargs) in enumerate(validate(spec)):
        try:
            layers.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise SpecError(("layers", i), f"{cls.__name__}: {exc}") from exc
    return nn.Sequential(*layers)
