"""Memory plan per GPU: weights, KV cache, activations, runtime reserve; fit and largest batch."""

import math
from dataclasses import dataclass

from engine.perf.arch import Architecture
from engine.perf.catalog import GIB, GPU
from engine import registry
from engine.perf.formats import HEAD_BYTES, SPARSE_WEIGHT_FACTOR

MAX_NUM_TOKENS = 8192  # TensorRT-LLM's default max_num_tokens: prefill runs in chunks of this size
RESERVE_FIXED = 1.5 * GIB  # CUDA context, cuBLAS/TensorRT workspaces, NCCL buffers
# TensorRT-LLM sizes its KV-cache pool as this fraction of the memory still free once the weights,
# activations and workspaces are allocated (trtllm-bench's default --kv_cache_free_gpu_mem_fraction);
# the rest of that free memory stays unused.
KV_CACHE_FREE_FRACTION = 0.90
# The paged KV cache hands out blocks of this many tokens per sequence (TensorRT-LLM's default
# tokens_per_block), so a sequence holds whole blocks.
TOKENS_PER_BLOCK = 32
MAX_BATCH = 4096  # largest batch the estimator proposes


@dataclass(frozen=True)
class MemoryPlan:
    weights: float
    kv_cache: float
    activations: float
    reserve: float
    capacity: float

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.activations + self.reserve

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity

    def gib(self) -> dict:
        return {k: round(getattr(self, k) / GIB, 3)
                for k in ("weights", "kv_cache", "activations", "reserve", "capacity", "total")}


def weight_bytes(arch: Architecture, precision: str, sparse: bool, tp: int) -> float:
    wb = registry.precision(precision).weight_bytes
    if sparse:
        wb *= SPARSE_WEIGHT_FACTOR[wb]
    body = arch.layers * (arch.attn_params + arch.mlp_params) * wb
    embed = arch.embed_params * HEAD_BYTES * (1 if arch.tied_embeddings else 2)
    return (body + embed) / tp


def kv_per_sequence_token(arch: Architecture, kv_bytes: float, tp: int) -> float:
    kv_heads = math.ceil(arch.kv_heads / tp)
    return 2 * arch.layers * kv_heads * arch.head_dim * kv_bytes


def activation_bytes(arch: Architecture, batch: int, isl: int, tp: int) -> float:
    """Peak transient memory: one prefill chunk's hidden states and MLP intermediates (16-bit),
    plus FP32 logits of the batch."""
    tokens = min(batch * isl, max(MAX_NUM_TOKENS, batch))
    inter = arch.intermediate * (arch.experts_per_token if arch.is_moe else 1)
    per_token = (4 * arch.hidden + 2 * inter / tp) * 2
    return tokens * per_token + batch * arch.vocab / tp * 4


def seq_tokens(isl: int, osl: int, paged: bool = True) -> int:
    """KV-cache tokens one sequence holds at its longest: whole blocks when the cache is paged."""
    n = isl + osl
    return -(-n // TOKENS_PER_BLOCK) * TOKENS_PER_BLOCK if paged else n


def plan(arch: Architecture, gpu: GPU, precision: str, sparse: bool, tp: int, batch: int,
         isl: int, osl: int, kv_bytes: float, paged: bool = True) -> MemoryPlan:
    """Memory per GPU with every sequence of the batch resident at its longest.

    paged (trtllm-bench, in-flight batching): the KV pool may take only KV_CACHE_FREE_FRACTION of the
    memory left after weights, activations and workspaces; the rest of it counts as reserve.
    Not paged (the static gptSessionBenchmark of TensorRT-LLM <= 0.9 documents): one contiguous KV
    buffer for the whole batch, no pool fraction.
    """
    cap = gpu.memory_bytes
    weights = weight_bytes(arch, precision, sparse, tp)
    act = activation_bytes(arch, batch, isl, tp)
    free = max(cap - weights - act - RESERVE_FIXED, 0.0)
    unused = (1 - KV_CACHE_FREE_FRACTION) * free if paged else 0.0
    return MemoryPlan(
        weights=weights, kv_cache=batch * seq_tokens(isl, osl, paged) * kv_per_sequence_token(arch, kv_bytes, tp),
        activations=act, reserve=RESERVE_FIXED + unused, capacity=cap)


def max_batch(arch, gpu, precision, sparse, tp, isl, osl, kv_bytes, paged: bool = True) -> int:
    """Largest batch whose sequences are all resident at once (0 if not even one sequence fits)."""
    fits = lambda b: plan(arch, gpu, precision, sparse, tp, b, isl, osl, kv_bytes, paged).fits  # noqa: E731
    if not fits(1):
        return 0
    lo, hi = 1, MAX_BATCH
    if fits(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def batch_grid(max_batch: int) -> list[int]:
    """Powers of two up to the largest batch that fits, plus that batch itself."""
    if max_batch < 1:
        return []
    grid = [2**i for i in range(int(math.log2(max_batch)) + 1)]
    return grid + ([max_batch] if grid[-1] != max_batch else [])
