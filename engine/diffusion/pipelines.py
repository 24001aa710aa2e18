"""What a diffusion sweep needs from a model, behind one small interface (`Denoising`), so the bundled
digits model and diffusers pipelines from a local folder (or a Hugging Face id) share one sweep flow.

A `Denoising` holds the pristine denoiser (`unet`) and knows how to sample images with any copy of it
from fixed seeds, what its calibration inputs are, how to call it once, and what it can be scored
with. The sweep quantizes copies of `unet` and compares what `sample` draws with them.

    source = check_source(ModelRef(folder), gen)       # files and settings, before any work
    model = load(source, "cpu"); model.check(gen)       # settings against the loaded config
    baseline = model.sample(model.unet, model.conditions(gen), gen, gen.seed)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Protocol

from engine.diffusion import BUNDLED_LABEL
from engine.errors import ModelLoadError, SpecError
from engine.spec import ModelRef

BUNDLED_SOURCES = ("bundled-diffusion",)
BUNDLED_NAME = f"digits UNet (bundled; {BUNDLED_LABEL})"
BUNDLED_SCHEDULERS = ("ddim", "default")  # the bundled sampler is DDIM (eta 0)
SAMPLE_BATCH = 16  # images per sampler batch (the same for baseline and recipes, so batching never differs)


@dataclass
class Sample:
    """Images in [-1, 1] (N, C, H, W) and the final latents before decoding (None: the images are the latents)."""

    images: Any
    latents: Any = None


class Denoising(Protocol):
    name: str  # the results' model name
    label: str  # where the model comes from (provenance)
    unet: Any  # the pristine denoiser; recipes quantize copies of it
    conditioning: str  # "labels" or "prompts"
    condition_kwarg: str  # the denoiser's keyword for the condition ("class_labels", "encoder_hidden_states")
    image_side: int  # pixels per side of the generated images
    num_train_timesteps: int

    def check(self, gen) -> None: ...  # the generation settings against the loaded model (SpecError)
    def conditions(self, gen) -> list: ...  # one condition per image (a label or a prompt)
    def sample(self, unet, conditions: list, gen, seed: int) -> Sample: ...
    def calibration_inputs(self, gen) -> list: ...  # [(sample, timestep, condition)] from other seeds
    def call(self, unet, x, t, cond) -> Any: ...  # one denoiser call (its `.sample` is the prediction)
    def timing_inputs(self, batch: int, gen) -> tuple: ...  # (initial latents, condition) for the speed stage
    def denoise_loop(self, unet, x0, cond, gen) -> Any: ...  # the whole loop from x0 (end-to-end timing)
    def task_accuracy(self, images, conditions: list) -> float | None: ...
    def describe(self, gen) -> dict: ...  # sampler, latents and task-metric wording for provenance


# --- which model, checked before any work ---------------------------------------------------------

@dataclass(frozen=True)
class Source:
    ref: ModelRef
    layout: Any = None  # engine.diffusion.local.PipelineLayout; None for the bundled model

    @property
    def bundled(self) -> bool:
        return self.layout is None


def check_source(ref: ModelRef, gen, fetch=None) -> Source:
    """The model `ref` names, with everything the files and the settings alone can tell checked
    (layout, safetensors, custom code, labels vs prompts); raises TlabError saying what to do."""
    if ref.source in BUNDLED_SOURCES:
        _check_bundled_settings(gen)
        return Source(ref)
    from engine.diffusion.local import check_conditioning, locate

    layout = locate(ref, fetch)
    check_conditioning(layout.conditioning, gen)
    return Source(ref, layout)


def load(source: Source, device: str) -> Denoising:
    if source.bundled:
        from engine.diffusion.bundled import load_bundled

        return BundledDigits(load_bundled(device))
    return DiffusersPipeline.load(source.layout, source.ref.trust_remote_code, device)


def _check_bundled_settings(gen) -> None:
    from engine.diffusion.bundled import NUM_DIGITS

    if gen.prompts:
        raise SpecError("The bundled diffusion model draws digits by class label; it takes no text prompts. "
                        "Give labels (digits 0-9) instead.")
    if gen.scheduler not in BUNDLED_SCHEDULERS:
        raise SpecError(f"The bundled model samples with DDIM; scheduler {gen.scheduler!r} is not supported yet "
                        "(use 'ddim' or 'default').")
    bad = [v for v in gen.labels if v >= NUM_DIGITS]
    if bad:
        raise SpecError(f"Labels must be digits from 0 to 9 for the bundled model, got {bad[:5]}.")
    _check_guidance(gen)


def _check_guidance(gen) -> None:
    if gen.guidance_scale is not None and gen.guidance_scale < 1:
        raise SpecError(f"The guidance scale must be at least 1 (or none), got {gen.guidance_scale}.")


def _check_steps(gen, num_train_timesteps: int) -> None:
    if gen.steps > num_train_timesteps:
        raise SpecError(f"steps can be at most {num_train_timesteps} (the scheduler's training timesteps), "
                        f"got {gen.steps}; use fewer steps.")


def unet_factor(unet) -> int:
    """How much the UNet downsamples: a latent side must be a multiple of it."""
    return 2 ** (len(unet.config.down_block_types) - 1)


# --- the bundled digits model ------------------------------------------------------------------------

class BundledDigits:
    """The bundled class-conditional digits UNet (no VAE), with its digit classifier as task metric."""

    conditioning, condition_kwarg = "labels", "class_labels"

    def __init__(self, model):
        self.model, self.unet = model, model.unet
        self.name, self.label = BUNDLED_NAME, BUNDLED_LABEL
        self.image_side = int(model.unet.config.sample_size)
        self.num_train_timesteps = int(model.scheduler.config.num_train_timesteps)

    def check(self, gen) -> None:
        from engine.diffusion.bundled import check_request

        factor, size = unet_factor(self.unet), self.image_side
        if gen.resolution is not None:
            if gen.resolution % factor:
                raise SpecError(f"Resolution {gen.resolution} is not divisible by {factor}, the UNet's downsampling "
                                f"factor; use a multiple of {factor} (the bundled model's own is {size}).")
            if gen.resolution != size:
                raise SpecError(f"The bundled model draws {size}x{size} images (its classifier reads that size); "
                                f"resolution {gen.resolution} is not supported. Leave it unset or give {size}.")
        check_request(gen.labels, gen.steps, gen.guidance_scale, self.num_train_timesteps)

    def conditions(self, gen) -> list:
        return [v for v in gen.labels for _ in range(gen.images_per_condition)]

    def sample(self, unet, conditions: list, gen, seed: int) -> Sample:
        from engine.diffusion.bundled import generate

        return Sample(generate(unet, self.model.scheduler, conditions, steps=gen.steps, seed=seed,
                               guidance_scale=gen.guidance_scale, batch_size=64))

    def calibration_inputs(self, gen) -> list:
        from engine.diffusion.quantize import calibration_inputs

        labels = [gen.labels[i % len(gen.labels)] for i in range(gen.calib_images)]
        # other seeds than the evaluation's, so calibration never sees the images it is scored on
        return calibration_inputs(self.unet, self.model.scheduler, labels, gen.steps, gen.seed + 1_000_003,
                                  gen.guidance_scale)

    def call(self, unet, x, t, cond):
        return unet(x, t, class_labels=cond)

    def timing_inputs(self, batch: int, gen) -> tuple:
        import torch

        from engine.diffusion.bundled import initial_noise

        x0 = initial_noise(batch, self.image_side, gen.seed, int(self.unet.config.in_channels))
        return x0, torch.tensor([gen.labels[i % len(gen.labels)] for i in range(batch)])

    def denoise_loop(self, unet, x0, cond, gen):
        from engine.diffusion.bundled import ddim_from

        sched = ddim_from(self.model.scheduler)
        sched.set_timesteps(gen.steps)
        x = x0.clone()
        for t in sched.timesteps:
            x = sched.step(unet(x, t, class_labels=cond).sample, t, x, eta=0.0).prev_sample
        return x

    def task_accuracy(self, images, conditions: list) -> float | None:
        from engine.diffusion.bundled import task_accuracy

        return task_accuracy(self.model.classifier, images, conditions)

    def describe(self, gen) -> dict:
        return {"sampler": "DDIM", "latents": "for this model (no VAE) the final latents are the images",
                "task": "the share the bundled digit classifier reads as the digit asked for"}


# --- diffusers pipelines from a folder ----------------------------------------------------------------

class DiffusersPipeline:
    """A class-conditional UNet2DModel or a Stable-Diffusion-style text-to-image pipeline, sampled by this
    module's own loop (so the same seeds give the same start for the baseline and every recipe, and the
    denoiser can be swapped for a quantized copy). The text encoder and the VAE stay unquantized."""

    def __init__(self, layout, unet, scheduler, vae=None, text_encoder=None, tokenizer=None, pipe=None):
        self.layout, self.unet, self.scheduler = layout, unet, scheduler
        self.vae, self.text_encoder, self.tokenizer = vae, text_encoder, tokenizer
        self.pipe = pipe  # the loaded diffusers pipeline (None for a bare UNet): its own prompt encoding
        # SDXL-style: two text encoders, and added conditions (pooled text embeddings, size/crop time ids)
        self.added_conditions = getattr(unet.config, "addition_embed_type", None) == "text_time"
        self.conditioning = layout.conditioning
        self.condition_kwarg = "encoder_hidden_states" if self.conditioning == "prompts" else "class_labels"
        kind = "text-to-image" if self.conditioning == "prompts" else "class-conditional"
        self.name = f"{layout.name} ({layout.pipeline_class or layout.unet_class}, {kind})"
        self.label = f"diffusers pipeline from {layout.hf_id or layout.folder}"
        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        self.image_side = int(unet.config.sample_size) * self.vae_factor
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self._embeddings: dict[str, Any] = {}

    @classmethod
    def load(cls, layout, trust_remote_code: bool, device: str) -> DiffusersPipeline:
        import diffusers

        try:
            if layout.is_pipeline:
                pipe = diffusers.DiffusionPipeline.from_pretrained(
                    str(layout.folder), use_safetensors=True, local_files_only=True,
                    trust_remote_code=trust_remote_code)
                parts = {k: getattr(pipe, k, None) for k in ("unet", "scheduler", "vae", "text_encoder", "tokenizer")}
                parts["pipe"] = pipe
                for extra in ("text_encoder_2",):  # SDXL's second text encoder runs in float32 as the first
                    if getattr(pipe, extra, None) is not None:
                        setattr(pipe, extra, getattr(pipe, extra).to(device).float().eval())
            else:
                unet = diffusers.UNet2DModel.from_pretrained(str(layout.unet_dir), use_safetensors=True,
                                                             local_files_only=True)
                config = diffusers.DDIMScheduler.load_config(str(layout.scheduler_dir))
                parts = {"unet": unet, "scheduler": _scheduler_class(config).from_config(config)}
        except (OSError, ValueError, EnvironmentError) as exc:
            raise ModelLoadError(f"Could not load the diffusers pipeline in {layout.folder}: {exc}. Check that it "
                                 "was saved with save_pretrained(..., safe_serialization=True).") from exc
        for name in ("unet", "vae", "text_encoder"):
            if parts.get(name) is not None:
                parts[name] = parts[name].to(device).float().eval()
        return cls(layout, **{k: v for k, v in parts.items() if v is not None})

    # checks against the loaded config
    def check(self, gen) -> None:
        _check_guidance(gen)
        _check_steps(gen, self.num_train_timesteps)
        factor = self.vae_factor * unet_factor(self.unet)
        if gen.resolution is not None and gen.resolution % factor:
            what = (f"{self.vae_factor} (VAE) x {unet_factor(self.unet)} (UNet)" if self.vae is not None
                    else "the UNet's downsampling factor")
            raise SpecError(f"Resolution {gen.resolution} is not divisible by {factor}, {what}; use a multiple of "
                            f"{factor} (this pipeline's own is {self.image_side}).")
        if self.conditioning == "labels":
            classes = self.unet.config.num_class_embeds
            if classes is None:
                raise SpecError(f"The UNet in {self.layout.unet_dir} has no class embedding (num_class_embeds), so "
                                "it cannot be asked for a class; give a class-conditional UNet2DModel.")
            bad = [v for v in gen.labels if v >= classes]
            if bad:
                raise SpecError(f"This UNet knows classes 0 to {classes - 1}; labels {bad[:5]} are out of range.")
            if gen.guidance_scale not in (None, 1.0):
                raise SpecError("Classifier-free guidance needs an unconditional class, which this class-conditional "
                                "UNet does not declare; leave the guidance scale unset.")

    def side(self, gen) -> int:
        """The latent side: the requested resolution (or the pipeline's own) over the VAE factor."""
        return (gen.resolution or self.image_side) // self.vae_factor

    def conditions(self, gen) -> list:
        items = gen.prompts if self.conditioning == "prompts" else gen.labels
        return [c for c in items for _ in range(gen.images_per_condition)]

    # sampling
    def _encode(self, prompts: list[str], side: int | None = None):
        """The text condition per prompt (computed once per prompt: the encoders are not quantized): the
        encoder's hidden states; for SDXL a dict with the pooled embeddings and the time ids of an
        uncropped `side` x `side` image too (engine.diffusion.conditions)."""
        import torch

        from engine.diffusion import conditions

        todo = [p for p in dict.fromkeys(prompts) if p not in self._embeddings]
        if todo:
            self._embeddings.update(zip(todo, self._encode_new(todo)))
        rows = [self._embeddings[p] for p in prompts]
        if not self.added_conditions:
            return torch.stack(rows)
        cond = conditions.cat([{k: v[None] for k, v in row.items()} for row in rows])
        side = side or self.image_side
        # SDXL's micro-conditioning: original size, crop top-left, target size (as its pipeline's defaults)
        cond["time_ids"] = torch.tensor([[side, side, 0, 0, side, side]] * len(rows), dtype=torch.float32,
                                        device=cond["text_embeds"].device)
        return cond

    def _encode_new(self, prompts: list[str]) -> list:
        import torch

        with torch.no_grad():
            if self.added_conditions:  # the pipeline's own encoding: both encoders, penultimate layers, pooled
                hidden, _, pooled, _ = self.pipe.encode_prompt(prompts, device=_device(self.unet),
                                                               do_classifier_free_guidance=False)
                if prompts == [""] and getattr(self.pipe.config, "force_zeros_for_empty_prompt", False):
                    hidden, pooled = torch.zeros_like(hidden), torch.zeros_like(pooled)  # SDXL's unconditional
                return [{"encoder_hidden_states": h.float(), "text_embeds": p.float()} for h, p in zip(hidden, pooled)]
            ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids
            return list(self.text_encoder(ids.to(_device(self.text_encoder)))[0].float())

    def _cond(self, conditions: list, side: int | None = None):
        import torch

        if self.conditioning == "prompts":
            return self._encode(list(conditions), side)
        return torch.tensor([int(c) for c in conditions], device=_device(self.unet))

    def call(self, unet, x, t, cond):
        from engine.diffusion.conditions import unet_kwargs

        return unet(x, t, **unet_kwargs(cond, self.condition_kwarg))

    def _scheduler(self, gen):
        config = dict(self.scheduler.config)
        if gen.scheduler == "default":
            return type(self.scheduler).from_config(config)
        import diffusers

        cls = {"ddim": diffusers.DDIMScheduler, "ddpm": diffusers.DDPMScheduler,
               "euler": diffusers.EulerDiscreteScheduler}[gen.scheduler]
        return cls.from_config(config)

    def denoise_loop(self, unet, x0, cond, gen, seed: int = 0):
        """The scheduler's loop from `x0`, with classifier-free guidance (the empty prompt as the
        unconditional one) when a scale above 1 is set; noise a stochastic scheduler adds is seeded."""
        import torch

        from engine.diffusion import conditions

        sched = self._scheduler(gen)
        sched.set_timesteps(gen.steps)
        guided = gen.guidance_scale is not None and gen.guidance_scale > 1.0 and self.conditioning == "prompts"
        uncond = conditions.expand_like(self._encode([""], x0.shape[-1] * self.vae_factor), cond) if guided else None
        noise = torch.Generator(device="cpu").manual_seed(int(seed))
        extra = {"generator": noise} if "generator" in inspect.signature(sched.step).parameters else {}
        dtype = next(unet.parameters()).dtype
        x = x0.to(_device(unet)) * sched.init_noise_sigma
        for t in sched.timesteps:
            xin = sched.scale_model_input(x, t).to(dtype)
            if guided:
                both = self.call(unet, torch.cat([xin, xin]), t, conditions.cat([cond, uncond])).sample.float()
                c, u = both.chunk(2)
                eps = u + gen.guidance_scale * (c - u)
            else:
                eps = self.call(unet, xin, t, cond).sample.float()
            x = sched.step(eps, t, x, **extra).prev_sample
        return x

    def sample(self, unet, conditions: list, gen, seed: int) -> Sample:
        import torch

        from engine.diffusion.bundled import initial_noise

        channels = int(self.unet.config.in_channels)
        noise = initial_noise(len(conditions), self.side(gen), seed, channels)  # image i: seed and i only
        images, latents = [], []
        with torch.no_grad():
            for start in range(0, len(conditions), SAMPLE_BATCH):
                part = conditions[start:start + SAMPLE_BATCH]
                x = self.denoise_loop(unet, noise[start:start + len(part)], self._cond(part, self.side(gen) *
                                                                                    self.vae_factor), gen, seed + start)
                latents.append(x.float().cpu())
                images.append(self._decode(x).float().clamp(-1, 1).cpu())
        out = torch.cat(images)
        return Sample(out, torch.cat(latents) if self.vae is not None else None)

    def _decode(self, latents):
        if self.vae is None:
            return latents
        scale = float(getattr(self.vae.config, "scaling_factor", 1.0) or 1.0)
        return self.vae.decode(latents.to(_device(self.vae)) / scale).sample

    def calibration_inputs(self, gen) -> list:
        from engine.diffusion.quantize import record_inputs

        items = gen.prompts if self.conditioning == "prompts" else gen.labels
        conds = [items[i % len(items)] for i in range(gen.calib_images)]
        # other seeds than the evaluation's, so calibration never sees the images it is scored on
        return record_inputs(self.unet, lambda: self.sample(self.unet, conds, gen, gen.seed + 1_000_003),
                             self.condition_kwarg)

    def timing_inputs(self, batch: int, gen) -> tuple:
        from engine.diffusion.bundled import initial_noise

        items = self.conditions(gen)
        conds = [items[i % len(items)] for i in range(batch)]
        return (initial_noise(batch, self.side(gen), gen.seed, int(self.unet.config.in_channels)),
                self._cond(conds, self.side(gen) * self.vae_factor))

    def task_accuracy(self, images, conditions: list) -> float | None:
        return None  # no judge ships with an arbitrary pipeline

    def describe(self, gen) -> dict:
        sched = type(self._scheduler(gen)).__name__
        latents = ("the final latents are the UNet's output before the VAE decodes it" if self.vae is not None
                   else "this pipeline has no VAE: the final latents are the images")
        return {"sampler": sched, "latents": latents,
                "task": None, "task_note": "no task metric for this pipeline (no judge model ships with it); "
                                           "CLIP score and LPIPS are not computed (no local weights for them)"}


def _scheduler_class(config: dict):
    """The scheduler class a bare UNet folder's scheduler_config.json names (diffusers' own only)."""
    import diffusers

    name = config.get("_class_name", "DDIMScheduler")
    cls = getattr(diffusers, name, None) if isinstance(name, str) and name.endswith("Scheduler") else None
    if cls is None:
        raise ModelLoadError(f"The scheduler config names {name!r}, which is not a diffusers scheduler; save a "
                             "diffusers scheduler (e.g. DDIMScheduler) in scheduler/.")
    return cls


def _device(module):
    return next(module.parameters()).device


def labels_view(model: Denoising, unet):
    """`unet` as a module called (sample, timestep, class_labels=condition), whatever its condition is:
    the form engine.diffusion.kernels' checks call a denoiser in."""
    if model.condition_kwarg == "class_labels":
        return unet
    from torch import nn

    class _View(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, t, class_labels=None):
            return model.call(self.inner, x, t, class_labels)

    return _View(unet)


__all__ = ["Denoising", "Sample", "Source", "check_source", "load", "labels_view"]
