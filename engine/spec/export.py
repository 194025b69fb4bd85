"""Module -> spec: ``to_spec``, the inverse of ``build_model``.

How a module maps to a spec:

- A module ``build_model`` returned carries the spec it was built from (``module._trainyard_spec``,
  with ``module._trainyard_structure``, the spec its layers gave at build time). When the module
  still has that structure (layers not replaced, arguments not changed; weights may differ),
  ``to_spec`` returns the original spec exactly: a zoo spec stays a zoo spec, a graph spec keeps
  its spelling. Otherwise the spec is derived from the module itself:
- ``nn.Sequential`` of engine.nn layers with the default keys ``0``, ``1``, ... -> the ``layers``
  form (state_dict keys unchanged). Nested Sequentials are flattened into one ``layers`` list;
  their state_dict keys then change (``0.1.weight`` becomes ``1.weight``), since no spec form
  can name a nested key.
- ``nn.Sequential`` with named children (``Sequential(OrderedDict(fc1=..., act=...))``) whose
  names are graph node names -> a chain in the ``graph`` form, so the keys (``fc1.weight``) stay.
- A graph model (``GraphModule``) -> the ``graph`` form of its plan; a single layer -> ``layers``
  with one entry (its keys gain the ``0.`` prefix).

Each layer entry is ``{"type": <class name>, <constructor arguments>}`` with the arguments read
back from the layer's attributes; an argument equal to the constructor's default is left out,
and size arguments (``kernel_size``, ``stride``, ``padding``, ``dilation``, ``output_padding``,
``output_size``) that are the same in every dimension are written as one integer (``3``, not
``[3, 3]``), otherwise as a list; ``normalized_shape`` of one dimension is an integer. A pooling
``stride`` equal to its ``kernel_size`` is left out (the default, ``None``, means that). So a
spec written with minimal arguments in that spelling round-trips exactly, and any other spec
gives an equal module.

Every layer is checked against the layer its entry builds: same class, same parameter and
buffer names and shapes, same attributes, no hooks, no frozen parameters. A module the spec
cannot express raises ``ModuleSpecError`` (a ``SpecError``) naming the sub-module by its
qualified name, ``model.2`` for the third child of the model. Weights, dtype, device and
train/eval mode are not part of a spec.
"""
from __future__ import annotations

import copy
import inspect
import numbers
from typing import Any

from engine import nn
from engine import random as _random
from engine.nn import functional as F
from engine.spec import graph
from engine.spec.errors import SpecError
from engine.spec.layers import NESTED_ARGS, accepted_args, check_layer, construct, layer_types

ROOT = "model"  # the name errors give the module passed to to_spec
TAG, STRUCTURE = "_trainyard_spec", "_trainyard_structure"
_SIZE_ARGS = frozenset({"kernel_size", "stride", "padding", "dilation", "output_padding", "output_size"})
# constructor arguments a layer does not keep (they change nothing in engine): left out
_UNSTORED = {"TransformerEncoder": frozenset({"enable_nested_tensor", "mask_check"})}
_HOOKS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs")
_BOOKKEEPING = frozenset({"training", "_parameters", "_buffers", "_non_persistent_buffers_set", "_modules",
                          TAG, STRUCTURE, *_HOOKS})
_ACTIVATIONS = {F.relu: "relu", F.gelu: "gelu"}  # TransformerEncoderLayer's activation by name
_HOW = "only Sequential models of engine.nn layers (or models build_model returned) can be expressed as a spec"


class ModuleSpecError(SpecError):
    """``to_spec`` met a module no spec form can express. ``module`` is its qualified name in the
    model (``model.2``, ``model.encoder.layers.0``); the message starts with it."""

    def __init__(self, module: str, message: str) -> None:
        super().__init__((), f"{module} {message}")
        self.module = module

    def __str__(self) -> str:
        return self.message


# ---------------------------------------------------------------------------------------- values
def _json(value: Any) -> Any:
    """A JSON value: tuples become lists, numpy scalars Python numbers."""
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return bool(value) if type(value).__name__ == "bool_" else int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def canonical(name: str, value: Any) -> Any:
    """How a spec written by to_spec spells argument ``name``: see the module docstring."""
    value = _json(value)
    if isinstance(value, list) and value and (name in _SIZE_ARGS or name == "normalized_shape"):
        first = value[0]
        if name == "normalized_shape":
            return first if len(value) == 1 else value
        if isinstance(first, int) and not isinstance(first, bool) and all(
                type(v) is type(first) and v == first for v in value):
            return first
    return value


def _equal(a: Any, b: Any) -> bool:
    """Equal as spec values: a boolean never equals a number (False == 0 in Python)."""
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


# ------------------------------------------------------------------------------- layer -> entry
def _bias(m: nn.Module) -> dict:
    """``bias`` from whether the bias parameter exists; unknowable (and irrelevant) without a weight."""
    params = m._parameters
    if "weight" in params and params["weight"] is None:
        return {}
    return {"bias": params.get("bias") is not None}


def _pool_stride(m: nn.Module) -> dict:
    same = _equal(canonical("stride", m.stride), canonical("kernel_size", m.kernel_size))
    return {"stride": None if same else m.stride}


def _mha(m: nn.Module) -> dict:
    return {"bias": m.in_proj_bias is not None, "add_bias_kv": m.bias_k is not None,
            "kdim": None if m.kdim == m.embed_dim else m.kdim, "vdim": None if m.vdim == m.embed_dim else m.vdim}


def _encoder_layer(m: nn.Module, qual: str) -> dict:
    act = m.activation
    name = next((v for f, v in _ACTIVATIONS.items() if act is f), None)
    if name is None:
        raise ModuleSpecError(qual, f"({type(m).__name__}) has activation {act!r}; a spec names 'relu' or 'gelu'")
    return {"d_model": m.self_attn.embed_dim, "nhead": m.self_attn.num_heads,
            "dim_feedforward": m.linear1.out_features, "dropout": m.dropout.p, "activation": name,
            "layer_norm_eps": m.norm1.eps, "batch_first": m.self_attn.batch_first, "norm_first": m.norm_first,
            "bias": m.linear1.bias is not None}


def _encoder(m: nn.Module, qual: str) -> dict:
    if not len(m.layers):
        raise ModuleSpecError(qual, "(TransformerEncoder) has no layers")
    norm = None if m.norm is None else layer_entry(m.norm, f"{qual}.norm", verify=False)
    return {"encoder_layer": layer_entry(m.layers[0], f"{qual}.layers.0", verify=False),
            "num_layers": len(m.layers), "norm": norm}


_SPECIAL = {"MaxPool1d": _pool_stride, "MaxPool2d": _pool_stride, "AvgPool1d": _pool_stride,
            "AvgPool2d": _pool_stride, "MultiheadAttention": _mha}
_SPECIAL_QUAL = {"TransformerEncoderLayer": _encoder_layer, "TransformerEncoder": _encoder}


def _kind_error(m: nn.Module, qual: str) -> ModuleSpecError:
    """Why ``m`` is not a layer a spec can name."""
    cls = type(m)
    name = cls.__name__
    known = layer_types()
    base = next((b for b in cls.__mro__[1:] if known.get(b.__name__) is b), None)
    if isinstance(m, graph.GraphModule):
        return ModuleSpecError(qual, f"({name}) is a graph model; a graph can only be the whole model, not a layer")
    if isinstance(m, nn.Sequential) or base is not None:
        parent = nn.Sequential if isinstance(m, nn.Sequential) else base
        if cls.forward is not parent.forward or cls.__call__ is not nn.Module.__call__:
            return ModuleSpecError(qual, f"({name}) has a custom forward; {_HOW}")
        return ModuleSpecError(qual, f"({name}) is a subclass of engine.nn.{parent.__name__}; a spec names "
                                     "engine.nn's own layer classes only")
    if cls.__module__.startswith("engine.nn"):
        what = "a loss" if name.endswith("Loss") else "not a layer type a spec can name"
        return ModuleSpecError(qual, f"({name}) is {what}; {_HOW}")
    return ModuleSpecError(qual, f"({name}) has a custom forward; {_HOW}")


def layer_entry(m: nn.Module, qual: str, verify: bool = True) -> dict:
    """The spec entry of one engine.nn layer (``{"type": ..., <non-default arguments>}``); with
    ``verify`` the layer the entry builds is compared with ``m``."""
    cls = type(m)
    name = cls.__name__
    if layer_types().get(name) is not cls:
        raise _kind_error(m, qual)
    _check_plain(m, qual)
    params = accepted_args(cls)
    values: dict[str, Any] = {}
    if "bias" in params and "bias" in m._parameters:
        values.update(_bias(m))
    if name in _SPECIAL:
        values.update(_SPECIAL[name](m))
    if name in _SPECIAL_QUAL:
        values.update(_SPECIAL_QUAL[name](m, qual))
    entry: dict[str, Any] = {"type": name}
    for arg, p in params.items():
        if arg in _UNSTORED.get(name, ()):
            continue
        if arg in values:
            value = values[arg]
        elif arg == "bias" and "bias" in m._parameters:
            continue  # unknowable (no weight): the default builds the same layer
        elif arg in m.__dict__:
            value = m.__dict__[arg]
        else:
            raise ModuleSpecError(qual, f"({name}): cannot read back its argument {arg!r}")
        value = value if arg in NESTED_ARGS.get(name, {}) else canonical(arg, value)
        if p.default is not inspect.Parameter.empty and _equal(value, canonical(arg, p.default)):
            continue
        entry[arg] = value
    if verify:
        _verify(m, entry, qual)
    return entry


def _check_plain(m: nn.Module, qual: str) -> None:
    """No instance-level forward, no hooks: behaviour a spec cannot carry."""
    if "forward" in m.__dict__:
        raise ModuleSpecError(qual, f"({type(m).__name__}) has a custom forward (set on the instance); {_HOW}")
    for hooks in ("_forward_hooks", "_forward_pre_hooks"):
        if m.__dict__.get(hooks):
            raise ModuleSpecError(qual, f"({type(m).__name__}) has forward hooks; a spec cannot carry hooks")


# Layers whose weight initialisation only fills values (the reference to compare with needs the
# names, shapes and attributes, not the values): their reference skips it, so that checking a
# large model does not cost as much as building it again.
_NO_INIT = {"Linear": "reset_parameters", "Bilinear": "reset_parameters", "Conv1d": "reset_parameters",
            "Conv2d": "reset_parameters", "ConvTranspose1d": "reset_parameters",
            "ConvTranspose2d": "reset_parameters", "Embedding": "reset_parameters", "RNN": "reset_parameters",
            "LSTM": "reset_parameters", "GRU": "reset_parameters", "MultiheadAttention": "_reset_parameters"}
_uninitialised: dict[type, type] = {}


def _reference_class(cls: type) -> type:
    method = _NO_INIT.get(cls.__name__)
    if method is None:
        return cls
    if cls not in _uninitialised:
        _uninitialised[cls] = type(cls.__name__, (cls,), {method: lambda self: None, "__module__": __name__})
    return _uninitialised[cls]


def _verify(m: nn.Module, entry: dict, qual: str) -> None:
    """Build the layer ``entry`` describes (without touching the global RNG) and compare."""
    try:
        cls, kwargs = check_layer(("layers", 0), entry)
        state = _random.get_rng_state()
        try:
            ref = construct(("layers", 0), _reference_class(cls), kwargs)
        finally:
            _random.set_rng_state(state)
    except SpecError as exc:
        raise ModuleSpecError(qual, f"({entry['type']}) gives an invalid spec entry: {exc.message}") from exc
    _compare(m, ref, qual, cls)


def _compare(m: nn.Module, ref: nn.Module, qual: str, cls: type | None = None) -> None:
    name = type(m).__name__
    if type(m) is not (cls or type(ref)):
        raise ModuleSpecError(qual, f"({name}) is not what the spec builds there ({type(ref).__name__}); "
                                    "a spec cannot carry a replaced sub-layer")
    _check_plain(m, qual)
    for kind in ("_parameters", "_buffers", "_modules"):
        mine, want = m.__dict__[kind], ref.__dict__[kind]
        if list(mine) != list(want):
            extra = sorted(set(mine) - set(want)) or sorted(set(want) - set(mine)) or list(mine)
            what = kind.strip("_")[:-1]
            raise ModuleSpecError(qual, f"({name}) has {what}(s) {', '.join(extra)} that differ from what its "
                                        f"arguments build ({', '.join(want) or 'none'}); a spec cannot carry them")
        if kind == "_modules":
            continue
        for key, a in mine.items():
            b = want[key]
            if (a is None) != (b is None) or (a is not None and tuple(a.shape) != tuple(b.shape)):
                got = None if a is None else list(a.shape)
                raise ModuleSpecError(qual, f"({name}) has {key} of shape {got}; its arguments build "
                                            f"{None if b is None else list(b.shape)}")
            if kind == "_parameters" and a is not None and not a.requires_grad:
                raise ModuleSpecError(qual, f"({name}) has a frozen parameter {key} (requires_grad=False); "
                                            "a spec trains every parameter")
    if m._non_persistent_buffers_set != ref._non_persistent_buffers_set:
        raise ModuleSpecError(qual, f"({name}) has buffers whose persistence differs from what the spec builds")
    for key, b in ref.__dict__.items():
        if key in _BOOKKEEPING:
            continue
        if key not in m.__dict__:
            raise ModuleSpecError(qual, f"({name}) lacks attribute {key!r} that its layer type has")
        a = m.__dict__[key]
        if not (a is b or _equal(canonical(key, a), canonical(key, b))):
            raise ModuleSpecError(qual, f"({name}) has {key}={a!r} but its arguments build {key}={b!r}; "
                                        "a spec cannot carry that change")
    for key, child in m._modules.items():
        _compare(child, ref._modules[key], f"{qual}.{key}")


# ------------------------------------------------------------------------------ model -> spec
def _plain_sequential(m: nn.Module) -> bool:
    """nn.Sequential, or a subclass that only adds an __init__ (its forward is Sequential's)."""
    cls = type(m)
    return isinstance(m, nn.Sequential) and cls.forward is nn.Sequential.forward \
        and cls.__call__ is nn.Module.__call__


def _flatten(seq: nn.Module, qual: str) -> list[tuple[str, str, nn.Module]]:
    """(key, qualified name, layer) of a Sequential, nested Sequentials inlined."""
    if not _plain_sequential(seq):
        raise _kind_error(seq, qual)
    _check_plain(seq, qual)
    if seq._parameters or seq._buffers:
        raise ModuleSpecError(qual, "(Sequential) has parameters or buffers of its own; a spec cannot carry them")
    out = []
    for key, child in seq._modules.items():
        sub = f"{qual}.{key}"
        if child is None:
            raise ModuleSpecError(sub, "is None; a spec has no empty layers")
        if isinstance(child, nn.Sequential):
            out.extend((f"{key}.{k}", q, m) for k, q, m in _flatten(child, sub))
        else:
            out.append((key, sub, child))
    return out


def _chain_input(names: list[str]) -> str:
    for candidate in ("x", "input", "inputs", "data"):
        if candidate not in names:
            return candidate
    return "x_" + "_".join(names)[:50]


def _sequential(seq: nn.Module, qual: str, verify: bool) -> dict:
    layers = _flatten(seq, qual)
    if not layers:
        raise ModuleSpecError(qual, "is an empty Sequential; a spec needs at least one layer")
    entries = [layer_entry(m, q, verify) for _, q, m in layers]
    keys = [k for k, _, _ in layers]
    named = keys != [str(i) for i in range(len(keys))] and all(
        graph._NAME.match(k) and k not in graph._RESERVED_NAMES for k in keys)
    if not named:
        return {"layers": entries}
    prev = _chain_input(keys)
    nodes, first = [], prev
    for key, entry in zip(keys, entries):
        nodes.append({"name": key, "inputs": [prev], **entry})
        prev = key
    return {"graph": {"inputs": [first], "nodes": nodes, "outputs": prev}}


def _graph(gm: graph.GraphModule, qual: str, verify: bool) -> dict:
    if type(gm) is not graph.GraphModule:
        raise _kind_error(gm, qual)
    _check_plain(gm, qual)
    plan = gm.plan
    layer_names = [n.name for n in plan.nodes if n.cls is not None]
    if gm._parameters or gm._buffers or list(gm._modules) != layer_names:
        raise ModuleSpecError(qual, "(GraphModule) has modules, parameters or buffers that are not its plan's "
                                    "layer nodes; a spec cannot carry them")
    nodes = []
    for node in plan.nodes:
        if node.cls is None:
            nodes.append({"name": node.name, "op": node.op, "inputs": list(node.inputs),
                          **copy.deepcopy(node.kwargs)})
            continue
        child = gm._modules[node.name]
        if child is None:
            raise ModuleSpecError(f"{qual}.{node.name}", "is None; a graph node needs a layer")
        entry = layer_entry(child, f"{qual}.{node.name}", verify)
        nodes.append({"name": node.name, "inputs": list(node.inputs), **entry})
    outputs = dict(plan.outputs) if isinstance(plan.outputs, dict) else plan.outputs
    return {"graph": {"inputs": list(plan.inputs), "nodes": nodes, "outputs": outputs}}


def structure(module: nn.Module, verify: bool = True) -> dict:
    """The layers/graph spec read from ``module`` itself (ignores a build_model tag)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"to_spec takes an engine.nn.Module, not {type(module).__name__}")
    if isinstance(module, graph.GraphModule):
        spec = _graph(module, ROOT, verify)
    elif isinstance(module, nn.Sequential):
        spec = _sequential(module, ROOT, verify)
    else:
        spec = {"layers": [layer_entry(module, ROOT, verify)]}
    try:
        if "layers" in spec:
            graph.parse_layers(spec["layers"])
        else:
            graph.parse_graph(spec["graph"])
    except SpecError as exc:
        raise ModuleSpecError(ROOT, f"gives a spec the API would reject: {exc}") from exc
    return spec


def tag(module: nn.Module, spec: Any) -> None:
    """Remember on a freshly built module the spec it came from (see the module docstring)."""
    try:
        built = structure(module, verify=False)
    except SpecError:
        return
    module.__dict__[TAG] = copy.deepcopy(spec)
    module.__dict__[STRUCTURE] = built


def to_spec(module: nn.Module) -> dict:
    """The JSON model spec of ``module``, the inverse of ``build_model``: the original spec for a
    module ``build_model`` returned (while its structure is unchanged), else the ``layers`` form
    for a Sequential of engine.nn layers (the ``graph`` form for one with named children, or for
    a graph model). ``build_model(to_spec(m))`` builds a module with ``m``'s state_dict keys
    (nested Sequentials flattened aside) and shapes, so ``load_state_dict(m.state_dict())`` makes
    them compute the same. Raises ``ModuleSpecError`` (a ``SpecError``) naming the sub-module
    that no spec can express (``model.2 (MyBlock) has a custom forward; ...``)."""
    spec = structure(module, verify=True)
    original = module.__dict__.get(TAG)
    if original is not None and module.__dict__.get(STRUCTURE) == spec:
        return copy.deepcopy(original)
    return spec
