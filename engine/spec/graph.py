"""The ``layers`` and ``graph`` spec forms parsed into one plan of named nodes, and the
Module that runs a graph plan.

A ``layers`` spec is a chain of nodes named ``0``, ``1``, ... built as ``nn.Sequential``
(state_dict keys ``0.weight``); a ``graph`` spec's layer nodes are registered under their
node names (keys ``conv1.weight``), so keys are stable whatever the order of the nodes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from engine import nn
from engine.spec.errors import SpecError
from engine.spec.layers import _check_json, check_layer, construct, layer_types
from engine.spec.ops import OPS, REQUIRED

MAX_NODES = 2000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_RESERVED_NAMES = frozenset(dir(nn.Module())) | {"nodes", "plan"}
_GRAPH_KEYS = frozenset({"inputs", "nodes", "outputs"})


@dataclass
class Node:
    name: str
    path: tuple  # JSON path of the node inside the spec
    inputs: list[str]
    cls: type | None = None  # a layer ...
    op: str | None = None  # ... or a functional op
    kwargs: dict = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.cls.__name__ if self.cls is not None else self.op


@dataclass
class Plan:
    inputs: list[str]
    nodes: list[Node]
    outputs: str | dict[str, str]  # one node, or head name -> node
    sequential: bool

    def heads(self) -> dict[str, str]:
        return self.outputs if isinstance(self.outputs, dict) else {"output": self.outputs}


def parse_layers(layers: Any, path: tuple = ("layers",)) -> Plan:
    if not isinstance(layers, list) or not layers:
        raise SpecError(path, "must be a non-empty list of layers")
    if len(layers) > MAX_NODES:
        raise SpecError(path, f"has {len(layers)} layers; at most {MAX_NODES} are allowed")
    types = layer_types()
    nodes, prev = [], "input"
    for i, entry in enumerate(layers):
        cls, kwargs = check_layer(path + (i,), entry, types)
        nodes.append(Node(str(i), path + (i,), [prev], cls=cls, kwargs=kwargs))
        prev = str(i)
    return Plan(["input"], nodes, prev, sequential=True)


def _names(path: tuple, value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise SpecError(path, f"must be a non-empty list of {what} names")
    return value


def _op_node(path: tuple, entry: dict, name: str, inputs: list[str]) -> Node:
    op_name = entry["op"]
    op = OPS.get(op_name) if isinstance(op_name, str) else None
    if op is None:
        raise SpecError(path + ("op",), f"unknown op {str(op_name)[:80]!r}; known: {', '.join(sorted(OPS))}")
    lo, hi = op.arity
    if not lo <= len(inputs) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise SpecError(path + ("inputs",), f"{op_name} takes {want} inputs, got {len(inputs)}")
    kwargs = {k: v for k, v in entry.items() if k not in ("name", "op", "inputs")}
    for key, value in kwargs.items():
        if key not in op.args:
            raise SpecError(path + (str(key)[:80],), f"{op_name} has no argument {str(key)[:80]!r}; "
                                                     f"it takes {', '.join(op.args) or 'none'}")
        _check_json(path + (key,), value)
        if value is not None and not isinstance(value, (int, list)) or isinstance(value, bool) and key != "keepdim":
            raise SpecError(path + (key,), f"{key} must be an integer or a list of integers")
    missing = [k for k, d in op.args.items() if d is REQUIRED and k not in kwargs]
    if missing:
        raise SpecError(path, f"{op_name} needs argument(s) {', '.join(missing)}")
    return Node(name, path, inputs, op=op_name, kwargs=kwargs)


def parse_graph(graph: Any, path: tuple = ("graph",)) -> Plan:
    if not isinstance(graph, dict):
        raise SpecError(path, "must be an object with inputs, nodes and outputs")
    for key in graph:
        if key not in _GRAPH_KEYS:
            raise SpecError(path + (str(key)[:80],), f"unknown key; a graph has {', '.join(sorted(_GRAPH_KEYS))}")
    inputs = _names(path + ("inputs",), graph.get("inputs", ["x"]), "input")
    entries = graph.get("nodes")
    if not isinstance(entries, list) or not entries:
        raise SpecError(path + ("nodes",), "must be a non-empty list of nodes")
    if len(entries) > MAX_NODES:
        raise SpecError(path + ("nodes",), f"has {len(entries)} nodes; at most {MAX_NODES} are allowed")
    types, known, nodes = layer_types(), set(), []
    for i, name in enumerate(inputs):
        if not _NAME.match(name) or name in known:
            raise SpecError(path + ("inputs", i), f"{name[:80]!r} must be a unique identifier")
        known.add(name)
    for i, entry in enumerate(entries):
        npath = path + ("nodes", i)
        if not isinstance(entry, dict):
            raise SpecError(npath, "each node must be an object with a name, inputs and a type or an op")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.match(name) or name in _RESERVED_NAMES:
            raise SpecError(npath + ("name",), "is required: a letter or _ then letters, digits or _ "
                                               "(at most 64), not a Module attribute name")
        if name in known:
            raise SpecError(npath + ("name",), f"{name!r} is already used by an earlier node or input")
        node_inputs = _names(npath + ("inputs",), entry.get("inputs"), "node or input")
        for j, ref in enumerate(node_inputs):
            if ref not in known:
                raise SpecError(npath + ("inputs", j), f"{ref[:80]!r} is not an input or an earlier node")
        if ("type" in entry) == ("op" in entry):
            raise SpecError(npath, "needs exactly one of 'type' (an engine.nn layer) or 'op' (a functional op)")
        if "op" in entry:
            nodes.append(_op_node(npath, entry, name, node_inputs))
        else:
            cls, kwargs = check_layer(npath, entry, types, reserved=frozenset({"name", "inputs"}))
            nodes.append(Node(name, npath, node_inputs, cls=cls, kwargs=kwargs))
        known.add(name)
    outputs = graph.get("outputs", nodes[-1].name)
    if isinstance(outputs, str):
        if outputs not in known:
            raise SpecError(path + ("outputs",), f"{outputs[:80]!r} is not a node")
    elif isinstance(outputs, dict) and outputs and len(outputs) <= 64:
        for head, ref in outputs.items():
            if not _NAME.match(head):
                raise SpecError(path + ("outputs", head[:80]), "head names are identifiers (letters, digits, _)")
            if not isinstance(ref, str) or ref not in known:
                raise SpecError(path + ("outputs", head), f"must name a node, not {str(ref)[:80]!r}")
    else:
        raise SpecError(path + ("outputs",), "must be a node name or an object of head name -> node name")
    return Plan(inputs, nodes, outputs, sequential=False)


class GraphModule(nn.Module):
    """Runs a graph plan: inputs positionally in the graph's input order; returns a tensor,
    or a dict of head name -> tensor when the graph has named outputs."""

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        object.__setattr__(self, "plan", plan)
        for node in plan.nodes:
            if node.cls is not None:
                self.add_module(node.name, construct(node.path, node.cls, node.kwargs))

    def forward(self, *inputs: Any) -> Any:
        plan = self.plan
        if len(inputs) != len(plan.inputs):
            raise TypeError(f"the graph takes {len(plan.inputs)} inputs ({', '.join(plan.inputs)}), got {len(inputs)}")
        values = dict(zip(plan.inputs, inputs))
        for node in plan.nodes:
            args = [values[n] for n in node.inputs]
            if node.cls is not None:
                if node.cls is nn.MultiheadAttention and len(args) == 1:
                    args = args * 3  # self-attention
                values[node.name] = getattr(self, node.name)(*args)
            else:
                values[node.name] = OPS[node.op].run(args, **node.kwargs)
        if isinstance(plan.outputs, dict):
            return {head: values[ref] for head, ref in plan.outputs.items()}
        return values[plan.outputs]


def build(plan: Plan) -> nn.Module:
    if plan.sequential:
        return nn.Sequential(*(construct(n.path, n.cls, n.kwargs) for n in plan.nodes))
    return GraphModule(plan)
