"""The search-space DSL: sizes, round trips, determinism and error messages."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archlab.spaces import (
    Arch,
    Choice,
    Constraint,
    FloatRange,
    IntRange,
    PerLayer,
    SearchSpace,
    SpaceError,
)
from archlab.spaces.library import (
    cell_space,
    hat_transformer_space,
    mlp_space,
    mobilenet_v3_space,
    ofa_mobilenet_v3_space,
    transformer_lm_space,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def mixed_space() -> SearchSpace:
    """Every kind of parameter, nested conditional depth and a categorical."""
    return SearchSpace(
        "mixed",
        act=Choice("relu", "gelu", "silu"),
        dropout=FloatRange(0.0, 0.3),
        lr=FloatRange(1e-4, 1e-2, log=True),
        width=IntRange(16, 64, step=16),
        n_stage=Choice(1, 2, 3),
        stages=PerLayer(
            "n_stage",
            depth=IntRange(1, 3),
            blocks=PerLayer("depth", kernel=Choice(3, 5, 7), op=Choice("conv", "skip")),
        ),
    )


LIBRARY = [
    transformer_lm_space(),
    mobilenet_v3_space(),
    mobilenet_v3_space(width_mult=(1.0, 1.2)),
    mlp_space(activation=("relu", "gelu")),
    hat_transformer_space(),
    cell_space(),
]
ALL_SPACES = [*LIBRARY, mixed_space()]


# exact sizes -------------------------------------------------------------------------
def test_ofa_mobilenet_v3_size_is_7371_to_the_fifth():
    space = ofa_mobilenet_v3_space()
    per_stage = sum(9**d for d in (2, 3, 4))
    assert per_stage == 7371
    assert space.size == 7371**5


def test_hat_space_size_is_exact():
    enc = (3 * 2) ** 6  # six encoder layers: FFN x heads
    dec = sum((3 * 2 * 2 * 3) ** d for d in range(1, 7))  # FFN, heads, ende heads, ende attn
    assert hat_transformer_space().size == 2 * 2 * enc * dec


def test_cell_space_size_is_15625():
    assert cell_space().size == 15_625


def test_size_matches_enumeration_with_conditional_depth():
    space = SearchSpace(
        "small",
        n=IntRange(0, 2),
        d=Choice(8, 16),
        layers=PerLayer("n", a=Choice(1, 2), b=Choice("x", "y", "z")),
        tail=PerLayer(2, k=Choice(3, 5)),
    )
    archs = list(space.enumerate())
    assert len(archs) == space.size == 2 * (1 + 6 + 36) * 4
    assert len({a.key for a in archs}) == len(archs)


def test_nested_size_matches_enumeration():
    space = SearchSpace(
        "nested",
        stages=PerLayer(2, depth=Choice(1, 2), blocks=PerLayer("depth", k=Choice(3, 5))),
    )
    assert space.size == (2 + 4) ** 2 == len(list(space.enumerate()))


def test_continuous_space_has_no_size():
    with pytest.raises(SpaceError, match="dropout: is continuous"):
        _ = mixed_space().size


def test_enumerate_refuses_large_spaces():
    with pytest.raises(SpaceError, match="more than limit=1,000"):
        next(cell_space().enumerate(limit=1000))


def test_enumerate_respects_constraints():
    space = SearchSpace("c", a=IntRange(0, 9), constraints={"even": lambda arch: arch["a"] % 2 == 0})
    assert [a["a"] for a in space.enumerate()] == [0, 2, 4, 6, 8]


# Arch ------------------------------------------------------------------------------------
def test_arch_is_immutable_hashable_and_equal_by_value():
    a = Arch({"x": 1, "layers": [{"k": 3}, {"k": 5}]})
    b = Arch({"layers": [{"k": 3}, {"k": 5}], "x": 1})
    assert a == b and hash(a) == hash(b) and a.key == b.key
    assert a["layers"][1]["k"] == 5 and a.layers[0].k == 3
    assert {a: 1}[b] == 1
    with pytest.raises(AttributeError):
        a.x = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        a["x"] = 2  # type: ignore[index]
    assert a != Arch({"x": 2, "layers": [{"k": 3}, {"k": 5}]})
    assert a.replace(x=2)["x"] == 2 and a["x"] == 1


def test_arch_key_is_identical_across_processes():
    space = mobilenet_v3_space()
    here = space.sample(123).key
    code = (
        "from archlab.spaces.library import mobilenet_v3_space;"
        "print(mobilenet_v3_space().sample(123).key)"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": ""},
        ).stdout.strip()
        for seed in (1, 2)
    }
    assert keys == {here}


def test_nested_access_in_mobilenet_space():
    space = mobilenet_v3_space()
    arch = space.largest()
    assert arch["stages"][2]["blocks"][3]["kernel"] == 7
    assert space.smallest()["stages"][4]["blocks"][1]["expand"] == 3
    assert len(space.smallest()["stages"][0]["blocks"]) == 2


# sampling ----------------------------------------------------------------------------------
@pytest.mark.parametrize("space", ALL_SPACES, ids=lambda s: s.name)
def test_same_seed_same_architecture(space):
    assert space.sample(7) == space.sample(7)
    assert space.sample_many(20, seed=3) == space.sample_many(20, seed=3)
    assert len({a.key for a in space.sample_many(20, seed=3)}) == 20


def test_sampling_covers_depths_uniformly():
    space = transformer_lm_space()
    depths = [a["n_layer"] for a in space.sample_many(2000, seed=0, unique=False)]
    counts = np.bincount(depths, minlength=5)[1:]
    assert counts.min() > 400  # each of 4 depths ~500
    assert all(len(a["layers"]) == a["n_layer"] for a in space.sample_many(50, seed=1))


def test_sampling_meets_constraints_and_reports_impossible_ones():
    space = transformer_lm_space()
    deep = Constraint("deep", lambda a: a["n_layer"] >= 3)
    constrained = SearchSpace("c", constraints=[deep], **space.params)
    assert all(a["n_layer"] >= 3 for a in constrained.sample_many(30, seed=0))

    def never(arch):
        return False

    impossible = SearchSpace("i", constraints=[never], **space.params)
    with pytest.raises(SpaceError, match=r"constraints \('never'\) rejected all 50 samples"):
        impossible.sample(0, max_tries=50)


# round trips (property-based) ----------------------------------------------------------
seeds = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=seeds, index=st.integers(0, len(ALL_SPACES) - 1))
def test_validate_to_json_round_trip(seed, index):
    space = ALL_SPACES[index]
    arch = space.sample(seed)
    again = space.validate(arch.to_json())
    assert again == arch and again.key == arch.key
    assert Arch.from_json(arch.to_json(indent=2)) == arch


@settings(max_examples=40, deadline=None)
@given(seed=seeds, index=st.integers(0, len(ALL_SPACES) - 1), normalized=st.booleans())
def test_decode_encode_round_trip(seed, index, normalized):
    space = ALL_SPACES[index]
    arch = space.sample(seed)
    vec = space.encode(arch, normalized=normalized)
    assert vec.dtype == np.float32 and vec.shape == (space.encoding_size,)
    decoded = space.decode(vec, normalized=normalized)
    if any(isinstance(p, FloatRange) for p in space.params.values()):
        assert decoded.to_dict().keys() == arch.to_dict().keys()
        for k in ("dropout", "lr"):
            assert math.isclose(decoded[k], arch[k], rel_tol=1e-5, abs_tol=1e-6)
        assert space.encode(decoded, normalized) == pytest.approx(vec, rel=1e-5, abs=1e-6)
    else:
        assert decoded == arch


@settings(max_examples=30, deadline=None)
@given(seed=seeds, index=st.integers(0, len(ALL_SPACES) - 1), fixed=st.booleans())
def test_from_params_suggest_round_trip(seed, index, fixed):
    space = ALL_SPACES[index]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    arch = space.suggest(trial, fixed_width=fixed)
    assert space.from_params(trial.params) == arch
    assert space.validate(arch, check_constraints=False) == arch
    if fixed:
        assert set(trial.params) == set(space.param_names())
    else:
        assert set(trial.params) == set(space.to_params(arch))


def test_suggest_uses_stable_flat_names():
    space = mobilenet_v3_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    arch = space.suggest(trial)
    depth = arch["stages"][2]["depth"]
    assert trial.params["stages.2.depth"] == depth
    assert trial.params["stages.2.blocks.1.kernel"] == arch["stages"][2]["blocks"][1]["kernel"]
    assert f"stages.2.blocks.{depth}.kernel" not in trial.params  # inactive slot not suggested


def test_from_params_ignores_inactive_fixed_width_slots_but_not_strangers():
    space = transformer_lm_space()
    params = {"n_layer": 1, "d_model": 64, "layers.0.n_head": 2, "layers.0.ffn": 128, "layers.3.ffn": 512}
    assert space.from_params(params)["layers"] == ({"n_head": 2, "ffn": 128},)
    with pytest.raises(SpaceError, match="unknown parameter 'lr'"):
        space.from_params({**params, "lr": 0.1})
    with pytest.raises(SpaceError, match=r"missing parameter 'layers\.0\.ffn'"):
        space.from_params({"n_layer": 1, "d_model": 64, "layers.0.n_head": 2})


def test_encoding_layout_has_masks_and_one_hots():
    space = mixed_space()
    names = space.feature_names()
    assert len(names) == space.encoding_size
    assert names[:3] == ["act=relu", "act=gelu", "act=silu"]
    assert "stages.2.present" in names and "stages.2.blocks.2.present" in names
    assert "stages.0.blocks.0.op=skip" in names
    arch = space.validate(
        {
            "act": "gelu", "dropout": 0.1, "lr": 1e-3, "width": 32, "n_stage": 1,
            "stages": [{"depth": 1, "blocks": [{"kernel": 5, "op": "skip"}]}],
        }
    )
    v = dict(zip(names, space.encode(arch)))
    assert v["act=gelu"] == 1 and v["act=relu"] == 0
    assert v["stages.0.present"] == 1 and v["stages.1.present"] == 0
    assert v["stages.0.blocks.0.kernel"] == 5 and v["stages.0.blocks.1.present"] == 0
    assert v["stages.0.blocks.0.op=skip"] == 1
    norm = dict(zip(names, space.encode(arch, normalized=True)))
    assert norm["width"] == pytest.approx((32 - 16) / 48)
    assert norm["lr"] == pytest.approx(0.5)  # log scale midpoint of 1e-4..1e-2
    assert all(0.0 <= x <= 1.0 for x in norm.values())


def test_decode_snaps_noisy_vectors_to_allowed_values():
    space = transformer_lm_space()
    arch = space.sample(5)
    noisy = space.encode(arch) + np.random.default_rng(0).normal(0, 0.1, space.encoding_size)
    assert space.decode(noisy) == arch


def test_smallest_and_largest():
    space = transformer_lm_space()
    assert space.smallest() == space.validate({"n_layer": 1, "d_model": 64, "layers": [{"n_head": 2, "ffn": 128}]})
    big = space.largest()
    assert big["n_layer"] == 4 and {lay["ffn"] for lay in big["layers"]} == {512}
    # unordered choices take their default (the first value) instead of failing
    act = mixed_space().params["act"]
    assert mixed_space().smallest()["act"] == act.values()[0] == act.default
    assert cell_space().largest()["edges"][0]["op"] == cell_space().params["edges"].params["op"].values()[0]


def test_space_json_round_trip_and_fingerprint():
    for space in ALL_SPACES:
        again = SearchSpace.from_json(space.to_json())
        assert again == space and again.fingerprint == space.fingerprint
        assert again.name == space.name
        assert again.sample(11) == space.sample(11)
    assert transformer_lm_space().fingerprint != transformer_lm_space(ffn=(128, 256)).fingerprint


# bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Choice(), "at least one value"),
        (lambda: Choice(3, 5, 3), "the value 3 twice"),
        (lambda: IntRange(5, 2), "low=5 is greater than high=2"),
        (lambda: IntRange(1, 6, step=2), "not a multiple of step=2"),
        (lambda: FloatRange(1.0, 0.5), "low=1.0 is greater than high=0.5"),
        (lambda: FloatRange(0.0, 1.0, log=True), "log=True needs low > 0"),
        (lambda: Choice([1, 2], 3), "type list"),
        (lambda: SearchSpace("s", layers=PerLayer("n_layer", a=Choice(1))), "layers: count 'n_layer' names no parameter"),
        (lambda: SearchSpace("s", n=Choice("a", "b"), layers=PerLayer("n", a=Choice(1))), "layers: count 'n' must name an integer"),
        (lambda: SearchSpace("s", n=FloatRange(0, 1), layers=PerLayer("n", a=Choice(1))), "layers: count 'n' must name an integer"),
        (lambda: SearchSpace("s", x=[1, 2]), r"x: \[1, 2\] is not a parameter"),
        (lambda: SearchSpace("s", constraints=[lambda a: True], x=Choice(1)), "needs a name"),
        (
            lambda: SearchSpace("s", constraints=[("c", bool), ("c", bool)], x=Choice(1)),
            "duplicate constraint name 'c'",
        ),
        (
            lambda: SearchSpace.from_json(
                json.dumps({"archlab_space": 1, "name": "d", "params": [
                    {"name": "a", "type": "choice", "values": [1]},
                    {"name": "a", "type": "int", "low": 0, "high": 1},
                ]})
            ),
            "duplicate parameter name 'a'",
        ),
    ],
)
def test_bad_space_definitions(make, message):
    with pytest.raises(SpaceError, match=message):
        make()


def _ofa_arch() -> dict:
    return mobilenet_v3_space().sample(0).to_dict()


@pytest.mark.parametrize(
    ("mutate", "path", "allowed"),
    [
        (lambda d: d["stages"][2]["blocks"][1].update(kernel=4), "stages[2].blocks[1].kernel", "3, 5, 7"),
        (lambda d: d["stages"][2]["blocks"][1].update(kernel="5"), "stages[2].blocks[1].kernel", "3, 5, 7"),
        (lambda d: d["stages"][0].update(depth=5), "stages[0].depth", "2, 3, 4"),
        (lambda d: d["stages"][1]["blocks"][0].pop("expand"), "stages[1].blocks[0].expand", "missing; allowed: 3, 4, 6"),
        (lambda d: d["stages"][1]["blocks"][0].update(ratio=2), "stages[1].blocks[0].ratio", "unknown key"),
        (lambda d: d["stages"][3]["blocks"].pop(), "stages[3].blocks", "blocks (depth="),
        (lambda d: d["stages"].pop(), "stages", "expected 5 blocks, got 4"),
        (lambda d: d.update(stages="x"), "stages", "expected a list of 5 blocks"),
    ],
)
def test_bad_architectures_name_the_exact_path(mutate, path, allowed):
    data = _ofa_arch()
    mutate(data)
    with pytest.raises(SpaceError) as info:
        mobilenet_v3_space().validate(data)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")
    assert allowed in str(info.value)


def test_out_of_range_and_wrong_types():
    space = mixed_space()
    base = space.sample(0).to_dict()
    for key, bad, text in [
        ("width", 20, "out of range; allowed: integers 16..64 in steps of 16"),
        ("width", 32.5, "is not an integer"),
        ("width", True, "is not an integer"),
        ("dropout", 0.5, "out of range; allowed: numbers 0.0..0.3"),
        ("dropout", "x", "is not a finite number"),
        ("act", "tanh", "allowed: 'relu', 'gelu', 'silu'"),
    ]:
        with pytest.raises(SpaceError, match=f"^{key}: .*{text}"):
            space.validate({**base, key: bad})
    assert space.validate({**base, "width": 32.0})["width"] == 32


def test_arch_of_another_space_is_rejected():
    arch = transformer_lm_space().sample(0)
    with pytest.raises(SpaceError, match=r"^n_layer: unknown key; allowed keys here: stages"):
        mobilenet_v3_space().validate(arch)


def test_validate_checks_constraints():
    space = SearchSpace("c", a=IntRange(0, 3), constraints={"small": lambda arch: arch["a"] < 2})
    assert space.validate({"a": 1})["a"] == 1
    with pytest.raises(SpaceError, match="violates constraint 'small'"):
        space.validate({"a": 3})
    assert space.validate({"a": 3}, check_constraints=False)["a"] == 3
    assert space.violated(Arch(a=3)) == ["small"]


def test_summary_is_short_and_informative():
    space = transformer_lm_space()
    arch = space.validate({"n_layer": 2, "d_model": 96, "layers": [{"n_head": 2, "ffn": 256}, {"n_head": 4, "ffn": 512}]})
    assert space.summary(arch) == "n_layer=2 d_model=96 n_head=[2,4] ffn=[256,512]"
