"""JSON model specs -> engine.nn Modules, with static shape inference.

Three forms: ``{"layers": [...]}`` (a Sequential), ``{"graph": {...}}`` (a DAG of named
layer and op nodes, several inputs and named outputs) and ``{"zoo": name, "args": {...}}``.
``validate(spec, input_shape)`` checks a spec and infers every node's shape, parameters and
FLOPs without allocating weights (what the API does at submit time); ``build_model(spec)``
constructs the Module (what the worker does); ``to_spec(module)`` is its inverse, the spec of
a Module built in Python (a Sequential of engine.nn layers, or anything build_model returned),
which is what the Python client sends. Every problem is a ``SpecError`` whose
``path`` points at the offending field.
"""
from engine.spec.errors import SpecError
from engine.spec.export import ModuleSpecError, to_spec
from engine.spec.graph import GraphModule, Plan
from engine.spec.layers import layer_types
from engine.spec.model import SYMBOLIC_BATCH, Report, build_model, infer, parse, validate
from engine.spec.ops import OPS
from engine.spec.zoo import DEFAULT_LOSS
from engine.spec.zoo import MODELS as ZOO

__all__ = ["DEFAULT_LOSS", "OPS", "SYMBOLIC_BATCH", "ZOO", "GraphModule", "ModuleSpecError", "Plan", "Report",
           "SpecError", "build_model", "infer", "layer_types", "parse", "to_spec", "validate"]
