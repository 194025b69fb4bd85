"""The sweep space (plan.sweep): grid order, reproducible random draws, each distribution's
bounds, the checks that name the field, and ASHA's rule."""
from __future__ import annotations

import math

import pytest

from config.settings import Settings
from plan import PlanError
from plan import sweep as sp

BASE = {"name": "b", "dataset_id": "d", "model": {"zoo": "mlp", "args": {"hidden": [8]}},
        "training": {"epochs": 3, "batch_size": 8, "optimizer": {"type": "Adam", "lr": 0.01}}}
LIMITS = Settings(max_sweep_trials=100, max_sweep_concurrent=16)


def sweep(method="random", **fields) -> sp.SweepCreate:
    return sp.SweepCreate(**{"name": "s", "base": BASE, "method": method, **fields})


def test_grid_enumerates_every_combination_last_parameter_fastest():
    space = sp.build(sweep("grid", parameters={
        "training.optimizer.lr": {"values": [0.1, 0.01]},
        "training.batch_size": {"values": [8, 16, 32]},
        "training.seed": {"value": 3},
    }), LIMITS)
    assert space.trials == [
        {"training.optimizer.lr": lr, "training.batch_size": bs, "training.seed": 3}
        for lr in (0.1, 0.01) for bs in (8, 16, 32)
    ]
    capped = sp.build(sweep("grid", run_cap=4, parameters={"training.optimizer.lr": {"values": [1, 2, 3, 4, 5]}}),
                      LIMITS)
    assert [t["training.optimizer.lr"] for t in capped.trials] == [1, 2, 3, 4]  # W&B: the first run_cap


def test_random_is_reproducible_from_the_seed():
    params = {"training.optimizer.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
              "training.batch_size": {"distribution": "int_uniform", "min": 16, "max": 128},
              "model.args.hidden": {"values": [[8], [16], [32, 32]]}}
    a = sp.build(sweep(parameters=params, run_cap=20, seed=5), LIMITS).trials
    b = sp.build(sweep(parameters=params, run_cap=20, seed=5), LIMITS).trials
    c = sp.build(sweep(parameters=params, run_cap=20, seed=6), LIMITS).trials
    assert a == b and a != c and len(a) == 20
    assert len({t["training.optimizer.lr"] for t in a}) == 20
    # the draws are a fixed function of the seed (Random.random() only): pinned
    assert a[0] == sp.build(sweep(parameters=params, run_cap=1, seed=5), LIMITS).trials[0]
    assert sp.build(sweep(parameters=params, seed=5), LIMITS).trials[:20] == a
    assert len(sp.build(sweep(parameters=params), LIMITS).trials) == LIMITS.max_sweep_trials  # default run_cap


def draws(spec: dict, n: int = 4000) -> list:
    space = sp.build(sweep(parameters={"training.optimizer.lr": spec}, run_cap=100, seed=1), LIMITS)
    rng = __import__("random").Random(2)
    return [t["training.optimizer.lr"] for t in space.trials] + [space.params[0].sample(rng) for _ in range(n)]


def test_distributions_keep_their_bounds():
    u = draws({"distribution": "uniform", "min": -2, "max": 3.5})
    assert all(-2 <= x < 3.5 for x in u) and min(u) < -1.9 and max(u) > 3.4
    i = draws({"distribution": "int_uniform", "min": 16, "max": 20})
    assert set(i) == {16, 17, 18, 19, 20} and all(isinstance(x, int) for x in i)
    inferred = draws({"min": 1, "max": 3})  # W&B infers int_uniform from integer bounds
    assert set(inferred) == {1, 2, 3}
    assert all(isinstance(x, float) and 0.5 <= x < 1.0 for x in draws({"min": 0.5, "max": 1.0}))
    q = draws({"distribution": "q_uniform", "min": 0, "max": 64, "q": 8})
    assert set(q) <= set(range(0, 65, 8)) and all(isinstance(x, int) for x in q) and {0, 64} <= set(q)
    qf = draws({"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.25})
    assert set(qf) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    lv = draws({"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1})
    assert all(1e-4 <= x <= 1e-1 for x in lv)
    # log-uniform: about as many draws in each decade
    decades = [sum(1 for x in lv if 10 ** -(k + 1) <= x < 10 ** -k) for k in (1, 2, 3)]
    assert max(decades) < 1.2 * min(decades)
    ln = draws({"distribution": "log_uniform", "min": math.log(1e-3), "max": math.log(1.0)})  # W&B: natural logs
    assert all(1e-3 <= x <= 1.0 for x in ln) and min(ln) < 2e-3
    normal = draws({"distribution": "normal", "mu": 5.0, "sigma": 2.0}, 20000)
    mean = sum(normal) / len(normal)
    sd = math.sqrt(sum((x - mean) ** 2 for x in normal) / len(normal))
    assert abs(mean - 5.0) < 0.06 and abs(sd - 2.0) < 0.06
    cat = draws({"values": ["a", "b", "c"], "probabilities": [0.5, 0.5, 0.0]})
    assert set(cat) == {"a", "b"}
    assert set(draws({"distribution": "constant", "value": 0.3})) == {0.3}


@pytest.mark.parametrize("method, params, fields, loc", [
    ("grid", {"training.optimizer.lr": {"values": []}}, {}, ["parameters", "training.optimizer.lr", "values"]),
    ("random", {"training.optimizer.lr": {"distribution": "log_uniform_values", "min": 0, "max": 1}}, {},
     ["parameters", "training.optimizer.lr", "min"]),
    ("random", {"training.optimizer.lr": {"distribution": "uniform", "min": 1, "max": 1}}, {},
     ["parameters", "training.optimizer.lr", "max"]),
    ("random", {"training.batch_size": {"distribution": "int_uniform", "min": 64, "max": 8}}, {},
     ["parameters", "training.batch_size", "max"]),
    ("random", {"training.optimizer.lr": {"distribution": "normal", "sigma": 0}}, {},
     ["parameters", "training.optimizer.lr", "sigma"]),
    ("random", {"training.optimizer.lr": {"distribution": "beta"}}, {},
     ["parameters", "training.optimizer.lr", "distribution"]),
    ("grid", {"training.optimizer.lr": {"distribution": "uniform", "min": 0.1, "max": 1}}, {},
     ["parameters", "training.optimizer.lr", "distribution"]),
    ("grid", {"training.seed": {"values": list(range(11))}, "training.epochs": {"values": list(range(1, 11))}}, {},
     ["parameters"]),
    ("random", {"training.seed": {"values": [1]}}, {"run_cap": 101}, ["run_cap"]),
    ("random", {"training.seed": {"values": [1]}}, {"max_concurrent": 17}, ["max_concurrent"]),
    ("random", {"training.scheduler.gamma": {"values": [0.5]}}, {}, ["parameters", "training.scheduler.gamma"]),
    ("random", {"model.args.hidden.3": {"values": [1]}}, {}, ["parameters", "model.args.hidden.3"]),
    ("random", {"training.epochs.x": {"values": [1]}}, {}, ["parameters", "training.epochs.x"]),
    ("random", {"training.seed": {"values": [1]}},
     {"early_terminate": {"type": "hyperband", "min_iter": 1}}, ["metric"]),
])
def test_bad_spaces_name_the_field(method, params, fields, loc):
    with pytest.raises(PlanError) as e:
        sp.build(sweep(method, parameters=params, **fields), LIMITS)
    assert e.value.loc == ["body", *loc], e.value.message


def test_paths_reach_into_objects_and_lists_and_may_add_a_leaf():
    base = {**BASE, "model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 3}]}}
    body = sp.SweepCreate(name="s", base=base, method="grid", parameters={
        "model.layers.0.out_features": {"values": [5]}, "training.optimizer.weight_decay": {"value": 0.1}})
    space = sp.build(body, LIMITS)
    trial = sp.apply(base, space.trials[0], space.params)
    assert trial["model"]["layers"][0]["out_features"] == 5
    assert trial["training"]["optimizer"] == {"type": "Adam", "lr": 0.01, "weight_decay": 0.1}
    assert base["model"]["layers"][0]["out_features"] == 3  # the base is left alone


def test_rungs_and_the_asha_rule():
    assert sp.rungs(1, 3, 9) == [1, 3]
    assert sp.rungs(1, 3, 10) == [1, 3, 9]
    assert sp.rungs(2, 2, 17) == [2, 4, 8, 16]
    assert sp.rungs(5, 3, 5) == []
    # the first to arrive goes on; then only the top 1/eta of those seen (at least the best)
    assert sp.continues(0.5, [], "maximize", 3)
    assert not sp.continues(0.5, [0.6], "maximize", 3)
    assert sp.continues(0.7, [0.6], "maximize", 3)
    assert sp.continues(0.3, [0.6], "minimize", 3)
    seen = [0.9, 0.8, 0.7, 0.6, 0.5]  # n=6 with the newcomer: keep the top 2
    assert sp.continues(0.85, seen, "maximize", 3) and not sp.continues(0.75, seen, "maximize", 3)
