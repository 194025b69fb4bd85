"""gradcheck / gradgradcheck: compare autograd's Jacobian with central finite differences.

Like torch.autograd.gradcheck: use float64 inputs; every output element's
vector-Jacobian product is checked against the numerical Jacobian.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck"]


class GradcheckError(RuntimeError):
    """Raised by gradcheck when analytical and numerical gradients disagree."""


def _outputs(fn: Callable, inputs: tuple) -> list:
    from engine.tensor import Tensor

    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, Tensor) and o._data.dtype.kind == "f"]


def _numerical(fn: Callable, inputs: tuple, i: int, eps: float) -> list:
    """Jacobian columns d out_k / d inputs[i] by central differences, one per output."""
    from engine.backend import to_numpy

    x = inputs[i]
    flat = x._data.reshape(-1)
    cols = None
    # grad mode stays on: gradgradcheck's function differentiates inside
    for j in range(flat.size):
        orig = flat[j].item()
        flat[j] = orig + eps
        plus = [to_numpy(o._data).astype(np.float64).ravel() for o in _outputs(fn, inputs)]
        flat[j] = orig - eps
        minus = [to_numpy(o._data).astype(np.float64).ravel() for o in _outputs(fn, inputs)]
        flat[j] = orig
        if cols is None:
            cols = [np.zeros((p.size, flat.size)) for p in plus]
        for k, (p, m) in enumerate(zip(plus, minus)):
            cols[k][:, j] = (p - m) / (2 * eps)
    return cols or []


def gradcheck(func: Callable, inputs: Any, *, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True, nondet_tol: float = 0.0,
              check_undefined_grad: bool = True, fast_mode: bool = False) -> bool:
    """True when autograd's gradients of ``func(*inputs)`` match finite differences."""
    from engine.autograd import grad as _grad
    from engine.backend import to_numpy
    from engine.tensor import Tensor

    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    diff = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x._rg]
    for i in diff:
        if inputs[i]._data.dtype != np.float64:
            import warnings

            warnings.warn(f"Input #{i} requires gradient and is not a double precision floating "
                          "point. This check will likely fail if all the inputs are not of "
                          "double precision floating point.", stacklevel=2)
        if not inputs[i]._data.flags.writeable:
            raise ValueError("gradcheck needs writeable input arrays")
    outs = _outputs(func, inputs)
    for i in diff:
        numerical = _numerical(func, inputs, i, eps)
        x = inputs[i]
        for k, o in enumerate(outs):
            n_out = o._data.size
            analytical = np.zeros((n_out, x._data.size))
            for r in range(n_out):
                go = np.zeros(n_out)
                go[r] = 1.0
                gt = Tensor._wrap(_on(o, go.reshape(o._data.shape).astype(o._data.dtype)))
                if not o._rg:
                    continue
                (g,) = _grad(o, x, gt, retain_graph=True, allow_unused=True)
                if g is not None:
                    analytical[r] = to_numpy(g._data).astype(np.float64).ravel()
            num = numerical[k]
            if not np.allclose(analytical, num, rtol=rtol, atol=atol):
                if raise_exception:
                    raise GradcheckError(
                        f"Jacobian mismatch for output {k} with respect to input {i},\n"
                        f"numerical:{num}\nanalytical:{analytical}\n")
                return False
    return True


def _on(like: Any, a: np.ndarray) -> Any:
    from engine.backend import move_to

    return a if type(like._data) is np.ndarray else move_to(a, like.device)


def gradgradcheck(func: Callable, inputs: Any, grad_outputs: Any = None, *, eps: float = 1e-6,
                  atol: float = 1e-5, rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """gradcheck of the first derivative (built with create_graph) with respect to the inputs."""
    from engine.autograd import grad as _grad
    from engine.random import Generator
    from engine.tensor import Tensor

    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    outs = _outputs(func, inputs)
    gen = Generator().manual_seed(0)
    if grad_outputs is None:
        grad_outputs = [Tensor._wrap(_on(o, gen._np.standard_normal(o._data.shape)
                                         .astype(o._data.dtype))) for o in outs]
    diff = [x for x in inputs if isinstance(x, Tensor) and x._rg]

    def first(*xs: Any) -> tuple:
        os = _outputs(func, xs)
        ds = [x for x in xs if isinstance(x, Tensor) and x._rg]
        gs = _grad(os, ds, grad_outputs, create_graph=True, allow_unused=True)
        return tuple(g for g in gs if g is not None)

    _ = diff
    return gradcheck(first, inputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception)
