"""JSON model specs -> engine.nn Modules.

``validate(spec)`` checks a spec without allocating weights (what the API does at submit
time); ``build_model(spec)`` constructs the Module (what the worker does). Today the
``{"layers": [...]}`` form is supported; ``graph`` and ``zoo`` are rejected with a clear
error until they land.
"""
from engine.spec.errors import SpecError
from engine.spec.sequential import build_model, validate

__all__ = ["SpecError", "build_model", "validate"]
