"""Registries of precisions and sparsity methods: the one place to add a format.

Each precision says how modelopt calibrates it, how many bits it stores, what TensorRT-LLM calls
it, and the oldest GPU generation that runs it. The modelopt config is named, not imported, so
`import engine` stays light.
"""

from dataclasses import dataclass

from engine.names import check_name

# GPU generations by CUDA compute capability (major, minor).
GENERATIONS = {
    "volta": (7, 0),
    "turing": (7, 5),
    "ampere": (8, 0),
    "ada": (8, 9),
    "hopper": (9, 0),
    "blackwell": (10, 0),
}


@dataclass(frozen=True)
class Precision:
    name: str
    label: str
    modelopt_cfg: str | None  # name of the `modelopt.torch.quantization` constant; None = no quantization
    weight_bits: float
    act_bits: float
    trtllm_quant_algo: str | None  # TensorRT-LLM QuantAlgo the modelopt export maps to
    min_generation: str  # oldest GPU generation whose TensorRT-LLM kernels run it
    trtllm_flow: str  # "pytorch" (HF checkpoint, no build) or "engine" (legacy trtllm-build)
    cuda_only_calibration: bool = False  # modelopt cannot calibrate it on CPU
    excluded_generations: tuple[str, ...] = ()  # newer generations without kernels for it
    description: str = ""


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in [
        Precision("bf16", "BF16", None, 16, 16, None, "ampere", "pytorch",
                  description="Unquantized bfloat16 baseline."),
        Precision("fp16", "FP16", None, 16, 16, None, "volta", "pytorch",
                  description="Unquantized float16 baseline."),
        Precision("fp8", "FP8", "FP8_DEFAULT_CFG", 8, 8, "FP8", "ada", "pytorch",
                  description="FP8 E4M3 weights and activations, per-tensor scales."),
        Precision("int8_sq", "INT8 SmoothQuant", "INT8_SMOOTHQUANT_CFG", 8, 8, "W8A8_SQ_PER_CHANNEL",
                  "ampere", "engine",
                  description="INT8 weights (per channel) and activations after SmoothQuant scaling."),
        Precision("int4_awq", "INT4 AWQ", "INT4_AWQ_CFG", 4, 16, "W4A16_AWQ", "ampere", "pytorch",
                  description="INT4 weight-only, group 128, activation-aware scaling; 16-bit activations."),
        Precision("w4a8_awq", "W4A8 AWQ", "W4A8_AWQ_BETA_CFG", 4, 8, "W4A8_AWQ", "ada", "pytorch",
                  excluded_generations=("blackwell",),  # TensorRT-LLM quantization.md hardware matrix
                  description="INT4 AWQ weights with FP8 activations."),
        Precision("nvfp4", "NVFP4", "NVFP4_DEFAULT_CFG", 4, 4, "NVFP4", "blackwell", "pytorch",
                  cuda_only_calibration=True,
                  description="FP4 E2M1 weights and activations, block 16 with FP8 scales (Blackwell)."),
    ]
}

BASELINES = ("bf16", "fp16")


@dataclass(frozen=True)
class Sparsity:
    name: str
    label: str
    modelopt_mode: str | None  # `modelopt.torch.sparsity.sparsify` mode
    needs_data: bool
    description: str = ""


SPARSITIES: dict[str, Sparsity] = {
    s.name: s
    for s in [
        Sparsity("none", "dense", None, False, "No pruning."),
        Sparsity("magnitude", "2:4 magnitude", "sparse_magnitude", False,
                 "2:4 structured pruning by weight magnitude (NVIDIA ASP); no data needed."),
        Sparsity("sparsegpt", "2:4 SparseGPT", "sparsegpt", True,
                 "2:4 structured pruning with SparseGPT's Hessian-based weight update; uses calibration data."),
    ]
}

KV_CACHE = {"auto": "same as the model's activations", "fp8": "FP8 KV cache (modelopt FP8_KV_CFG)"}


def precision(name: str) -> Precision:
    return PRECISIONS[check_name("precision", name, PRECISIONS)]


def sparsity(name: str) -> Sparsity:
    return SPARSITIES[check_name("sparsity", name, SPARSITIES)]


def kv_cache(name: str) -> str:
    return check_name("KV cache precision", name, KV_CACHE)


def generation_of(capability: tuple[int, int]) -> str:
    """The newest generation whose minimum compute capability `capability` meets."""
    best = "volta"
    for gen, cc in GENERATIONS.items():
        if tuple(capability) >= cc:
            best = gen
    return best


def why_not_on_generation(prec: Precision, generation: str) -> str | None:
    """None if TensorRT-LLM runs `prec` on that GPU generation, else the reason in words."""
    check_name("GPU generation", generation, GENERATIONS)
    if GENERATIONS[generation] < GENERATIONS[prec.min_generation]:
        return (f"{prec.label} needs a {prec.min_generation.capitalize()} GPU or newer "
                f"(compute capability {'.'.join(map(str, GENERATIONS[prec.min_generation]))}+); "
                f"this is {generation.capitalize()}.")
    if generation in prec.excluded_generations:
        return f"TensorRT-LLM has no {prec.label} kernels for {generation.capitalize()} GPUs."
    return None
