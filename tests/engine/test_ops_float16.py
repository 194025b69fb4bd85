"""float16 against torch: the elementwise and reduction harnesses at half precision.

Tolerance: rtol 1e-2 / atol 1e-3 (conftest.TOLS["float16"]; float16 has an 11-bit
significand, eps ~ 1e-3, and engine and torch may round intermediates differently:
numpy's half loops compute in float32 per op, torch's CPU kernels upcast too, but a
composite op such as gelu rounds to half between its steps). Gradients are compared
at the same tolerance, except the ops in F16_LOOSE. Every op of both harnesses runs.
"""
import pytest

from tests.engine.test_ops_elementwise import BINARY, UNARY
from tests.engine.test_ops_reduction import RED

# gelu(approximate="tanh") is composed of half-precision steps in engine but is one
# float32 kernel in torch: its gradient differs by up to ~2%.
F16_LOOSE = {"gelu_tanh": 3e-2}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_float16(helper_test_op, name):
    rtol = F16_LOOSE.get(name)
    helper_test_op(BINARY[name], ((3, 4), (4,)), dtype="float16", rtol=rtol,
                   atol=None if rtol is None else 1e-2)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_float16(helper_test_op, name):
    fn, lo, hi = UNARY[name]
    rtol = F16_LOOSE.get(name)
    helper_test_op(fn, [(3, 5)], dtype="float16", low=lo, high=hi, rtol=rtol,
                   atol=None if rtol is None else 1e-2)


@pytest.mark.parametrize("dim", [None, 1], ids=str)
@pytest.mark.parametrize("name", sorted(RED))
def test_reduction_float16(helper_test_op, name, dim):
    helper_test_op(lambda m, x: RED[name](m, x, dim, False), [(3, 4, 5)], dtype="float16")
