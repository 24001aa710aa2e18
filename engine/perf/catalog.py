"""The GPU catalog (assets/gpus.csv): dense tensor peaks per format, memory, links, prices."""

import math
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from engine.names import check_name
from engine.paths import asset

GIB = 1024**3
ECC_ON_GDDR = {"l4", "l40s", "a10g"}  # datacenter GDDR6 cards: in-band ECC on by default
# Streaming multiprocessors per GPU, from NVIDIA's architecture whitepapers and datasheets (A100: 108;
# H100 SXM5 / H200 / GH200: 132; H100 PCIe: 114; A10G (GA102): 80; L4: 58; L40S / RTX 6000 Ada: 142;
# RTX 4090: 128; RTX PRO 6000 Blackwell: 188; B200 / GB200: 148). The roofline needs them because the
# bytes a GPU keeps in flight, hence the bandwidth a memory-bound kernel reaches, grow with SMs, not
# with the memory's peak (model.py, sm_gb_s).
SM_COUNT = {"h100-sxm": 132, "h100-pcie": 114, "h200": 132, "gh200": 132, "a100-sxm-80gb": 108,
            "a100-pcie-80gb": 108, "l40s": 142, "l4": 58, "a10g": 80, "rtx-4090": 128, "rtx-6000-ada": 142,
            "rtx-pro-6000-blackwell": 188, "b200": 148, "gb200": 148}


@dataclass(frozen=True)
class GPU:
    id: str
    name: str
    generation: str
    compute_capability: float
    memory_gb: float  # decimal GB, as the datasheet states
    bandwidth_tb_s: float
    tflops: dict  # dense tensor peak per compute format: bf16, fp8, int8, int4, fp4 (absent = no kernels)
    sparse_2_4: bool
    interconnect: str
    link_gb_s: float  # per direction, per GPU
    max_tp: int
    price_per_hour: float
    source: str
    price_source: str
    sms: int = 0  # streaming multiprocessors (0: not known, no concurrency ceiling on its bandwidth)

    @property
    def memory_bytes(self) -> float:
        """Memory the runtime can use. Datasheet capacities are binary (an "80GB" H100 shows 81559 MiB in
        nvidia-smi, an A100 80GB 81920 MiB); GDDR cards that ship with ECC on give 1/16 of it to ECC."""
        return self.memory_gb * GIB * (15 / 16 if self.id in ECC_ON_GDDR else 1.0)

    @property
    def bandwidth(self) -> float:  # bytes/s
        return self.bandwidth_tb_s * 1e12

    def peak(self, fmt: str) -> float | None:
        """Dense FLOP/s (or OP/s) for a compute format; None when the GPU has no such tensor cores."""
        v = self.tflops.get(fmt)
        return None if v is None else v * 1e12


def _num(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


@lru_cache(maxsize=1)
def gpus() -> dict[str, GPU]:
    df = pd.read_csv(asset("gpus.csv"))
    out = {}
    for r in df.to_dict("records"):
        tf = {k: _num(r[f"{k}_{'tops' if k.startswith('int') else 'tflops'}"])
              for k in ("bf16", "fp8", "int8", "int4", "fp4")}
        out[r["id"]] = GPU(
            id=r["id"], name=r["name"], generation=r["generation"],
            compute_capability=float(r["compute_capability"]), memory_gb=float(r["memory_gb"]),
            bandwidth_tb_s=float(r["bandwidth_tb_s"]),
            tflops={k: v for k, v in tf.items() if v is not None},
            sparse_2_4=str(r["sparse_2_4"]).lower() == "true", interconnect=r["interconnect"],
            link_gb_s=float(r["link_gb_s_per_direction"]), max_tp=int(r["max_tp_domain"]),
            price_per_hour=float(r["price_per_hour_usd"]), source=r["source"],
            price_source=r["price_source"], sms=SM_COUNT.get(r["id"], 0))
    return out


def gpu(gpu_id: str) -> GPU:
    """Look up a catalog GPU; unknown ids raise UnknownNameError with close matches."""
    return gpus()[check_name("GPU", gpu_id, gpus())]


def gpu_frame() -> pd.DataFrame:
    """The catalog as shipped (for display)."""
    return pd.read_csv(asset("gpus.csv"))
