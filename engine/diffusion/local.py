"""Where a diffusion pipeline's weights live, and whether they may be loaded: checked from the files
alone, before torch or diffusers is imported, so bad input is refused before any work.

Two layouts load:
- a diffusers pipeline folder (model_index.json), loaded with `DiffusionPipeline.from_pretrained(...,
  use_safetensors=True, local_files_only=True)`; a Hugging Face id is fetched into the local cache first
  (safetensors and configs only) and then goes through the same folder checks and loader;
- a bare UNet folder: `unet/` (or the folder itself holding the UNet's config.json) and `scheduler/`
  (or scheduler_config.json beside it), for a class-conditional UNet2DModel.

Pickle weights are never loaded (they can run code); neither is a pipeline's own Python code unless
the spec opts in (`ModelRef.trust_remote_code`, as for language models).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ModelLoadError, SpecError
from engine.spec import ModelRef

HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
DENOISERS = ("unet", "transformer")
# Denoiser classes the sweep can sample, calibrate and score, and what each is conditioned on.
SUPPORTED_UNETS = {"UNet2DModel": "labels", "UNet2DConditionModel": "prompts"}
KNOWN_LIBRARIES = ("diffusers", "transformers")
# What a Hugging Face download fetches: configs, safetensors, tokenizer files; never pickles or code.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]


@dataclass(frozen=True)
class PipelineLayout:
    """A checked pipeline on disk: its folder, the denoiser's folder and class, what it is conditioned
    on ('labels' or 'prompts'), and the components a model_index.json names (empty for a bare UNet)."""

    folder: Path
    unet_dir: Path
    unet_class: str
    conditioning: str
    scheduler_dir: Path | None  # None: the scheduler config sits in folder/model_index's scheduler/
    components: dict = field(default_factory=dict)  # name -> [library, class]
    pipeline_class: str | None = None
    hf_id: str | None = None

    @property
    def is_pipeline(self) -> bool:
        return self.pipeline_class is not None

    @property
    def name(self) -> str:
        return self.hf_id or self.folder.name


def looks_like_diffusion(source: str) -> bool:
    """Whether `source` is a local folder laid out as a diffusers pipeline or a bare diffusers UNet
    (the CLI's `--kind auto` uses this)."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        return False
    if (folder / "model_index.json").is_file() or any((folder / d / "config.json").is_file() for d in DENOISERS):
        return True
    return _config_class(folder / "config.json") in SUPPORTED_UNETS


def locate(ref: ModelRef, fetch=None) -> PipelineLayout:
    """The checked layout of `ref` (a local folder or a Hugging Face id), or a ModelLoadError saying
    what is wrong and what to do. `fetch(repo_id, revision, patterns) -> folder` downloads a hub id
    (default: huggingface_hub.snapshot_download); tests pass none and use folders only."""
    path = Path(ref.source).expanduser()
    hf_id = None
    if not path.exists():
        if ref.source.startswith((".", "/", "~")) or not HF_ID.match(ref.source):
            raise ModelLoadError(f"Diffusion model {ref.source!r} is not a local folder or a Hugging Face id. "
                                 "Give a folder with model_index.json (a diffusers pipeline) or with unet/ and "
                                 "scheduler/, a Hugging Face id, or 'bundled-diffusion' for the bundled model.")
        hf_id, path = ref.source, Path((fetch or _snapshot)(ref.source, ref.revision, HUB_PATTERNS))
    if not path.is_dir():
        raise ModelLoadError(f"{path} is a file; give the pipeline's folder (with model_index.json, or unet/ and "
                             "scheduler/).")
    layout = _pipeline(path, hf_id) if (path / "model_index.json").is_file() else _bare_unet(path)
    _check_code(layout, ref.trust_remote_code)
    return layout


def _snapshot(repo_id: str, revision: str | None, patterns: list[str]) -> str:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
    except Exception as exc:  # the hub raises many kinds; the message says which
        raise ModelLoadError(f"Could not fetch {repo_id!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
                             "Download it on a machine with internet (huggingface-cli download) and give the "
                             "local folder.") from exc


def _config_class(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("_class_name") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        raise ModelLoadError(f"{path} is not a readable JSON config; restore it from the model's source.") from None


def _read_index(folder: Path) -> dict:
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        raise ModelLoadError(f"{folder / 'model_index.json'} is not valid JSON; restore it from the model's "
                             "source.") from None
    if not isinstance(index, dict):
        raise ModelLoadError(f"{folder / 'model_index.json'} must be a JSON object (a diffusers pipeline index).")
    return index


def _pipeline(folder: Path, hf_id: str | None) -> PipelineLayout:
    index = _read_index(folder)
    components = {k: v for k, v in index.items()
                  if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[0] is not None}
    denoiser = next((d for d in DENOISERS if d in components), None)
    if denoiser is None:
        raise ModelLoadError(f"{folder} names no denoiser in model_index.json (no unet or transformer component). "
                             "Give a complete diffusers pipeline folder (it needs unet/ or transformer/).")
    den_dir = folder / denoiser
    if not (den_dir / "config.json").is_file():
        raise ModelLoadError(f"{folder} has no {denoiser}/ folder with config.json, though model_index.json names "
                             f"one: the pipeline is incomplete. Copy the {denoiser}/ folder from the model's source.")
    for name, (library, _) in components.items():
        if library in KNOWN_LIBRARIES and (folder / name).is_dir():
            _check_weights(folder / name)
    unet_class = _config_class(den_dir / "config.json") or components[denoiser][1]
    if unet_class not in SUPPORTED_UNETS:
        raise ModelLoadError(f"The denoiser of {folder} is a {unet_class}; diffusion sweeps run "
                             f"{' and '.join(SUPPORTED_UNETS)} denoisers so far (class-conditional and "
                             "Stable-Diffusion-style text-to-image pipelines).")
    conditioning = SUPPORTED_UNETS[unet_class]
    if conditioning == "prompts":
        _check_text_to_image(folder, components, _config(den_dir / "config.json"))
    if "scheduler" not in components:
        raise ModelLoadError(f"{folder} names no scheduler in model_index.json; add the scheduler/ folder.")
    pipeline_class = index.get("_class_name")
    return PipelineLayout(folder, den_dir, unet_class, conditioning, folder / "scheduler", components,
                          pipeline_class if isinstance(pipeline_class, str) else json.dumps(pipeline_class), hf_id)


def _check_text_to_image(folder: Path, components: dict, unet_config: dict) -> None:
    """A text-to-image pipeline has what its UNet is conditioned on: Stable Diffusion 1.x/2.x a text
    encoder, a tokenizer and a VAE; SDXL (added conditions 'text_time') a second encoder and tokenizer."""
    added = unet_config.get("addition_embed_type")
    if added not in (None, "text_time"):
        raise ModelLoadError(f"The UNet of {folder} takes added conditions of type {added!r}; diffusion sweeps "
                             "run Stable Diffusion 1.x/2.x and SDXL-style UNets (addition_embed_type None or "
                             "'text_time') so far.")
    needed = ("vae", "text_encoder", "tokenizer") + (("text_encoder_2", "tokenizer_2") if added else ())
    missing = [c for c in needed if c not in components]
    if missing:
        kind = "An SDXL-style pipeline needs two text encoders, two tokenizers" if added else \
            "A Stable-Diffusion-style pipeline needs a text encoder, a tokenizer"
        raise ModelLoadError(f"{folder} is a text-to-image pipeline without {', '.join(missing)}. {kind} and a "
                             "VAE; copy the missing folders from the model's source.")


def _config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ModelLoadError(f"{path} is not a readable JSON config; restore it from the model's source.") from None
    return config if isinstance(config, dict) else {}


def _bare_unet(folder: Path) -> PipelineLayout:
    unet_dir = next((folder / d for d in DENOISERS if (folder / d / "config.json").is_file()), None)
    if unet_dir is None and _config_class(folder / "config.json") in SUPPORTED_UNETS:
        unet_dir = folder
    if unet_dir is None:
        raise ModelLoadError(f"{folder} holds no diffusion denoiser: no model_index.json, no unet/ or transformer/ "
                             "folder with config.json, and no UNet config.json in it. Give a diffusers pipeline "
                             "folder, or a folder with unet/ and scheduler/.")
    _check_weights(unet_dir)
    unet_class = _config_class(unet_dir / "config.json")
    if unet_class != "UNet2DModel":
        raise ModelLoadError(f"{unet_dir} holds a {unet_class or 'denoiser of unknown class'}; a bare UNet folder "
                             "(without model_index.json) must hold a class-conditional UNet2DModel. For text-to-image, "
                             "give the whole pipeline folder (with model_index.json).")
    candidates = [folder / "scheduler", folder]
    sched = next((d for d in candidates if (d / "scheduler_config.json").is_file()), None)
    if sched is None:
        raise ModelLoadError(f"{folder} has a UNet but no scheduler (scheduler/scheduler_config.json); save the "
                             "scheduler the UNet was trained with beside it (scheduler.save_pretrained(folder / "
                             "'scheduler')).")
    return PipelineLayout(folder, unet_dir, unet_class, "labels", sched)


def _check_weights(component: Path) -> None:
    """A component folder with weights must have safetensors; pickles alone are refused."""
    files = [p.name for p in component.iterdir() if p.is_file()]
    if any(f.endswith(".safetensors") for f in files):
        return
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise ModelLoadError(f"{component} has only pickled weights ({', '.join(pickles)}); pickle files can run "
                             "code when loaded, so they are never loaded. Convert them once with diffusers "
                             "(from_pretrained(...).save_pretrained(folder, safe_serialization=True)) and use the "
                             "new folder.")
    if component.name in DENOISERS or ((component / "config.json").is_file()
                                       and not component.name.startswith(("scheduler", "tokenizer", "feature_extractor"))):
        raise ModelLoadError(f"{component} has no weights (*.safetensors); copy them from the model's source.")


def _check_code(layout: PipelineLayout, trust_remote_code: bool) -> None:
    """Custom pipeline or component code runs only when the user opted in."""
    why = []
    if layout.is_pipeline:
        try:
            index = json.loads((layout.folder / "model_index.json").read_text())
        except (OSError, ValueError):
            index = {}
        if not isinstance(index.get("_class_name"), str):
            why.append("model_index.json names a custom pipeline class")
        why += [f"component {n!r} comes from {lib!r}" for n, (lib, _) in layout.components.items()
                if lib not in KNOWN_LIBRARIES]
    code = sorted(p.relative_to(layout.folder).as_posix() for p in layout.folder.rglob("*.py"))
    if code:
        why.append("it ships Python files (" + ", ".join(code[:3]) + (", ..." if len(code) > 3 else "") + ")")
    if why and not trust_remote_code:
        raise ModelLoadError(f"{layout.folder} needs its own code to load ({'; '.join(why)}). Tradeoff Lab does not "
                             "run a model's own code unless you opt in (--trust-remote-code in the CLI); only do "
                             "that for pipelines whose authors you trust.")


def check_conditioning(layout_conditioning: str, gen) -> None:
    """Labels go to class-conditional pipelines, prompts to text-to-image ones; refuse the other."""
    if layout_conditioning == "prompts":
        if not gen.prompts:
            raise SpecError("This is a text-to-image pipeline: give at least one prompt (--prompts 'a red "
                            "circle|a blue square').")
        if gen.labels:
            raise SpecError("This is a text-to-image pipeline: it takes prompts, not class labels. Leave the labels "
                            "empty (the CLI does when only --prompts is given).")
    elif gen.prompts:
        raise SpecError("This pipeline is class-conditional: it takes class labels, not text prompts. Give labels "
                        "(--labels 0,1,2) instead.")


def _vae_factor(layout: PipelineLayout) -> int:
    vae = layout.folder / "vae" / "config.json"
    return 2 ** (len(_config(vae).get("block_out_channels", [0])) - 1) \
        if layout.is_pipeline and "vae" in layout.components and vae.is_file() else 1


def image_side(layout: PipelineLayout) -> int:
    """The side of the images the pipeline draws by default, from its configs alone: the UNet's
    sample size times the VAE's downsampling (1 without a VAE)."""
    size = _config(layout.unet_dir / "config.json").get("sample_size", 0)
    return int(size[0] if isinstance(size, (list, tuple)) else size) * _vae_factor(layout)


def size_factor(layout: PipelineLayout) -> int:
    """What an image side must be a multiple of: the VAE's downsampling times the UNet's."""
    blocks = _config(layout.unet_dir / "config.json").get("down_block_types") or [None]
    return _vae_factor(layout) * 2 ** (len(blocks) - 1)


def scheduler_class(layout: PipelineLayout) -> str | None:
    """The class name of the pipeline's own scheduler, from its config file."""
    config = (layout.scheduler_dir or layout.folder / "scheduler") / "scheduler_config.json"
    name = _config(config).get("_class_name") if config.is_file() else None
    return name if isinstance(name, str) else None
