"""Spec -> plan -> (static report | Module): the entry points of engine.spec."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from engine import nn
from engine.spec import export, graph, zoo
from engine.spec.errors import SpecError
from engine.spec.ops import OPS, op_flops
from engine.spec.shapes import SYMBOLIC_BATCH, ShapeError, fmt, infer_layer

FORMS = ("layers", "graph", "zoo")
BYTES_PER_ELEMENT = 4  # float32


@dataclass
class Report:
    """What validation knows about a model without building it. Shapes include the batch
    dimension (None when inferred with the symbolic batch); costs are per sample."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    parameters: int = 0
    flops_per_sample: int = 0
    activation_bytes_per_sample: int = 0
    expanded: dict | None = None  # the layers/graph spec a zoo spec stands for

    @property
    def parameter_bytes(self) -> int:
        return self.parameters * BYTES_PER_ELEMENT

    def totals(self) -> dict[str, int]:
        return {"parameters": self.parameters, "parameter_bytes": self.parameter_bytes,
                "flops_per_sample": self.flops_per_sample,
                "activation_bytes_per_sample": self.activation_bytes_per_sample}


def parse(spec: Any, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None) -> graph.Plan:
    """Check a spec's structure, types and arguments; a zoo spec is expanded for the input."""
    if not isinstance(spec, dict):
        raise SpecError((), "the model spec must be an object")
    forms = [f for f in FORMS if f in spec]
    if len(forms) != 1:
        raise SpecError((), f"the model spec needs exactly one of {', '.join(FORMS)}")
    form = forms[0]
    if form == "zoo":
        expanded = zoo.expand(spec, input_shape, num_classes)
        try:
            return parse(expanded)
        except SpecError as exc:
            raise SpecError(("args",), f"these arguments give an invalid model: {exc}") from exc
    extra = set(spec) - {form}
    if extra:
        raise SpecError((str(sorted(extra)[0])[:80],), f"unknown key next to {form!r}")
    return graph.parse_layers(spec["layers"]) if form == "layers" else graph.parse_graph(spec["graph"])


def _clean(shape: Any, batch: int) -> Any:
    if isinstance(shape, list):
        return [_clean(s, batch) for s in shape]
    return [None if d == batch else d for d in shape]


def infer(plan: graph.Plan, input_shapes: dict[str, tuple[int, ...]], batch: int = SYMBOLIC_BATCH) -> Report:
    """Every node's output shape, parameters and FLOPs for inputs of ``input_shapes``
    (sample shapes, without the batch dimension). Raises SpecError naming the node."""
    values: dict[str, Any] = {}
    for name in plan.inputs:
        if name not in input_shapes:
            raise SpecError(("graph", "inputs"), f"no shape for input {name!r}; the data has "
                                                 f"{', '.join(input_shapes) or 'none'}")
        values[name] = (batch, *input_shapes[name])
    report = Report()
    for node in plan.nodes:
        xs = [values[n] for n in node.inputs]
        where = f"{node.type} node {node.name!r}" if not plan.sequential else f"layer {node.name} ({node.type})"
        try:
            if node.cls is not None:
                out, params, flops = infer_layer(node.type, node.kwargs, xs)
            else:
                if any(isinstance(x, list) for x in xs) and node.op != "getitem":
                    raise ShapeError("receives several tensors; pick one with a 'getitem' node first")
                out = OPS[node.op].shape(xs, **node.kwargs)
                params, flops = 0, op_flops(out)
        except ShapeError as exc:
            raise SpecError(node.path, f"{where}: {exc}") from exc
        except (KeyError, TypeError, ValueError, IndexError, OverflowError, ZeroDivisionError) as exc:
            raise SpecError(node.path, f"{where}: invalid arguments ({type(exc).__name__}: {exc})") from exc
        values[node.name] = out
        outs = out if isinstance(out, list) else [out]
        numel = sum(math.prod(o) for o in _leaves(outs))
        report.rows.append({"name": node.name, "type": node.type, "inputs": list(node.inputs),
                            "output_shape": _clean(out, batch), "parameters": params,
                            "flops_per_sample": flops // batch})
        report.parameters += params
        report.flops_per_sample += flops // batch
        report.activation_bytes_per_sample += numel * BYTES_PER_ELEMENT // batch
    for head, ref in plan.heads().items():
        if isinstance(values[ref], list):
            raise SpecError(("graph", "outputs", head) if not plan.sequential else ("layers",),
                            f"output {ref!r} is several tensors {fmt(values[ref], batch)}; pick one with 'getitem'")
        report.outputs[head] = values[ref]
    return report


def _leaves(shapes: list) -> list:
    out = []
    for s in shapes:
        out.extend(_leaves(s) if isinstance(s, list) else [s])
    return out


def validate(spec: Any, input_shape: Any = None, *, num_classes: int | None = None,
             batch: int = SYMBOLIC_BATCH) -> Report:
    """Check a spec without building it. With ``input_shape`` (a sample's shape, or a dict of
    input name -> shape for several inputs) every node's shape is inferred too."""
    sample = None
    if isinstance(input_shape, (list, tuple)):
        sample = tuple(input_shape)
    plan = parse(spec, sample, num_classes)
    report = Report()
    if input_shape is not None:
        shapes = dict(input_shape) if isinstance(input_shape, dict) else {plan.inputs[0]: sample}
        if not isinstance(input_shape, dict) and len(plan.inputs) != 1:
            raise SpecError(("graph", "inputs"), f"the graph takes {len(plan.inputs)} inputs but the data has one")
        try:
            report = infer(plan, {k: tuple(v) for k, v in shapes.items()}, batch)
        except SpecError as exc:
            if "zoo" in spec:
                raise SpecError(("args",), f"these arguments do not fit the data: {exc.message}") from exc
            raise
    if "zoo" in spec:
        report.expanded = zoo.expand(spec, sample, num_classes)
    return report


def build_model(spec: Any, input_shape: Any = None, *, num_classes: int | None = None) -> nn.Module:
    """Build the Module a spec describes (a zoo spec needs the dataset's sample shape).

    The module remembers its spec (``module._trainyard_spec``, a copy, beside
    ``module._trainyard_structure``) so that ``to_spec(module)`` gives back exactly this spec,
    zoo and graph forms included, for as long as the module's layers and their arguments are
    unchanged (see engine.spec.export)."""
    sample = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    module = graph.build(parse(spec, sample, num_classes))
    export.tag(module, spec)
    return module
