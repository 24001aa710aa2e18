"""How each precision stores weights and which tensor-core peak its GEMMs run at."""

from engine.errors import TlabError
from engine.registry import PRECISIONS

# Bytes per weight element, scales included: AWQ keeps one FP16 scale per group of 128;
# NVFP4 one FP8 scale per block of 16.
WEIGHT_BYTES = {
    "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8_sq": 1.0,
    "int4_awq": 0.5 + 2 / 128, "w4a8_awq": 0.5 + 2 / 128, "nvfp4": 0.5 + 1 / 16,
}

# The catalog peak a GEMM of that precision is charged at. Weight-only INT4 dequantizes to 16-bit
# and multiplies there (there are no INT4 tensor-core GEMMs in TensorRT-LLM for W4A16); W4A8 runs FP8 MMA.
COMPUTE_FORMAT = {
    "bf16": "bf16", "fp16": "bf16", "fp8": "fp8", "int8_sq": "int8",
    "int4_awq": "bf16", "w4a8_awq": "fp8", "nvfp4": "fp4",
}

# 2:4 sparsity keeps half the values plus a 2-bit index per kept value.
SPARSE_WEIGHT_FACTOR = {2.0: (8 + 1) / 16, 1.0: (4 + 1) / 8}
SPARSE_PRECISIONS = ("bf16", "fp16", "fp8", "int8_sq")

# LM head and embeddings stay 16-bit: modelopt's default quant configs disable `*lm_head*`.
HEAD_BYTES = 2.0


def check_sparsity(precision: str, sparsity: str | None) -> bool:
    """True for 2:4; raises for combinations TensorRT-LLM has no kernels for."""
    if sparsity in (None, "", "none", "dense"):
        return False
    if sparsity not in ("2:4", "magnitude", "sparsegpt"):
        raise TlabError(f"Unknown sparsity '{sparsity}'. Use '2:4' (or leave it out for dense).")
    if precision not in SPARSE_PRECISIONS:
        raise TlabError(f"2:4 sparsity is estimated only with {', '.join(SPARSE_PRECISIONS)} weights; "
                        f"{PRECISIONS[precision].label} packs 4-bit weights that sparse tensor cores "
                        "do not take. Pick fp8 or bf16 for a sparse model.")
    return True


def kv_bytes(precision: str, kv_cache: str, generation_has_fp8: bool) -> float:
    """KV cache element size. 'auto' follows TensorRT-LLM builds: FP8 KV with FP8-activation formats."""
    if kv_cache == "fp8":
        return 1.0
    if kv_cache in ("16", "bf16", "fp16"):
        return 2.0
    act8 = precision in ("fp8", "w4a8_awq", "nvfp4")
    return 1.0 if act8 and generation_has_fp8 else 2.0
