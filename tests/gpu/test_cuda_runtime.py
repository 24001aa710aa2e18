"""The PyTorch runtime's CUDA kernels reproduce modelopt's calibrated model (skipped without a GPU).

CI has no GPU, so these run only where one is lent: `benchmarks/gpu_check/run.sh` runs this file
on the device machine. A tiny random Llama is calibrated by modelopt on the GPU, deployed to real
kernels (FP8 through torch._scaled_mm on sm89+, INT4 AWQ through tinygemm on sm80+), and must give
the same next tokens as the calibrated (simulated) model.
"""

import pytest

torch = pytest.importorskip("torch")
mtq = pytest.importorskip("modelopt.torch.quantization")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")

from engine.runtimes.torch.deploy import deploy  # noqa: E402
from engine.runtimes.torch.runtime import TorchRuntime  # noqa: E402
from engine.spec import Recipe, Workload  # noqa: E402
from tests.helpers_quant import VOCAB, calibrate, tiny_llama  # noqa: E402

CFGS = {"fp8": "FP8_DEFAULT_CFG", "int4_awq": "INT4_AWQ_CFG"}
MIN_CC = {"fp8": (8, 9), "int4_awq": (8, 0)}


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(hidden=256, heads=4, kv_heads=2).to("cuda", torch.bfloat16)


@pytest.fixture(scope="module")
def prompt():
    return torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(2)).cuda()


def _calibrated(model, precision):
    return calibrate(model, getattr(mtq, CFGS[precision]), "cuda")


def _skip_below(precision):
    cc = torch.cuda.get_device_capability()
    if cc < MIN_CC[precision]:
        pytest.skip(f"{precision} kernels need compute capability {MIN_CC[precision]}, this GPU is {cc}")


def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits.float()


@pytest.mark.parametrize("precision", ["fp8", "int4_awq"])
def test_deployed_kernels_match_the_calibrated_model(tiny, prompt, precision):
    _skip_below(precision)
    calibrated = _calibrated(tiny, precision)
    deployed = deploy(calibrated, precision, "cuda")
    want, got = _logits(calibrated, prompt), _logits(deployed, prompt)
    rel = (got - want).abs().max() / want.abs().max()
    agree = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    assert rel < 0.05, f"{precision}: deployed logits differ by {rel:.1%} of their range"
    assert agree >= 0.95, f"{precision}: next-token agreement {agree:.0%}"


def test_benchmark_on_cuda_measures_baseline_and_recipes(tiny):
    rt = TorchRuntime(device="cuda", warmup=1, repeats=3)
    entries = [(tiny, Recipe("bf16"))]
    for precision in ("fp8", "int4_awq"):
        if torch.cuda.get_device_capability() >= MIN_CC[precision]:
            entries.append((_calibrated(tiny, precision), Recipe(precision)))
    results = rt.compare(entries, Workload(input_len=32, output_len=8, batch_sizes=(1, 4)))
    for ms in results:
        assert [m.batch_size for m in ms] == [1, 4]
        for m in ms:
            assert m.metrics["decode_tokens_per_sec"] > 0 and m.metrics["peak_memory_mb"] > 0
            dev = m.provenance["device"]
            assert dev["kind"] == "cuda" and dev["name"] and m.provenance["compute_dtype"] == "bfloat16"
