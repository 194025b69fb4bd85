"""Custom differentiable ops: subclass ``Function`` with static forward/backward, call ``apply``.

    class Exp(Function):
        @staticmethod
        def forward(ctx, x):
            y = x.exp()
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * y

A forward returning several tensors gets one graph node per output; each calls
``backward`` with zeros for the other outputs' gradients (backward is linear, so
the sum is exact) — a deliberate simplification of torch's single node.
"""
from __future__ import annotations

from typing import Any

from engine.autograd.grad_mode import STATE, no_grad

__all__ = ["Function", "FunctionCtx"]


class FunctionCtx:
    """The ``ctx`` passed to forward and backward."""

    def __init__(self) -> None:
        self._saved: tuple = ()
        self._versions: tuple = ()
        self.needs_input_grad: tuple = ()
        self.non_differentiable: set = set()
        self.materialize_grads = True
        self._freed = False

    def save_for_backward(self, *tensors: Any) -> None:
        self._saved = tensors
        self._versions = tuple(t._vc[0] if t is not None else None for t in tensors)

    @property
    def saved_tensors(self) -> tuple:
        if self._freed:
            from engine.autograd.graph import _FREED_MSG

            raise RuntimeError(_FREED_MSG)
        for t, v in zip(self._saved, self._versions):
            if t is not None and t._vc[0] != v:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by "
                    f"an inplace operation: is at version {t._vc[0]}; expected version {v} "
                    "instead.")
        return self._saved

    def mark_non_differentiable(self, *tensors: Any) -> None:
        self.non_differentiable.update(id(t) for t in tensors)

    def mark_dirty(self, *tensors: Any) -> None:
        pass

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = bool(value)


class _FunctionMeta(type):
    pass


class Function(metaclass=_FunctionMeta):
    """Base class for custom autograd ops (torch.autograd.Function)."""

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("You must implement the forward function for custom "
                                  "autograd.Function.")

    @staticmethod
    def backward(ctx: FunctionCtx, *grad_outputs: Any) -> Any:
        raise NotImplementedError("You must implement either the backward or vjp method for "
                                  "your custom autograd.Function to use it with backward mode AD.")

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        from engine.ops._util import attach, wrap
        from engine.tensor import Tensor

        ctx = FunctionCtx()
        tensor_args = [a if isinstance(a, Tensor) else None for a in args]
        ctx.needs_input_grad = tuple(bool(a is not None and a._rg) for a in tensor_args)
        with no_grad():
            out = cls.forward(ctx, *args, **kwargs)
        if not (STATE.enabled and any(ctx.needs_input_grad)):
            return out
        outs = out if isinstance(out, tuple) else (out,)
        shapes = [(o._data.shape, o._data.dtype) if isinstance(o, Tensor) else None for o in outs]
        n_in = len(args)
        results = []
        for k, o in enumerate(outs):
            if not isinstance(o, Tensor) or id(o) in ctx.non_differentiable or \
                    o._data.dtype.kind != "f":
                results.append(o)
                continue
            if any(o is a for a in args):  # returned an input: give it its own node
                o = wrap(o._data)

            def bw(g, _, k=k):
                grads_out = []
                for j, s in enumerate(shapes):
                    if j == k:
                        grads_out.append(g)
                    elif s is None:
                        grads_out.append(None)
                    elif ctx.materialize_grads:
                        from engine.backend import xp_of

                        grads_out.append(wrap(xp_of(g._data).zeros(s[0], dtype=s[1])))
                    else:
                        grads_out.append(None)
                res = cls.backward(ctx, *grads_out)
                if not isinstance(res, tuple):
                    res = (res,)
                if len(res) < n_in:
                    res = res + (None,) * (n_in - len(res))
                if len(res) > n_in:
                    raise RuntimeError(f"function {cls.__name__}Backward returned an incorrect "
                                       f"number of gradients (expected {n_in}, got {len(res)})")
                return tuple(r if tensor_args[i] is not None else None
                             for i, r in enumerate(res))
            attach(o, tensor_args, bw, f"{cls.__name__}Backward")
            results.append(o)
        return tuple(results) if isinstance(out, tuple) else results[0]
