"""Training: QAT, 2:4 sparse fine-tuning or a fine-tuned baseline of the bundled model, queued as a job like a
sweep; below, the chosen run live (progress and time left, loss curves, cancel), a stopped run's Resume from
its last checkpoint, and a finished run's validation losses."""

from datetime import datetime, timezone

import streamlit as st

from app import auth, nav, state
from app import training_form as tf
from app.number_fields import STALE_MESSAGE, changed_fields, number_field, snapshot
from engine import registry
from engine.access import WebPolicy
from engine.errors import TlabError
from engine.jobs.worker import STALE_AFTER_S
from engine.models.bundled import BUNDLED_NAME
from engine.training.run import loss_curves

REFRESH_S = 3.0
DATA_KINDS = {"bundled": "Bundled text (offline)", "upload": "Upload a file"}
FIELD_KEYS = sorted({tf.field_key(key, mode) for key, *_ in tf.MAIN_FIELDS + tf.ADVANCED_FIELDS + [("learning_rate",)]
                     for mode in tf.MODE_LABELS})
FORM_KEYS = ["train_mode", "train_precision", "train_sparsity", "train_data_kind", "train_upload"] + FIELD_KEYS
STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/autorenew:", "done": ":material/check_circle:",
                "failed": ":material/error:", "cancelled": ":material/block:", "interrupted": ":material/warning:"}


def _start_clicked(spec, rendered: dict) -> None:
    """Start button callback: queue `spec` unless a field changed with the click or the same run is active."""
    if changed_fields(rendered, st.session_state):
        st.session_state["train_message"] = ("warning", STALE_MESSAGE)
        return
    _queue(*tf.training_job(spec), spec=spec)


def _queue(fn: str, payload: dict, title: str, spec) -> None:
    active = tf.same_run_active(state.store().list_jobs(limit=200), spec)
    if active is not None:  # two processes would write the same checkpoints
        st.session_state["train_message"] = ("warning", f"Job #{active['id']} is already training this run; "
                                                         "it is shown below.")
        st.session_state["train_job"] = active["id"]
        return
    try:
        job_id = state.queue_job(fn, payload, title)
    except TlabError as e:
        st.session_state["train_message"] = ("error", f"The training run was not queued: {e}")
        return
    st.session_state["train_message"] = ("success", f"Queued job #{job_id}: {title}. It runs in the background.")
    st.session_state["train_job"] = job_id


def _cancel(job_id: int) -> None:
    state.cancel_job(job_id, "; it keeps its last checkpoint")


def _resume(job: dict, spec) -> None:
    if not auth.may_manage(job):
        st.toast(f"Job {job['id']} was started by {job.get('owner')}; only they or an administrator can resume it.")
        return
    _queue(job["fn"], job["payload"], job["title"], spec)


def _form() -> None:
    problems: list[str] = []
    mode = st.radio("What to train", list(tf.MODE_LABELS), format_func=tf.MODE_LABELS.get, horizontal=True,
                    key="train_mode", help="Every mode first fine-tunes the unquantized model with the same settings "
                                           "(trained once, reused): the baseline the recipe is compared with.")
    values: dict = {"mode": mode}
    if mode == "qat":
        choices = tf.quantized_precisions(state.precision_choices(None))
        runnable = [c for c in choices if c.runnable]
        names = [c.name for c in runnable]
        values["precision"] = st.selectbox(
            "Precision", names, index=names.index(tf.DEFAULT_PRECISION) if tf.DEFAULT_PRECISION in names else 0,
            format_func={c.name: c.label for c in runnable}.get, key="train_precision",
            help="PTQ-calibrated with modelopt first, then trained with its quantizers in place.")
        for c in choices:
            if not c.runnable:
                st.caption(f":material/block: {c.label} is not available here: {c.reason}")
    elif mode == "sparse_ft":
        methods = tf.sparsity_methods()
        values["sparsity"] = st.selectbox(
            "2:4 sparsity method", methods, index=methods.index(tf.DEFAULT_SPARSITY), key="train_sparsity",
            format_func=lambda s: registry.sparsity(s).label, help="Pruned once, then trained with the mask kept.")
    st.caption(f"Model: the bundled model ({BUNDLED_NAME}), no download.")

    columns = st.columns(len(tf.MAIN_FIELDS) + 1)
    for column, (key, label, low, high, help_) in zip(columns, tf.MAIN_FIELDS):
        values[key] = number_field(column, label, tf.field_key(key, mode), tf.default(key, mode), low, high, problems,
                                   help=help_)
    values["learning_rate"] = columns[-1].number_input(
        "Learning rate", value=tf.default("learning_rate", mode), step=1e-5, format="%.1e",
        key=tf.field_key("learning_rate", mode), help=tf.LR_HELP)
    with st.expander("Advanced"):
        columns = st.columns(len(tf.ADVANCED_FIELDS))
        for column, (key, label, low, high, help_) in zip(columns, tf.ADVANCED_FIELDS):
            values[key] = number_field(column, label, tf.field_key(key, mode), tf.default(key, mode), low, high,
                                       problems, help=help_)

    data_kind = st.radio("Training text", list(DATA_KINDS), format_func=DATA_KINDS.get, horizontal=True,
                         key="train_data_kind")
    values["data"] = "bundled"
    if data_kind == "bundled":
        st.caption("Python's own documentation text: training uses one part, the validation loss a disjoint part.")
    else:
        upload = st.file_uploader("A .txt file (paragraphs separated by blank lines) or .jsonl with a \"text\" field",
                                  type=["txt", "jsonl"], key="train_upload")
        if upload is None:
            problems.append("Upload a training text file, or choose the bundled text.")
            values["data"] = None
        else:
            values["data"] = tf.save_upload(upload.name, upload.getvalue())
            try:
                WebPolicy.from_env().check_data(values["data"])
            except TlabError as e:
                problems.append(str(e))
            problems += tf.upload_problems(values["data"], values.get("seq_len"), values.get("eval_tokens"))

    spec = None
    if not problems:
        try:
            spec = tf.build_spec(values)
        except TlabError as e:
            problems.append(str(e))
    for problem in problems:
        st.error(problem)
    if spec is not None:
        then = f", then **{spec.label}**" if spec.mode != "finetune" else ""
        st.caption(f"Trains the fine-tuned baseline{then}: {spec.steps} steps of "
                   f"{spec.batch_size * spec.grad_accum} x {spec.seq_len} tokens each.")
    rendered = snapshot(st.session_state, FORM_KEYS)
    st.button("Start training", type="primary", key="train_start", disabled=spec is None, on_click=_start_clicked,
              args=(spec, rendered), help="Queues the run; it trains in the background while you use the app.")
    if message := st.session_state.pop("train_message", None):
        getattr(st, message[0])(message[1])


def _seconds_since(iso: str | None) -> float | None:
    return max(0.0, (datetime.now(timezone.utc) - datetime.fromisoformat(iso)).total_seconds()) if iso else None


def _manage_or_owner(job: dict) -> bool:
    if auth.may_manage(job):
        return True
    st.caption(f"Started by {job.get('owner')}: only they or an administrator can cancel or resume it.")
    return False


def _status(job: dict, spec) -> None:
    status = job["status"]
    owner = f" · by {job.get('owner')}" if auth.current_user() is not None else ""
    st.markdown(f"**{STATUS_ICONS.get(status, '')} #{job['id']} {job['title']}**: {status}{owner}")
    if status == "running":
        progress = min(1.0, max(0.0, float(job.get("progress") or 0.0)))
        st.progress(progress, text=f"{job.get('stage') or 'working'} ({progress:.0%})")
        if job["cancel_requested"]:
            st.caption("Stopping...")
        elif _manage_or_owner(job):
            st.button("Cancel", key=f"train_cancel_{job['id']}", on_click=_cancel, args=(job["id"],),
                      help="Stop the run. It keeps its last checkpoint, so Resume continues from there.")
    elif status == "queued":
        st.caption("Waiting for the worker.")
        if not state.worker_alive():
            st.warning("No worker is running, so this run waits. Press **Start worker** in the sidebar, "
                       "or run `tlab worker` in a terminal.")
        if _manage_or_owner(job):
            st.button("Cancel", key=f"train_cancel_{job['id']}", on_click=_cancel, args=(job["id"],))
    elif status in tf.STOPPED:
        if job.get("error"):
            (st.error if status == "failed" else st.warning)(job["error"])
        try:
            point = tf.resume_point(spec)
        except TlabError as e:
            point = str(e)
        st.caption(f"Resume: {point}")
        if _manage_or_owner(job):
            st.button("Resume", key=f"train_resume_{job['id']}", on_click=_resume, args=(job, spec),
                      help="Queue this run again; it continues from its last checkpoint.")


def _curves(spec) -> None:
    curves = loss_curves(spec)
    if not any(curves.values()):
        st.caption("The loss curve appears after the first training step.")
        return
    st.plotly_chart(tf.loss_figure(curves), key="train_loss_curve", config={"displaylogo": False})


def _figures(spec) -> None:
    result = state.store().get_result(spec.id)
    if result is None:
        st.caption("Its figures are not in the store (it may have been deleted).")
        return
    st.table(tf.figures_frame(result.metrics, spec).set_index("Model"))
    if gap := tf.gap_text(result.metrics):
        st.markdown(gap)
    st.page_link(nav.page("results"), label="See it on the Results page", icon=":material/scatter_plot:")


@st.fragment(run_every=REFRESH_S)
def live_view() -> None:
    store = state.store()
    jobs = tf.training_jobs(store.list_jobs(limit=200))
    if any(j["status"] == "running" and (_seconds_since(j.get("heartbeat_at")) or 0) > STALE_AFTER_S for j in jobs):
        store.mark_interrupted_stale(STALE_AFTER_S)  # its worker died: interrupted, so it can be resumed
        jobs = tf.training_jobs(store.list_jobs(limit=200))
    if not jobs:
        st.info("No training runs yet: start one above.")
        return
    by_id = {j["id"]: j for j in jobs}
    if st.session_state.get("train_job") not in by_id:
        st.session_state["train_job"] = jobs[0]["id"]  # the newest
    job_id = st.selectbox("Training run", list(by_id), key="train_job",
                          format_func=lambda i: f"#{i} {by_id[i]['title']} ({by_id[i]['status']})")
    job = by_id[job_id]
    spec = tf.job_spec(job)
    if spec is None:
        st.warning(f"Job #{job_id}'s payload is not a training spec this version reads; queue the run again above.")
        return
    _status(job, spec)
    if job["status"] == "done":
        _figures(spec)
    _curves(spec)


st.title("Training")
st.caption("Recover accuracy lost to quantization or 2:4 sparsity by training (modelopt QAT, sparse fine-tuning). "
           "A run fine-tunes the unquantized baseline first, then trains the recipe; checkpoints go to the data "
           "folder, so a stopped run resumes where it left off.")
_form()
st.subheader("Runs")
live_view()
