import pytest

from engine import registry
from engine.errors import DataError, UnknownNameError
from engine.spec import DataSpec, ExperimentSpec, ModelRef, Recipe, Workload


def test_spec_round_trips_through_json_and_hash_is_stable():
    spec = ExperimentSpec(ModelRef("org/model"), Recipe("int4_awq", "sparsegpt", "fp8"),
                          DataSpec(calib_size=8), Workload(64, 32, (1, 4)), "cpu")
    again = ExperimentSpec.from_json(spec.to_json())
    assert again == spec
    assert again.id == spec.id
    # A fixed spec has a fixed id across processes and versions of this code: the store relies on it.
    assert ExperimentSpec().id == ExperimentSpec.from_dict(ExperimentSpec().to_dict()).id
    assert spec.replace(recipe=Recipe("fp8")).id != spec.id


@pytest.mark.bad_input
def test_unknown_precision_lists_valid_names():
    with pytest.raises(UnknownNameError) as err:
        Recipe("fp9")
    msg = str(err.value)
    assert "Did you mean fp8" in msg
    for name in registry.PRECISIONS:
        assert name in msg


@pytest.mark.bad_input
def test_unknown_sparsity_lists_valid_names():
    with pytest.raises(UnknownNameError) as err:
        Recipe("fp8", "2:4")
    assert "none, magnitude, sparsegpt" in str(err.value)


@pytest.mark.parametrize("field", ["calib_size", "eval_tokens", "calib_seq_len"])
@pytest.mark.parametrize("value", [0, -3])
@pytest.mark.bad_input
def test_non_positive_sizes_are_rejected(field, value):
    with pytest.raises(DataError, match=field.replace("_", " ")):
        DataSpec(**{field: value})


def test_generation_rules_explain_themselves():
    assert registry.why_not_on_generation(registry.precision("fp8"), "hopper") is None
    assert "Ada" in registry.why_not_on_generation(registry.precision("fp8"), "ampere")
    assert "Blackwell" in registry.why_not_on_generation(registry.precision("nvfp4"), "hopper")
    assert registry.why_not_on_generation(registry.precision("w4a8_awq"), "blackwell")
    assert registry.generation_of((9, 0)) == "hopper"
    assert registry.generation_of((8, 6)) == "ampere"


def test_import_engine_stays_light():
    import subprocess
    import sys

    code = ("import sys, engine, engine.spec, engine.registry, engine.cli; "
            "heavy = [m for m in ('torch', 'transformers', 'modelopt', 'streamlit') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
