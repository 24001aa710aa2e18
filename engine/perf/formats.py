"""How each precision stores weights and which tensor-core peak its GEMMs run at: read from the
precision's registry entry (engine.registry), plus the physics of 2:4 sparse storage."""

from engine import registry
from engine.errors import TlabError

# 2:4 sparsity keeps half the values plus a 2-bit index per kept value.
SPARSE_WEIGHT_FACTOR = {2.0: (8 + 1) / 16, 1.0: (4 + 1) / 8}

# LM head and embeddings stay 16-bit: modelopt's default quant configs disable `*lm_head*`.
HEAD_BYTES = 2.0


def weight_bytes(precision: str) -> float:
    """Bytes per stored weight element, scales included."""
    return registry.precision(precision).weight_bytes


def compute_format(precision: str) -> str:
    """The catalog peak a GEMM of that precision is charged at. Weight-only INT4 dequantizes to 16-bit
    and multiplies there (no INT4 tensor-core GEMMs in TensorRT-LLM for W4A16); W4A8 runs FP8 MMA."""
    return registry.precision(precision).compute_format


def check_sparsity(precision: str, sparsity: str | None) -> bool:
    """True for 2:4; raises for combinations TensorRT-LLM has no kernels for."""
    try:
        pattern = registry.sparsity_pattern(sparsity)
    except TlabError:
        raise TlabError(f"Unknown sparsity '{sparsity}'. Use '2:4' (or leave it out for dense).") from None
    if pattern is None:
        return False
    prec = registry.precision(precision)
    if not prec.sparse_kernels:
        sparse = ", ".join(p.name for p in registry.PRECISIONS.values() if p.sparse_kernels)
        raise TlabError(f"2:4 sparsity is estimated only with {sparse} weights; "
                        f"{prec.label} packs {prec.weight_bits:g}-bit weights that sparse tensor cores "
                        "do not take. Pick fp8 or bf16 for a sparse model.")
    return True


def kv_bytes(precision: str, kv_cache: str, generation_has_fp8: bool) -> float:
    """KV cache element size. 'auto' follows TensorRT-LLM builds: FP8 KV with FP8-activation formats."""
    if kv_cache == "fp8":
        return 1.0
    if kv_cache in ("16", "bf16", "fp16"):
        return 2.0
    fp8_kv = registry.precision(precision).kv_format == "fp8"
    return 1.0 if fp8_kv and generation_has_fp8 else 2.0
