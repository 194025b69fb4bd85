"""Elementwise ops against torch: values, dtypes and gradients, with broadcasting, 0-d and empty."""
import math

import numpy as np
import pytest

SHAPES_BINARY = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((), (3,)), ((0, 3), (3,)),
                 ((2, 1, 3), ())]

BINARY = {
    "add": lambda m, a, b: a + b,
    "add_alpha": lambda m, a, b: m.add(a, b, alpha=2.5),
    "sub": lambda m, a, b: a - b,
    "sub_alpha": lambda m, a, b: m.sub(a, b, alpha=0.5),
    "mul": lambda m, a, b: a * b,
    "div": lambda m, a, b: a / b,
    "maximum": lambda m, a, b: m.maximum(a, b),
    "minimum": lambda m, a, b: m.minimum(a, b),
    "where": lambda m, a, b: m.where(a > 0, a, b),
    "lerp": lambda m, a, b: m.lerp(a, b, 0.3),
    "lerp_t": lambda m, a, b: m.lerp(a, b, b.sigmoid()),
    "pow": lambda m, a, b: a.abs().add(0.5) ** b,
    "remainder": lambda m, a, b: m.remainder(a, b.abs() + 0.5),
    "atan_like": lambda m, a, b: (a * b).tanh() + a.sigmoid() * b,
}


@pytest.mark.parametrize("shapes", SHAPES_BINARY, ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_binary(helper_test_op, name, shapes, dtype):
    helper_test_op(BINARY[name], shapes, dtype=dtype)


UNARY = {
    "neg": (lambda m, x: -x, -2, 2), "abs": (lambda m, x: m.abs(x), -2, 2),
    "sign": (lambda m, x: m.sign(x), -2, 2), "exp": (lambda m, x: m.exp(x), -2, 2),
    "log": (lambda m, x: m.log(x), 0.1, 3), "log1p": (lambda m, x: m.log1p(x), -0.5, 2),
    "expm1": (lambda m, x: m.expm1(x), -2, 2), "sqrt": (lambda m, x: m.sqrt(x), 0.1, 3),
    "rsqrt": (lambda m, x: m.rsqrt(x), 0.1, 3), "sin": (lambda m, x: m.sin(x), -3, 3),
    "cos": (lambda m, x: m.cos(x), -3, 3), "tanh": (lambda m, x: m.tanh(x), -3, 3),
    "sigmoid": (lambda m, x: m.sigmoid(x), -8, 8), "relu": (lambda m, x: m.relu(x), -2, 2),
    "gelu": (lambda m, x: m.nn.functional.gelu(x) if m.__name__ == "torch" else m.gelu(x), -4, 4),
    "gelu_tanh": (lambda m, x: m.nn.functional.gelu(x, approximate="tanh") if m.__name__ == "torch"
                  else m.gelu(x, approximate="tanh"), -4, 4),
    "silu": (lambda m, x: m.nn.functional.silu(x) if m.__name__ == "torch" else m.silu(x), -4, 4),
    "softplus": (lambda m, x: m.nn.functional.softplus(x) if m.__name__ == "torch"
                 else m.softplus(x), -30, 30),
    "softplus_beta": (lambda m, x: m.nn.functional.softplus(x, beta=2.0, threshold=5.0)
                      if m.__name__ == "torch" else m.softplus(x, beta=2.0, threshold=5.0), -6, 6),
    "clamp": (lambda m, x: m.clamp(x, -0.5, 0.7), -2, 2),
    "clamp_min": (lambda m, x: x.clamp(min=0.1), -2, 2),
    "clamp_max": (lambda m, x: x.clamp(max=0.1), -2, 2),
    "square": (lambda m, x: m.square(x), -2, 2), "reciprocal": (lambda m, x: m.reciprocal(x), 0.5, 2),
    "erf": (lambda m, x: m.erf(x), -5, 5), "pow_scalar": (lambda m, x: x ** 3, -2, 2),
    "pow_half": (lambda m, x: x ** 0.5, 0.1, 2), "pow_2": (lambda m, x: x ** 2, -2, 2),
    "rpow": (lambda m, x: 2.0 ** x, -2, 2), "rsub": (lambda m, x: 1 - x, -2, 2),
    "rdiv": (lambda m, x: 3 / x, 0.5, 2), "floor": (lambda m, x: m.floor(x), -2, 2),
    "round": (lambda m, x: m.round(x), -2, 2), "tan": (lambda m, x: m.tan(x), -1, 1),
    "atan": (lambda m, x: m.atan(x), -2, 2), "log2": (lambda m, x: m.log2(x), 0.1, 3),
}


@pytest.mark.parametrize("shape", [(3, 4), (), (0,), (2, 3, 5)], ids=str)
@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_unary(helper_test_op, name, shape, dtype):
    fn, lo, hi = UNARY[name]
    helper_test_op(fn, [shape], dtype=dtype, low=lo, high=hi)


def test_erf_precision_far_tails(torch):
    import engine

    x = np.concatenate([np.linspace(-7, 7, 2001), [0.0, 0.46875, -0.46875, 4.0, -4.0, 30, -30]])
    np.testing.assert_allclose(engine.erf(engine.tensor(x)).numpy(),
                               torch.erf(torch.tensor(x)).numpy(), rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "floordiv", "mod", "eq", "lt", "ge",
                                "maximum"])
@pytest.mark.parametrize("combo", ["i64_f", "i32_i", "b_i", "f32_f64_0d", "i64_f32", "f16_f32",
                                   "b_b", "i32_f64_0d", "f32_i", "i64_i32"])
def test_type_promotion(torch, op, combo):
    import engine

    def mk(lib, kind):
        return {
            "i64": lambda: lib.tensor([1, 2, -3]),
            "i32": lambda: lib.tensor([1, 2, -3], dtype=lib.int32),
            "b": lambda: lib.tensor([True, False, True]),
            "f32": lambda: lib.tensor([1.5, -2.0, 3.0]),
            "f16": lambda: lib.tensor([1.5, -2.0, 3.0], dtype=lib.float16),
            "f64_0d": lambda: lib.tensor(2.5, dtype=lib.float64),
            "f": lambda: 2.5, "i": lambda: 2,
        }[kind]()

    a_kind, b_kind = combo.split("_", 1)
    fns = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "div": lambda a, b: a / b, "floordiv": lambda a, b: a // b, "mod": lambda a, b: a % b,
           "eq": lambda a, b: a == b, "lt": lambda a, b: a < b, "ge": lambda a, b: a >= b,
           "maximum": lambda a, b: (a.maximum(b) if not isinstance(b, (int, float)) else a + 0 * b)}
    results = []
    for lib in (torch, engine):
        a, b = mk(lib, a_kind), mk(lib, b_kind)
        try:
            results.append(("ok", fns[op](a, b)))
        except (RuntimeError, TypeError) as e:
            results.append(("err", type(e).__name__))
    (tk, tv), (ek, ev) = results
    assert tk == ek, (results)
    if tk == "ok":
        assert str(ev.dtype).split(".")[1] == str(tv.dtype).split(".")[1]
        np.testing.assert_allclose(ev.numpy().astype(np.float64),
                                   tv.numpy().astype(np.float64), rtol=1e-3)


def test_comparisons_and_logic(helper_test_op):
    for f in (lambda m, a, b: a == b, lambda m, a, b: a != b, lambda m, a, b: a < b,
              lambda m, a, b: a <= b, lambda m, a, b: a > b, lambda m, a, b: a >= b,
              lambda m, a, b: m.logical_and(a > 0, b > 0), lambda m, a, b: (a > 0) | (b > 0),
              lambda m, a, b: (a > 0) ^ (b > 0), lambda m, a, b: ~(a > 0),
              lambda m, a, b: m.logical_not(a > 0), lambda m, a, b: m.logical_or(a, b)):
        helper_test_op(f, [(3, 4), (4,)], low=-1, high=1, dtype="int64", grad=False)


def test_isnan_isfinite(torch):
    import engine

    x = [1.0, math.nan, math.inf, -math.inf, 0.0]
    for name in ("isnan", "isfinite", "isinf"):
        np.testing.assert_array_equal(getattr(engine, name)(engine.tensor(x)).numpy(),
                                      getattr(torch, name)(torch.tensor(x)).numpy())


def test_int_ops_keep_int(helper_test_op):
    helper_test_op(lambda m, a, b: a * b + a // b - a % b, [(4,), (4,)], dtype="int64", low=1,
                   high=9, grad=False)
    helper_test_op(lambda m, a, b: a / b, [(4,), (4,)], dtype="int64", low=1, high=9, grad=False)
    helper_test_op(lambda m, a, b: m.exp(a) + m.sqrt(b), [(4,), (4,)], dtype="int64", low=1,
                   high=3, grad=False)


def test_clamp_tensor_bounds(helper_test_op):
    helper_test_op(lambda m, x, lo, hi: m.clamp(x, min=lo, max=hi + 1.0), [(3, 4), (4,), (3, 1)])


def test_sigmoid_extreme_inputs(torch):
    import engine

    x = np.array([-1000.0, -50.0, -30.0, 0.0, 30.0, 1000.0])
    for dt in ("float64", "float32"):
        np.testing.assert_allclose(engine.sigmoid(engine.tensor(x.astype(dt))).numpy(),
                                   torch.sigmoid(torch.tensor(x.astype(dt))).numpy(), rtol=1e-6)


def test_pow_int_negative_raises(torch):
    import engine

    with pytest.raises(RuntimeError):
        torch.tensor([1, 2]) ** -1
    with pytest.raises(RuntimeError):
        engine.tensor([1, 2]) ** -1


def test_pow_zero_base_grad(helper_test_op):
    helper_test_op(lambda m, a, b: a ** b, [(4,), (4,)],
                   inputs=[np.array([0.0, 0.0, 2.0, 3.0]), np.array([2.0, 0.0, 1.5, 0.0])])
