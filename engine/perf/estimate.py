"""One estimate: validate the query, plan memory, time prefill and decode with calibrated efficiencies."""

import dataclasses
from dataclasses import asdict, dataclass

from engine import registry
from engine.errors import TlabError, UnsupportedOnDevice
from engine.perf import arch as arch_mod
from engine.perf import catalog, memory
from engine.perf.catalog import GIB
from engine.perf.formats import check_sparsity, kv_bytes
from engine.perf.model import Items, Shape, work_items

TP_CHOICES = (1, 2, 4, 8, 16, 32, 64, 72)


class BadQuery(TlabError, ValueError):
    """A batch, length or TP that cannot be estimated; the message says what is allowed."""


@dataclass(frozen=True)
class Query:
    model: object  # HF id, config.json path, config dict or loaded model
    gpu: str
    precision: str
    batch: int | str  # an integer or "max"
    isl: int
    osl: int
    tp: int = 1
    sparsity: str | None = None
    kv_cache: str = "auto"


# Far beyond any real run, small enough that no arithmetic on them overflows.
LIMITS = {"batch": 1_000_000, "isl": 10_000_000, "osl": 10_000_000, "tp": 1024}


def _positive_int(name: str, v) -> int:
    try:
        f = float(v)
        i = int(f)
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf
        raise BadQuery(f"{name} must be a positive whole number, got {v!r}.") from None
    if i != f or i <= 0:
        raise BadQuery(f"{name} must be a positive whole number, got {v!r}.")
    if i > LIMITS[name]:
        shown = f"{i:,}" if i < 10**15 else f"{f:.3g}"
        raise BadQuery(f"{name} {shown} is beyond what any engine runs (at most {LIMITS[name]:,}); give a real {name}.")
    return i


def _price(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise BadQuery(f"The price must be a number of USD per GPU-hour, got {v!r}.") from None
    if not (0 <= f < 1e6):  # also false for NaN and infinities
        raise BadQuery(f"The price must be zero or more USD per GPU-hour (below a million), got {v!r}.")
    return f


@dataclass(frozen=True)
class Resolved:
    shape: Shape
    plan: memory.MemoryPlan
    max_batch: int
    smallest_tp: int | None
    warning: str = ""  # something the engine runs but the user should know (e.g. beyond trained context)


def resolve(q: Query) -> Resolved:
    """Check every field of a query and return what the timing needs; raise TlabError otherwise."""
    a = arch_mod.resolve(q.model)
    g = catalog.gpu(q.gpu)
    prec = registry.precision(q.precision)
    why = registry.why_not_on_generation(prec, g.generation)
    if why is None and g.peak(prec.compute_format) is None:
        why = f"the {g.name} datasheet lists no {prec.compute_format.upper()} tensor throughput."
    if why:
        raise UnsupportedOnDevice(f"{prec.label} cannot run on {g.name}: {why} "
                                  f"Pick another precision or GPU.")
    sparse = check_sparsity(prec.name, q.sparsity)
    if sparse and not g.sparse_2_4:
        raise UnsupportedOnDevice(f"{g.name} has no 2:4 sparse tensor cores.")
    isl, osl, tp = _positive_int("isl", q.isl), _positive_int("osl", q.osl), _positive_int("tp", q.tp)
    if tp not in TP_CHOICES or tp > g.max_tp:
        raise BadQuery(f"tp {tp} is not possible on {g.id}: use one of "
                       f"{', '.join(str(t) for t in TP_CHOICES if t <= g.max_tp)}.")
    if a.heads % tp:
        raise BadQuery(f"tp {tp} does not divide {a.name}'s {a.heads} attention heads.")
    warning = ""
    if a.max_context and isl + osl > a.max_context:
        # Engines run it (TensorRT-LLM publishes ISL 2048 + OSL 128 on 2,048-context models); whether the
        # output is still good is the user's call, so warn rather than refuse. Memory is checked below.
        warning = (f"isl + osl = {isl + osl} is beyond {a.name}'s trained context of {a.max_context} tokens: "
                   "the engine runs it, but output quality past that length is not assured (estimated anyway).")
    if q.kv_cache not in ("auto", "fp8", "16", "bf16", "fp16"):
        raise BadQuery(f"kv_cache must be auto, fp8 or 16, got {q.kv_cache!r}.")
    if q.kv_cache == "fp8" and g.peak("fp8") is None:
        raise UnsupportedOnDevice(f"an FP8 KV cache needs FP8 support; {g.name} has none. Use kv_cache auto.")
    kvb = kv_bytes(prec.name, q.kv_cache, g.peak("fp8") is not None)
    mb = memory.max_batch(a, g, prec.name, sparse, tp, isl, osl, kvb)
    if str(q.batch).lower() == "max":
        batch = max(mb, 1)  # estimate() then picks the fastest batch up to this one
    else:
        batch = _positive_int("batch", q.batch)
    smallest = None
    for t in TP_CHOICES:
        if t <= g.max_tp and a.heads % t == 0 and memory.max_batch(a, g, prec.name, sparse, t, isl, osl,
                                                                    kvb) >= min(batch, memory.MAX_BATCH):
            smallest = t
            break
    shape = Shape(a, g, prec.name, tp, batch, isl, osl, kvb, sparse)
    plan = memory.plan(a, g, prec.name, sparse, tp, batch, isl, osl, kvb)
    return Resolved(shape, plan, mb, smallest, warning)


def time_shapes(shapes: list[Shape], params: dict):
    items = Items([work_items(s) for s in shapes])
    pre, dec = items.totals(params)
    return items, pre, dec


@dataclass
class Estimate:
    model: str
    gpu: str
    precision: str
    sparsity: str
    tp: int
    batch: int
    isl: int
    osl: int
    output_tokens_per_sec: float | None
    output_tokens_per_sec_per_gpu: float | None
    output_tokens_per_sec_low: float | None
    output_tokens_per_sec_high: float | None
    uncertainty_rel: float
    ttft_ms: float | None
    tpot_ms: float | None
    request_latency_ms: float | None
    fits_in_memory: bool
    weights_gib: float
    kv_cache_gib: float
    activations_gib: float
    reserve_gib: float
    memory_total_gib: float
    memory_capacity_gib: float
    max_batch_that_fits: int
    smallest_tp_that_fits: int | None
    price_per_hour_usd: float
    cost_per_million_output_tokens_usd: float | None
    kv_cache_bytes_per_value: float
    calibrated_from: str
    provenance: str
    provenance_detail: dict
    breakdown_s: dict
    message: str
    # Added by #13: the band is a stated nominal interval (e.g. 0.8 = 80%) from held-out errors of the
    # query's regime; None when it is only a rule of thumb (no held-out residuals for it).
    band_nominal: float | None = None
    ttft_ms_low: float | None = None
    ttft_ms_high: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _best_batch(r: Resolved, params: dict) -> Resolved:
    """In-flight batching at its best: the batch up to the largest that fits with the most tokens/s
    (usually the largest; not always, when prefill of long prompts dominates)."""
    from engine.perf.memory import batch_grid

    shapes = [dataclasses.replace(r.shape, batch=b) for b in batch_grid(r.max_batch)]
    _, pre, dec = time_shapes(shapes, params)
    tput = [sh.batch * sh.osl / (p + d) for sh, p, d in zip(shapes, pre, dec)]
    best = shapes[max(range(len(shapes)), key=tput.__getitem__)]
    s = best
    plan = memory.plan(s.arch, s.gpu, s.precision, s.sparse, s.tp, s.batch, s.isl, s.osl, s.kv_bytes)
    return Resolved(best, plan, r.max_batch, r.smallest_tp, r.warning)


def _r(x, n=3):
    return None if x is None else round(float(x), n)


def estimate(q: Query, calibration=None, price_per_hour: float | None = None) -> Estimate:
    """Estimate one query. `calibration` defaults to the published + user-store fit (cached)."""
    from engine.perf import calibrate  # scipy only when a fit is actually needed

    cal = calibration or calibrate.default_calibration()
    r = resolve(q)
    if str(q.batch).lower() == "max" and r.max_batch > 1:
        r = _best_batch(r, cal.params)
    s, plan = r.shape, r.plan
    msg = ""
    if not plan.fits and r.max_batch >= 1:
        # In-flight batching runs it: the paged KV pool holds max_batch sequences at their longest and the
        # other requests wait for a free slot, so the engine works at max_batch resident sequences.
        msg = (f"the KV-cache pool holds {r.max_batch} of the {s.batch} sequences at ISL {s.isl} + OSL {s.osl} "
               f"at once: the other requests wait (in-flight batching), so the figures are those of "
               f"{r.max_batch} resident sequences"
               + (f"; TP {r.smallest_tp} holds all {s.batch}." if r.smallest_tp and r.smallest_tp != s.tp else "."))
        s = dataclasses.replace(s, batch=r.max_batch)
        plan = memory.plan(s.arch, s.gpu, s.precision, s.sparse, s.tp, s.batch, s.isl, s.osl, s.kv_bytes)
    items, pre, dec = time_shapes([s], cal.params)
    pre_s, dec_s = float(pre[0]), float(dec[0])
    fits = plan.fits
    price = s.gpu.price_per_hour if price_per_hour is None else _price(price_per_hour)
    phase = "decode" if dec_s > pre_s else "prefill"  # what bounds the throughput: its band's regime
    band, basis = cal.band(s.gpu.id, s.precision, s.arch.name, phase)
    tband, _ = cal.band(s.gpu.id, s.precision, s.arch.name, "ttft")
    if not fits:  # not even one sequence fits beside the weights: nothing runs
        where = (f"the smallest TP that fits is {r.smallest_tp}" if r.smallest_tp
                 else f"no TP up to {s.gpu.max_tp} fits")
        msg = (f"{s.arch.name} in {s.precision} does not fit on {s.tp} x {s.gpu.id} at ISL {s.isl} + OSL {s.osl} "
               f"({plan.total / GIB:.1f} GiB needed, {plan.capacity / GIB:.1f} GiB available); {where}.")
    if r.warning:
        msg = f"{msg} {r.warning}".strip()
    tput = s.batch * s.osl / (pre_s + dec_s) if fits else None
    steps = s.osl - 1
    return Estimate(
        model=s.arch.name, gpu=s.gpu.id, precision=s.precision, sparsity="2:4" if s.sparse else "none",
        tp=s.tp, batch=r.shape.batch, isl=s.isl, osl=s.osl,
        output_tokens_per_sec=_r(tput),
        output_tokens_per_sec_per_gpu=_r(tput / s.tp if tput else None),
        output_tokens_per_sec_low=_r(tput / (1 + band) if tput else None),
        output_tokens_per_sec_high=_r(tput * (1 + band) if tput else None),
        uncertainty_rel=round(band, 3),
        ttft_ms=_r(pre_s * 1e3) if fits else None,
        tpot_ms=_r(dec_s / steps * 1e3) if fits and steps > 0 else None,
        request_latency_ms=_r((pre_s + dec_s) * 1e3) if fits else None,
        fits_in_memory=fits, weights_gib=round(plan.weights / GIB, 3),
        kv_cache_gib=round(plan.kv_cache / GIB, 3), activations_gib=round(plan.activations / GIB, 3),
        reserve_gib=round(plan.reserve / GIB, 3), memory_total_gib=round(plan.total / GIB, 3),
        memory_capacity_gib=round(plan.capacity / GIB, 3), max_batch_that_fits=r.max_batch,
        smallest_tp_that_fits=r.smallest_tp, price_per_hour_usd=price,
        cost_per_million_output_tokens_usd=_r(price * s.tp / 3600 / tput * 1e6, 4) if tput else None,
        kv_cache_bytes_per_value=s.kv_bytes, calibrated_from=basis, provenance="estimated",
        provenance_detail={"kind": "estimated", "method": "calibrated per-layer roofline (engine.perf)",
                           "calibration": cal.summary(), "gpu_source": s.gpu.source,
                           "architecture_source": s.arch.source[:300],
                           "uncertainty": f"+/-{band:.0%} band: "
                                          f"{cal.band_how(s.gpu.id, s.precision, s.arch.name, phase)}"},
        breakdown_s={k: round(v, 6) for k, v in items.breakdown(cal.params).items()}, message=msg,
        band_nominal=cal.band_nominal(s.gpu.id, s.arch.name, phase),
        ttft_ms_low=_r(pre_s * 1e3 / (1 + tband)) if fits else None,
        ttft_ms_high=_r(pre_s * 1e3 * (1 + tband)) if fits else None)
