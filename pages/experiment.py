"""Experiment: pick a model kind and a model, the recipes to try, the data (language models) or the images
to generate (diffusion models) and the workload; see the grid and how long it will take; Run queues one
sweep job and returns at once."""

import hashlib

import pandas as pd
import streamlit as st

from app import data_check, nav, state, sweeps
from app.number_fields import STALE_MESSAGE, changed_fields, long_run_label, number_field, snapshot
from engine import devices, registry
from engine.access import WebPolicy
from engine.diffusion import local
from engine.errors import TlabError
from engine.models.bundled import BUNDLED_NAME
from engine.paths import tlab_home
from engine.spec import BUNDLED_MODEL, DataSpec, GenerationSpec, ModelRef, TaskAccuracySpec, Workload
from engine.task_accuracy import OFFLINE_TASK
from engine.time_estimate import estimate_for_spec, format_duration, same_device

MODEL_KINDS = {"bundled": "Bundled model (offline)", "hf": "Hugging Face id", "folder": "Local folder"}
DATA_KINDS = {"bundled": "Bundled text (offline)", "upload": "Upload a file", "path": "File path or hf:dataset"}
BACKENDS = {b.name: b.label + (" (CPU or GPU)" if b.name == "torch" else " (NVIDIA GPU)")
            for b in registry.BACKENDS.values()}
BATCH_CHOICES = [1, 2, 4, 8, 16, 32, 64, 128]
# Every widget a form's jobs depend on: the Run callback checks them against what was rendered.
LM_KEYS = ["sweep_kind", "model_kind", "hf_id", "hf_revision", "hf_trust", "model_folder", "model_gguf",
           "sparsities", "kv_caches", "data_kind", "data_upload", "data_path", "calib_size", "calib_seq_len",
           "eval_tokens", "eval_seq_len", "task_enable", "task_names", "task_limit", "measure_speed", "backend", "input_len", "output_len", "batch_sizes",
           "exp_name", "confirm_long_run"]
DIFFUSION_KEYS = ["sweep_kind", "diff_model", "diff_folder", "diff_labels", "diff_class_labels", "diff_prompts",
                  "diff_images", "diff_steps", "diff_calib", "diff_guided", "diff_guidance", "diff_measure_speed",
                  "diff_scheduler", "diff_resolution",
                  "diff_batch_sizes", "exp_name"]
DIFFUSION_MODELS = {"bundled": "Bundled digits model (offline)", "folder": "Local pipeline folder"}
SCHEDULERS = {"default": "The pipeline's own", "ddim": "DDIM", "ddpm": "DDPM", "euler": "Euler"}


def _run_clicked(jobs: list[tuple[dict, str]], rendered: dict) -> None:
    """Run button callback. `jobs` and `rendered` (the form's widget values) are those of the render the user
    saw; st.session_state holds the values committed with the click: queue only when they are the same."""
    if changed_fields(rendered, st.session_state):
        st.session_state["run_refused"] = STALE_MESSAGE
        return
    _queue(jobs)


def _queue(jobs: list[tuple[dict, str]]) -> None:
    """Queue the job(s), remember them for the message, and name the next sweep."""
    queued = []
    for payload, title in jobs:
        try:
            queued.append((state.queue_sweep(payload, title), title, None))
        except TlabError as e:
            queued.append((None, title, str(e)))
    st.session_state["last_queued"] = queued
    st.session_state["exp_name"] = sweeps.experiment_name()


def _save_upload(upload) -> str:
    """Keep an uploaded calibration file under $TLAB_HOME/uploads (named by content) and return its path."""
    data = upload.getvalue()
    suffix = ".jsonl" if upload.name.lower().endswith(".jsonl") else ".txt"
    path = tlab_home() / "uploads" / f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def _pipeline_folder(problems: list[str]):
    """(ModelRef, layout, image side) of the local diffusers folder the user names, or Nones with the problem
    said. The web policy first: a folder outside the allowed ones is not even looked at."""
    policy = WebPolicy.from_env()
    folder = st.text_input("Folder with model_index.json (a diffusers pipeline), or with unet/ and scheduler/",
                           key="diff_folder").strip()
    st.caption("Safetensors weights only; a pipeline's own code is never run from the app. Folders under: "
               + ", ".join(str(d) for d in policy.allowed_dirs) + " (set by the administrator).")
    if not folder:
        problems.append("Enter the pipeline's folder.")
        return None, None, None
    try:
        policy.check_model(folder, None, False)
        layout = local.locate(ModelRef(folder))
        side = local.image_side(layout)
    except TlabError as e:
        problems.append(str(e))
        return None, None, None
    kind = "text-to-image: draws from prompts" if layout.conditioning == "prompts" else "class-conditional: draws by label"
    st.caption(f"{layout.pipeline_class or layout.unet_class} ({kind}), {side}x{side} images. Quality is PSNR and "
               "SSIM of the images and final latents against the unquantized pipeline; no task metric.")
    return ModelRef(folder), layout, side


def _conditions(layout, problems: list[str]) -> tuple[tuple, tuple]:
    """(labels, prompts) for the chosen model: digits for the bundled one, else what the pipeline takes."""
    if layout is None:
        demo = sweeps.DIFFUSION_DEMO_GENERATION
        labels = st.multiselect("Class labels (digits)", list(range(10)), default=demo["labels"], key="diff_labels",
                                help="The digits to draw; each is drawn with the same seeds by the baseline and "
                                     "every recipe.")
        return tuple(sorted(labels)), ()
    if layout.conditioning == "prompts":
        text = st.text_area("Prompts (one per line)", value="a red circle\na blue square", key="diff_prompts",
                            help="Each prompt is drawn with the same seeds by the baseline and every recipe.")
        return (), tuple(line.strip() for line in text.splitlines() if line.strip())
    text = st.text_input("Class labels (comma-separated)", value="0, 1", key="diff_class_labels",
                         help="Class indices the UNet was trained with.")
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v), ()
    except ValueError:
        problems.append(f"Class labels must be whole numbers separated by commas, got {text!r}.")
        return (), ()


def _sampler_and_size(layout, side: int, problems: list[str]) -> tuple[str, int | None]:
    """(scheduler, resolution or None for the model's own) for the chosen model: the bundled model draws
    16x16 digits with DDIM; a pipeline's sampler and image side can be chosen."""
    c1, c2 = st.columns(2)
    if layout is None:
        c1.caption(f"Sampler: DDIM (the bundled model's own); {side}x{side} images (its classifier reads that size).")
        return "ddim", None
    labels = {**SCHEDULERS, "default": f"{SCHEDULERS['default']} ({local.scheduler_class(layout) or 'as saved'})"}
    scheduler = c1.selectbox("Scheduler", list(labels), key="diff_scheduler", format_func=labels.get,
                             help="The sampler every recipe and the baseline use, from the same seeds.")
    factor = local.size_factor(layout)
    resolution = number_field(c2, "Resolution (pixels per side)", "diff_resolution", side, factor, 4096, problems,
                              step=factor, help=f"A multiple of {factor} (the VAE's and the UNet's downsampling); "
                                                f"the pipeline's own is {side}.")
    if resolution is not None and resolution % factor:
        problems.append(f"The resolution must be a multiple of {factor} (the VAE's and the UNet's downsampling); "
                        f"{resolution} is not. Try {max(factor, resolution // factor * factor)}.")
        return scheduler, None
    return scheduler, (None if resolution == side else resolution)


def _diffusion_speed(precision: str, measure: bool) -> str:
    """What the sweep will do about this recipe's speed on this machine (the speed stage's own answer)."""
    from engine.diffusion.speed_support import why_not_timed

    if not measure:
        return "not asked"
    why = why_not_timed(precision, "cuda" if state.device_report()[0] else "cpu")  # sweeps run on "auto"
    return f"quality only: {why}" if why else "measured here on real kernels"


def _diffusion_form() -> None:
    """The diffusion model's sweep: the bundled digits model or a local pipeline, its precisions, what it
    generates, the speed."""
    st.caption("Choose what to try. Each checked precision is one recipe; the unquantized baseline always runs "
               "too, with the same seeds, because every quality loss and speedup is measured against it.")
    problems: list[str] = []

    st.subheader("1. Model")
    which = st.radio("Diffusion model", list(DIFFUSION_MODELS), format_func=DIFFUSION_MODELS.get, horizontal=True,
                     key="diff_model", label_visibility="collapsed")
    model = layout = None
    side = sweeps.DIFFUSION_IMAGE_SIDE
    if which == "bundled":
        st.markdown(f"**{sweeps.DIFFUSION_MODEL_LABEL}**")
        st.caption("A small class-conditional UNet that draws 16x16 digits, with a digit classifier that scores "
                   "them: ships with the app, needs no download.")
    else:
        model, layout, side = _pipeline_folder(problems)
    ready = which == "bundled" or layout is not None  # a folder that failed its checks has nothing to set

    st.subheader("2. Recipes")
    runnable = {c.name: c for c in state.precision_choices(None)}
    names = [p.name for p in registry.precisions_for("diffusion") if p.name not in registry.BASELINES]
    columns = st.columns(3)
    precisions = []
    for i, name in enumerate(names):
        choice, prec = runnable.get(name), registry.precision(name)
        ok = choice is None or choice.runnable
        if columns[i % 3].checkbox(prec.label, key=f"diff_prec_{name}", disabled=not ok,
                                   value=ok and name in sweeps.DIFFUSION_DEMO_PRECISIONS,
                                   help=prec.description if ok else choice.reason) and ok:
            precisions.append(name)
    for name in names:
        if runnable.get(name) is not None and not runnable[name].runnable:
            st.caption(f":material/block: {runnable[name].label} is not available here: {runnable[name].reason}")

    st.subheader("3. Images to generate")
    demo = sweeps.DIFFUSION_DEMO_GENERATION
    labels, prompts = _conditions(layout, problems) if ready else ((), ())
    c1, c2, c3 = st.columns(3)
    per_label = number_field(c1, "Images per prompt" if prompts else "Images per label", "diff_images",
                             demo["images_per_condition"], 1, 1024, problems)
    steps = number_field(c2, "Denoising steps", "diff_steps", demo["steps"], 1, 1000, problems)
    calib = number_field(c3, "Calibration images", "diff_calib", demo["calib_images"], 1, 4096, problems,
                         help="Images whose denoising steps (every timestep) feed calibration.")
    c1, c2 = st.columns([1, 2])
    guided = c1.checkbox("Classifier-free guidance", value=False, key="diff_guided",
                         help="Each step also runs the unconditional model and pushes away from it.")
    guidance = number_field(c2, "Guidance scale", "diff_guidance", 2.0, 1.0, 100.0, problems, step=0.5) \
        if guided else None
    scheduler, resolution = _sampler_and_size(layout, side, problems) if ready else ("ddim", None)
    generation = None
    if ready and None not in (per_label, steps, calib) and (guidance is not None or not guided):
        try:
            generation = GenerationSpec(labels=labels, prompts=prompts, images_per_condition=per_label,
                                        steps=steps, guidance_scale=guidance, calib_images=calib,
                                        scheduler=scheduler, resolution=resolution)
            if layout is not None:  # labels for a class-conditional pipeline, prompts for a text-to-image one
                local.check_conditioning(layout.conditioning, generation)
        except TlabError as e:
            problems.append(str(e))
            generation = None

    st.subheader("4. Speed")
    measure = st.checkbox("Measure speed on this machine", value=True, key="diff_measure_speed",
                          help="Times the denoiser step of each recipe with real low-precision kernels. Recipes "
                               "without fast kernels here get quality only, never a simulated speed.")
    batch = None
    if measure:
        batch = st.multiselect("Batch sizes", BATCH_CHOICES, default=list(sweeps.DIFFUSION_DEMO_BATCH_SIZES),
                               key="diff_batch_sizes", help="Images denoised at once.")
        if not batch:
            problems.append("Pick at least one batch size, or untick 'Measure speed'.")

    st.subheader("5. The sweep")
    name = st.text_input("Experiment name", key="exp_name", value=None if "exp_name" in st.session_state
                         else sweeps.experiment_name(), help="Results are grouped under this name.")
    if not name or not name.strip():
        problems.append("Give the experiment a name.")
    if not precisions:
        problems.append("Check at least one precision to make a recipe.")
    jobs = []
    if not problems and generation is not None:
        try:
            jobs = sweeps.diffusion_sweep_jobs(name.strip(), precisions, generation, batch if measure else None,
                                               model, resolution or side)
        except TlabError as e:  # the SweepSpec's own checks
            problems.append(str(e))
    if precisions:
        rows = [{"Recipe": "Unquantized baseline (always runs)", "Quality": "reference",
                 "Speed": "measured here" if measure else "not asked"}]
        quality = "task metric, PSNR, SSIM vs baseline" if which == "bundled" else \
            "PSNR, SSIM (images and latents) vs baseline"
        rows += [{"Recipe": registry.precision(p).label, "Quality": quality, "Speed": _diffusion_speed(p, measure)}
                 for p in precisions]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="diff_grid_preview")
        if generation is not None:
            count = len(generation.labels or generation.prompts) * generation.images_per_condition
            st.caption(f"{count} images per recipe, {generation.steps} steps each."
                       + (" The demo's settings take about a minute on a laptop CPU." if which == "bundled" else ""))
    for problem in problems:
        st.warning(problem)
    rendered = snapshot(st.session_state, DIFFUSION_KEYS + [f"diff_prec_{n}" for n in names])
    st.button("Run", type="primary", key="run_diffusion_sweep", disabled=not jobs, on_click=_run_clicked,
              args=(jobs, rendered), help="Queues the sweep; it runs in the background while you use the app.")
    _queued_message()


def _queued_message() -> None:
    if refused := st.session_state.pop("run_refused", None):
        st.warning(refused)
    queued = st.session_state.pop("last_queued", None)
    for job_id, job_title, error in queued or []:
        if error:
            st.error(f"The sweep was not queued: {error}")
        else:
            st.success(f"Queued job #{job_id}: {job_title}. It runs in the background.")
    if queued and any(job_id for job_id, _, _ in queued):
        st.page_link(nav.page("jobs"), label="Watch it on the Jobs page", icon=":material/hourglass_top:")


st.title("Experiment")
sweep_kind = st.radio("Model kind", list(registry.MODEL_KINDS), format_func=lambda k: registry.MODEL_KINDS[k].label,
                      horizontal=True, key="sweep_kind",
                      help="Language models are measured by perplexity on text; diffusion models by the images "
                           "they draw.")
if sweep_kind == "diffusion":
    _diffusion_form()
    st.stop()
st.caption("Choose what to try. Each checked precision × sparsity × KV-cache choice is one recipe; the BF16 "
           "baseline always runs too, because every accuracy loss and speedup is measured against it.")
problems: list[str] = []
policy = WebPolicy.from_env()

# --- model --------------------------------------------------------------------------------------
st.subheader("1. Model")
model_kind = st.radio("Model", list(MODEL_KINDS), format_func=MODEL_KINDS.get, horizontal=True, key="model_kind",
                      label_visibility="collapsed")
if model_kind == "bundled":
    model = ModelRef(BUNDLED_MODEL)
    st.caption(f"{BUNDLED_NAME}: ships with the app, needs no download.")
elif model_kind == "hf":
    c1, c2 = st.columns([3, 1])
    hf_id = c1.text_input("Hugging Face model id", placeholder="HuggingFaceTB/SmolLM2-360M", key="hf_id").strip()
    revision = c2.text_input("Revision (optional)", key="hf_revision").strip() or None
    trust = False
    if policy.trust_remote_code:  # the administrator's choice (engine.access); off by default
        trust = st.checkbox("Trust remote code", key="hf_trust", help="Runs Python code that comes with the "
                            "model. Only for models whose authors you trust; most models do not need it.")
    st.caption("Downloaded when the job runs; this machine needs access to huggingface.co.")
    model = ModelRef(hf_id, revision, None, trust) if hf_id else None
    if not hf_id:
        problems.append("Enter a Hugging Face model id (for example HuggingFaceTB/SmolLM2-360M).")
else:
    c1, c2 = st.columns([3, 1])
    folder = c1.text_input("Folder with config.json and *.safetensors, or a .gguf file", key="model_folder").strip()
    gguf = c2.text_input("GGUF file in it (optional)", key="model_gguf").strip() or None
    model = ModelRef(folder, None, gguf, False) if folder else None
    st.caption("Folders under: " + ", ".join(str(d) for d in policy.allowed_dirs) + " (set by the administrator).")
    if not folder:
        problems.append("Enter the model's folder.")
if model is not None and model_kind != "bundled":
    try:  # the policy first: a path outside the allowed folders is not even looked at
        policy.check_model(model.source, model.gguf_file, model.trust_remote_code)
        from engine.models.loader import resolve

        resolve(model)
    except TlabError as e:
        problems.append(str(e))

# --- recipes ------------------------------------------------------------------------------------
st.subheader("2. Recipes")
choices = [c for c in state.precision_choices(None) if c.name != "bf16"]
st.markdown("**Precisions**")
DEFAULT_PRECISIONS = sweeps.DEMO_PRECISIONS
columns = st.columns(3)
precisions = []
for i, choice in enumerate(choices):
    prec = registry.precision(choice.name)
    checked = columns[i % 3].checkbox(
        f"{choice.label}", key=f"prec_{choice.name}", value=choice.runnable and choice.name in DEFAULT_PRECISIONS,
        disabled=not choice.runnable, help=choice.reason if not choice.runnable else prec.description)
    if checked and choice.runnable:
        precisions.append(choice.name)
for choice in choices:
    if not choice.runnable:
        st.caption(f":material/block: {choice.label} is not available here: {choice.reason}")
c1, c2 = st.columns(2)
sparsities = c1.multiselect("2:4 sparsity", list(registry.SPARSITIES), default=["none"], key="sparsities",
                            format_func=lambda s: registry.SPARSITIES[s].label,
                            help="2:4 structured pruning before quantization; 'dense' keeps every weight.")
kv_caches = c2.multiselect("KV cache precision", list(registry.KV_CACHE), default=["auto"], key="kv_caches",
                           format_func=lambda k: "same as activations" if k == "auto" else k.upper(),
                           help="FP8 KV cache halves the cache memory at long contexts.")
recipes = sweeps.recipe_grid(precisions, sparsities, kv_caches) if precisions or sparsities != ["none"] \
    or kv_caches != ["auto"] else []

# --- data ---------------------------------------------------------------------------------------
st.subheader("3. Calibration and evaluation data")
data_kind = st.radio("Data", list(DATA_KINDS), format_func=DATA_KINDS.get, horizontal=True, key="data_kind",
                     label_visibility="collapsed")
data_source = "bundled"
if data_kind == "bundled":
    st.caption("Python's own documentation text, shipped with Python; calibration and evaluation use disjoint parts.")
elif data_kind == "upload":
    upload = st.file_uploader("A .txt file (paragraphs separated by blank lines) or .jsonl with a \"text\" field",
                              type=["txt", "jsonl"], key="data_upload")
    if upload is None:
        problems.append("Upload a calibration text file, or choose the bundled text.")
        data_source = ""
    else:
        data_source = _save_upload(upload)
else:
    data_source = st.text_input("Path to a .txt/.jsonl file, or hf:NAME[:CONFIG]:SPLIT", key="data_path").strip()
    if not data_source:
        problems.append("Enter a data file path or hf: dataset.")
    else:
        try:
            policy.check_data(data_source)
        except TlabError as e:
            problems.append(str(e))
            data_source = ""  # not read, not even to count its tokens
c1, c2, c3, c4 = st.columns(4)
calib_size = number_field(c1, "Calibration sequences", "calib_size", 32, 1, 4096, problems)
calib_seq_len = number_field(c2, "Tokens per calibration sequence", "calib_seq_len", 256, 16, 8192, problems,
                             step=16)
eval_tokens = number_field(c3, "Evaluation tokens", "eval_tokens", 8192, 128, 1_000_000, problems, step=512)
eval_seq_len = number_field(c4, "Evaluation window (tokens)", "eval_seq_len", 512, 16, 8192, problems, step=16)
data = None
if None not in (calib_size, calib_seq_len, eval_tokens, eval_seq_len) and data_source:
    try:
        data = DataSpec(data_source, calib_size, calib_seq_len, eval_tokens, eval_seq_len)
    except TlabError as e:
        problems.append(str(e))
if data_source:  # sizes beyond the text would otherwise fail only once the job starts
    with st.spinner("Counting the tokens of the text (once per text)..."):
        size_problems, size_note = data_check.text_sizes(model_kind == "bundled", data_source, calib_size,
                                                         calib_seq_len, eval_tokens)
    problems += size_problems
    if size_note:
        st.caption(size_note)

tasks = None
if st.checkbox("Also score task accuracy (multiple choice, through lm-evaluation-harness)", key="task_enable",
               help="Accuracy the way published tables report it (points lost vs the baseline), beside perplexity. "
                    "The offline task ships with the app; other lm-eval tasks need their dataset reachable or "
                    "cached."):
    c1, c2 = st.columns([3, 1])
    task_names = c1.text_input("lm-eval tasks (comma-separated)", value=OFFLINE_TASK, key="task_names",
                               help=f"{OFFLINE_TASK}: which of four continuations follows a passage of the held-out "
                                    "bundled text (offline). Or any lm-eval task name: mmlu, hellaswag, arc_easy...")
    task_limit = number_field(c2, "Questions per task", "task_limit", 100, 1, 100_000, problems,
                              help="The first N questions of each task; fewer is faster, with a larger standard "
                                   "error.")
    names = tuple(n.strip() for n in task_names.split(",") if n.strip())
    if not names:
        problems.append("lm-eval tasks: enter at least one task name, or untick task accuracy.")
    elif task_limit is not None:
        try:
            tasks = TaskAccuracySpec(names=names, limit=task_limit)
            problem = data_check.task_problem(tasks)
            if problem:
                problems.append(problem)
        except TlabError as e:
            problems.append(str(e))

# --- workload -----------------------------------------------------------------------------------
st.subheader("4. Speed")
gpus = state.device_report()[0]
measure = st.checkbox("Measure speed on this machine", value=True, key="measure_speed",
                      help="Times each recipe with real low-precision kernels. Recipes without fast kernels "
                           "here get accuracy only, never a simulated speed.")
workload, backend = None, "torch"
if measure:
    c1, c2, c3, c4 = st.columns([2, 1, 1, 2])
    backend = c1.selectbox("Engine", list(BACKENDS), format_func=BACKENDS.get, key="backend")
    input_len = number_field(c2, "Input tokens", "input_len", 128, 1, 32768, problems)
    output_len = number_field(c3, "Output tokens", "output_len", 64, 1, 8192, problems)
    batch = c4.multiselect("Batch sizes", BATCH_CHOICES, default=[1] if not gpus else [1, 8], key="batch_sizes")
    if not batch:
        problems.append("Pick at least one batch size, or untick 'Measure speed'.")
    elif input_len is not None and output_len is not None:
        workload = Workload(input_len, output_len, tuple(sorted(batch)))
    engine_ok = {c.name: c for c in state.device_report()[1]}
    if backend == "tensorrt_llm" and not engine_ok["TensorRT-LLM"].ok:
        problems.append(f"TensorRT-LLM cannot run here: {engine_ok['TensorRT-LLM'].reason} "
                        "Choose the PyTorch engine.")

# --- grid, estimate, run ------------------------------------------------------------------------
st.subheader("5. The sweep")
name = st.text_input("Experiment name", key="exp_name", value=None if "exp_name" in st.session_state
                     else sweeps.experiment_name(), help="Results are grouped under this name.")
if not name or not name.strip():
    problems.append("Give the experiment a name.")
if not recipes:
    problems.append("Check at least one precision (or a sparsity / KV cache choice) to make a recipe.")

speed_notes: dict[tuple[str, str], str] = {}
if recipes and measure:
    for sp in {r.sparsity for r in recipes} | {"none"}:
        for c in state.precision_choices(backend, sp):
            if c.speed_ok:
                speed_notes[(c.name, sp)] = "measured here"
            elif c.speed_ok is False:
                why = c.speed_reason.removeprefix("Not measurable on this device: ")
                speed_notes[(c.name, sp)] = f"accuracy only: {why}"

jobs, run_blocked = [], None
if not problems and data is not None and (workload is not None or not measure):
    try:
        jobs = sweeps.sweep_jobs(name.strip(), model, recipes, data, workload, backend, tasks)
    except TlabError as e:  # the SweepSpec's own checks
        problems.append(str(e))

if recipes:
    rows = [{"Recipe": "BF16 baseline (always runs)", "Accuracy": "reference",
             "Speed": speed_notes.get(("bf16", "none"), "not asked") if measure else "not asked"}]
    rows += [{"Recipe": r.label, "Accuracy": "measured here",
              "Speed": speed_notes.get((r.precision, r.sparsity), "not asked") if measure else "not asked"}
             for r in recipes]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="grid_preview")
    if measure and any(note != "measured here" for note in speed_notes.values()):
        st.caption("Recipes this machine has no fast kernels for get accuracy only: never a simulated speed.")
    if jobs:
        here = devices.device_name(gpus)
        history = [h for h in state.timing_history() if same_device(h.get("device"), here)]
        estimates = [estimate_for_spec(p["spec"], history, here) for p, _ in jobs]
        st.metric("Estimated time", format_duration(sum(e.seconds for e in estimates)))
        st.caption(f"Estimate {estimates[0].basis}.")
        confirm = long_run_label(sum(e.seconds for e in estimates))
        if confirm and not st.checkbox(confirm, key="confirm_long_run",
                                       help="Over an hour: tick to confirm, or make the sweep smaller."):
            run_blocked = "Tick 'Run anyway' to queue a sweep that takes over an hour, or make it smaller."

for problem in problems:
    st.warning(problem)

rendered = snapshot(st.session_state, LM_KEYS + [f"prec_{c.name}" for c in choices])
st.button("Run", type="primary", key="run_sweep", disabled=not jobs or bool(run_blocked), on_click=_run_clicked,
          args=(jobs, rendered),
          help=run_blocked or "Queues the sweep; it runs in the background while you use the app.")

_queued_message()
