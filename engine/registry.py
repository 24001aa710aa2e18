"""Registries of model kinds, precisions, sparsity methods and runtime backends: the one place
that says what each format is.

Everything the rest of the tree needs to know about a precision lives on its `Precision` entry:
storage and compute formats (read by the estimator), the modelopt config (read by calibration),
TensorRT-LLM's name and flow, published aliases (read by the reference data), the label, and which
backends run it with real kernels on which devices. A backend that runs a precision adds one handler
for it in its own package (`engine/runtimes/<backend>/`); `tests/unit/test_format_registry.py` checks
the two agree. Config and runtime classes are named, not imported, so `import engine` stays light.
"""

from dataclasses import dataclass, field

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

# Tensor formats. Compute formats are the GPU catalog's tensor-core peak columns.
NUMBER_FORMATS = ("fp32", "bf16", "fp16", "fp8", "int8", "int4", "fp4")
COMPUTE_FORMATS = ("bf16", "fp8", "int8", "fp4")


@dataclass(frozen=True)
class ModelKind:
    """A kind of model the tool optimizes: how a sweep of it runs, and what it is measured with."""

    name: str
    label: str
    sweep_runner: str  # "module:function" taking (SweepSpec, store, progress) -> list[Result]
    quality_metrics: tuple[str, ...]  # metric names its evaluation writes, lower-is-worse first
    runtimes: tuple[str, ...]  # backends that can time it
    description: str = ""
    extra: str | None = None  # the package extra its libraries come with (pip install 'tradeoff-lab[extra]')


MODEL_KINDS: dict[str, ModelKind] = {
    k.name: k
    for k in [
        ModelKind("causal_lm", "Language model", "engine.pipeline:run_causal_lm_sweep",
                  ("perplexity", "ppl_increase_pct", "kl_div", "top1_agreement"), ("torch", "tensorrt_llm"),
                  "A Hugging Face causal language model (safetensors or GGUF); accuracy is perplexity, "
                  "KL divergence and top-1 agreement against the unquantized model."),
        ModelKind("diffusion", "Diffusion model", "engine.diffusion.sweep:run_diffusion_sweep",
                  ("task_accuracy", "psnr_db", "ssim", "latent_psnr_db"), ("torch", "tensorrt"),
                  "A diffusers denoiser (UNet) and its scheduler; quality is PSNR and SSIM of the images "
                  "against the unquantized model's from the same seeds, plus a task metric where the model "
                  "has one (the bundled model: the share of images read as the requested digit).",
                  extra="diffusion"),
    ]
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
    weight_format: str = "bf16"  # how weights are stored (NUMBER_FORMATS)
    activation_format: str = "bf16"  # what the GEMMs take as input
    compute_format: str = "bf16"  # the tensor-core peak its GEMMs run at (COMPUTE_FORMATS)
    # bytes per stored weight element, scales included (AWQ: one FP16 scale per group of 128)
    weight_bytes: float = 2.0
    # KV cache under kv_cache "auto": TensorRT-LLM builds FP8 KV with FP8-activation formats
    kv_format: str = "bf16"
    # 4-bit weights widened on CUDA cores before the MMA (the estimator charges the unpacking)
    dequantizes_weights: bool = False
    sparse_kernels: bool = False  # 2:4 sparse tensor cores take these weights
    # the estimator's efficiency parameter groups: weight streaming (m_*, dq_*) and GEMM (c_*)
    estimator_weights: str = "w16"
    estimator_gemm: str = "w16"
    cuda_only_calibration: bool = False  # modelopt cannot calibrate it on CPU
    excluded_generations: tuple[str, ...] = ()  # newer generations without kernels for it
    aliases: tuple[str, ...] = ()  # names published tables use for it
    # backend -> device kinds where that backend runs it on real low-precision kernels
    kernels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    model_kinds: tuple[str, ...] = ("causal_lm",)
    description: str = ""

    def __hash__(self) -> int:  # `kernels` is a dict; the name identifies an entry
        return hash(self.name)

    @property
    def is_baseline(self) -> bool:
        return self.modelopt_cfg is None

    def runs_on(self, backend: str, device_kind: str) -> bool:
        return device_kind in self.kernels.get(runtime_name(backend), ())


_TRT = {"tensorrt_llm": ("cuda",)}
_TRT_DIFFUSION = {"tensorrt": ("cuda",)}  # TensorRT engines of a diffusion denoiser (engine/runtimes/tensorrt)

PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in [
        Precision("bf16", "BF16", None, 16, 16, None, "ampere", "pytorch", sparse_kernels=True,
                  aliases=("BF16",), kernels={"torch": ("cpu", "cuda"), **_TRT, **_TRT_DIFFUSION},
                  model_kinds=("causal_lm", "diffusion"), description="Unquantized bfloat16 baseline."),
        Precision("fp16", "FP16", None, 16, 16, None, "volta", "pytorch", "fp16", "fp16",
                  sparse_kernels=True, kv_format="fp16", aliases=("FP16",),
                  kernels={"torch": ("cpu", "cuda"), **_TRT, **_TRT_DIFFUSION}, model_kinds=("causal_lm", "diffusion"),
                  description="Unquantized float16 baseline."),
        Precision("fp8", "FP8", "FP8_DEFAULT_CFG", 8, 8, "FP8", "ada", "pytorch", "fp8", "fp8", "fp8",
                  weight_bytes=1.0, kv_format="fp8", sparse_kernels=True, estimator_weights="fp8",
                  estimator_gemm="fp8",
                  aliases=("FP8", "FP8 (table does not restate; blog figures are FP8)"),
                  kernels={"torch": ("cuda",), **_TRT, **_TRT_DIFFUSION}, model_kinds=("causal_lm", "diffusion"),
                  description="FP8 E4M3 weights and activations, per-tensor scales."),
        Precision("int8_sq", "INT8 SmoothQuant", "INT8_SMOOTHQUANT_CFG", 8, 8, "W8A8_SQ_PER_CHANNEL",
                  "ampere", "engine", "int8", "int8", "int8", weight_bytes=1.0, sparse_kernels=True,
                  estimator_weights="int8_sq", estimator_gemm="int8_sq",
                  aliases=("INT8 SmoothQuant (W8A8)",), kernels={"torch": ("cpu",), **_TRT, **_TRT_DIFFUSION},
                  model_kinds=("causal_lm", "diffusion"),
                  description="INT8 weights (per channel) and activations after SmoothQuant scaling."),
        Precision("int4_awq", "INT4 AWQ", "INT4_AWQ_CFG", 4, 16, "W4A16_AWQ", "ampere", "pytorch",
                  "int4", "bf16", "bf16", weight_bytes=0.5 + 2 / 128, dequantizes_weights=True,
                  estimator_weights="int4_awq", estimator_gemm="int4_awq",
                  aliases=("INT4 AWQ (W4A16)",), kernels={"torch": ("cpu", "cuda"), **_TRT},
                  description="INT4 weight-only, group 128, activation-aware scaling; 16-bit activations."),
        # W4A8 is INT4 AWQ's packed weights fed to FP8 tensor cores: INT4's weight-streaming and
        # unpacking parameters, FP8's GEMM ones (it has few measurements of its own)
        Precision("w4a8_awq", "W4A8 AWQ", "W4A8_AWQ_BETA_CFG", 4, 8, "W4A8_AWQ", "ada", "pytorch",
                  "int4", "fp8", "fp8", weight_bytes=0.5 + 2 / 128, kv_format="fp8", dequantizes_weights=True,
                  estimator_weights="int4_awq", estimator_gemm="fp8",
                  excluded_generations=("blackwell",),  # TensorRT-LLM quantization.md hardware matrix
                  aliases=("W4A8 AWQ (INT4 weights, FP8 activations)",), kernels=dict(_TRT),
                  description="INT4 AWQ weights with FP8 activations."),
        Precision("nvfp4", "NVFP4", "NVFP4_DEFAULT_CFG", 4, 4, "NVFP4", "blackwell", "pytorch",
                  "fp4", "fp4", "fp4", weight_bytes=0.5 + 1 / 16, kv_format="fp8",
                  estimator_weights="nvfp4", estimator_gemm="nvfp4", cuda_only_calibration=True,
                  aliases=("NVFP4 (PTQ)", "NVFP4 (after QAT)"), kernels=dict(_TRT),
                  description="FP4 E2M1 weights and activations, block 16 with FP8 scales (Blackwell)."),
    ]
}

BASELINES = tuple(name for name, p in PRECISIONS.items() if p.is_baseline)


@dataclass(frozen=True)
class Sparsity:
    name: str
    label: str
    modelopt_mode: str | None  # `modelopt.torch.sparsity.sparsify` mode
    needs_data: bool
    pattern: str | None = None  # the structure it leaves: "2:4", or None for dense
    description: str = ""
    model_kinds: tuple[str, ...] = ("causal_lm",)


SPARSITIES: dict[str, Sparsity] = {
    s.name: s
    for s in [
        Sparsity("none", "dense", None, False, None, "No pruning.", model_kinds=("causal_lm", "diffusion")),
        Sparsity("magnitude", "2:4 magnitude", "sparse_magnitude", False, "2:4",
                 "2:4 structured pruning by weight magnitude (NVIDIA ASP); no data needed."),
        Sparsity("sparsegpt", "2:4 SparseGPT", "sparsegpt", True, "2:4",
                 "2:4 structured pruning with SparseGPT's Hessian-based weight update; uses calibration data."),
    ]
}
# Names of sparsity patterns (what the estimator and published tables speak of) and dense synonyms.
SPARSITY_PATTERNS = ("2:4",)
DENSE_NAMES = ("", "none", "dense")

KV_CACHE = {"auto": "same as the model's activations", "fp8": "FP8 KV cache (modelopt FP8_KV_CFG)"}


@dataclass(frozen=True)
class Backend:
    name: str
    label: str
    runtime: str  # "module:class"; the class takes no arguments
    aliases: tuple[str, ...] = ()
    description: str = ""


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in [
        Backend("torch", "PyTorch", "engine.runtimes.torch:TorchRuntime", ("pytorch",),
                "PyTorch (CPU or GPU) with modelopt's integers on real low-precision kernels."),
        Backend("tensorrt_llm", "TensorRT-LLM", "engine.runtimes.tensorrt_llm:TensorRTLLMRuntime",
                (), "TensorRT-LLM's trtllm-bench (NVIDIA GPU)."),
        Backend("tensorrt", "TensorRT", "engine.runtimes.tensorrt:TensorRTRuntime", ("trt",),
                "TensorRT engines built and timed with trtexec from the denoiser's ONNX (diffusion models; "
                "NVIDIA GPU)."),
    ]
}


def model_kind(name: str) -> ModelKind:
    return MODEL_KINDS[check_name("model kind", name, MODEL_KINDS)]


def precision(name: str) -> Precision:
    return PRECISIONS[check_name("precision", name, PRECISIONS)]


def precisions_for(kind: str = "causal_lm") -> list[Precision]:
    return [p for p in PRECISIONS.values() if kind in p.model_kinds]


def precision_from_alias(text: str) -> Precision | None:
    """The precision a published table means by `text` (its own name or an alias), or None."""
    for p in PRECISIONS.values():
        if text == p.name or text in p.aliases:
            return p
    return None


def sparsity(name: str) -> Sparsity:
    return SPARSITIES[check_name("sparsity", name, SPARSITIES)]


def sparsity_pattern(name: str | None) -> str | None:
    """The structure a sparsity name stands for: a method ('sparsegpt'), a pattern ('2:4') or a
    dense synonym -> '2:4' or None."""
    if name is None or name in DENSE_NAMES:
        return None
    if name in SPARSITY_PATTERNS:
        return name
    return sparsity(name).pattern


def kv_cache(name: str) -> str:
    return check_name("KV cache precision", name, KV_CACHE)


def runtime_name(name: str) -> str:
    """The registry name of a backend given its name or an alias ('pytorch' -> 'torch')."""
    for b in BACKENDS.values():
        if name == b.name or name in b.aliases:
            return b.name
    return check_name("runtime backend", name, BACKENDS)


def backend(name: str) -> Backend:
    return BACKENDS[runtime_name(name)]


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
