"""Fuzzed inputs a web user (or a job row) can give: sweep specs, uploaded text/JSONL, model and data
paths with `..` and symlinks, huge files. Each is refused with a clear message (a TlabError, never a
traceback) or accepted as valid; nothing is written outside the data folder."""

import json
import math
import os
import random
from pathlib import Path

import pytest

from engine.errors import TlabError
from engine.pipeline import run_sweep_job, sweep_payload
from engine.spec import DataSpec, ModelRef, Recipe, SweepSpec

pytestmark = pytest.mark.faults
SEED = 14
BASE = sweep_payload(SweepSpec(ModelRef(), (Recipe("int8_sq"),), DataSpec(calib_size=2, eval_tokens=512)))["spec"]
ODD_VALUES = [None, -1, 0, 10**12, 1e308, math.nan, math.inf, "", "x" * 5000, [], {}, True, "../../etc/passwd",
              "\x00", "bundled\n", {"nested": {"deeper": [1, {"x": None}]}}, [[[]]], "int4_awq", "cuda:99"]


def _paths(d, prefix=()):
    if isinstance(d, dict):
        for k, v in d.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def _mutate(spec: dict, rng: random.Random) -> dict:
    d = json.loads(json.dumps(spec))
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(list(_paths(d)))
        parent = d
        for key in path[:-1]:
            parent = parent[key]
        action = rng.random()
        if action < 0.2 and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif action < 0.3 and isinstance(parent, dict):
            parent[rng.choice(["extra", "__class__", "trust_remote_code", "owner"])] = rng.choice(ODD_VALUES)
        else:
            parent[path[-1]] = rng.choice(ODD_VALUES)
    return d


def _clear(e: TlabError) -> bool:
    text = str(e)
    return len(text) >= 20 and "Traceback" not in text and "\n  File " not in text


def _refused_or_valid(fn, *args) -> str:
    """'refused' (a clear TlabError) or 'accepted'; anything else fails the test with the input."""
    try:
        fn(*args)
    except TlabError as e:
        assert _clear(e), f"unclear message {e!r} for {args!r:.300}"
        return "refused"
    return "accepted"


@pytest.fixture
def outside(tmp_path, fault_store):
    """A folder beside the data folder, with a file a symlink inside the data folder points at."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("not for web users\n\nsecond paragraph\n")
    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_text("{}")
    return folder


def _tree(root: Path, skip: Path) -> dict[str, tuple]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and skip not in p.parents}


def test_fuzzed_specs_are_refused_clearly_or_valid(fault_store, outside, counts):
    rng = random.Random(SEED)
    outcomes = {"refused": 0, "accepted": 0}
    for _ in range(300):
        spec = _mutate(BASE, rng)
        outcomes[_refused_or_valid(SweepSpec.from_dict, spec)] += 1
        text = json.dumps(spec, allow_nan=True)
        cut = text[: rng.randint(0, len(text))]  # truncated or garbled files
        outcomes[_refused_or_valid(SweepSpec.from_json, cut)] += 1
    for raw in ("", "null", "[]", "1e999", '{"schema": 1}', "\x00\x01", "{" * 5000, '"' + "a" * 100_000,
                "[" * 100_000 + "]" * 100_000):
        outcomes[_refused_or_valid(SweepSpec.from_json, raw)] += 1
    counts["inputs tried"] += sum(outcomes.values())
    assert outcomes["refused"] > 400 and outcomes["accepted"] > 0, outcomes  # the fuzzer hit both sides


def test_fuzzed_job_payloads_never_reach_past_the_checks(fault_store, outside, counts, tmp_path):
    """Payloads a job row can hold: refused before any model is loaded or anything is written."""
    home = Path(os.environ["TLAB_HOME"])
    before = _tree(tmp_path, home)
    link = home / "models" / "innocent"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside / "model")
    data_link = home / "uploads" / "notes.txt"
    data_link.parent.mkdir()
    data_link.symlink_to(outside / "secret.txt")
    models = [str(home / ".." / "outside" / "model"), str(link), f"{home}/models/../../outside/model", "/etc",
              "~/../../", str(outside / "model"), "../outside/model"]
    data = [str(outside / "secret.txt"), str(data_link), f"{home}/../outside/secret.txt", "/etc/passwd",
            "/dev/zero", "/proc/self/environ"]
    payloads = [{"spec": {**BASE, "model": {**BASE["model"], "source": m}}} for m in models]
    payloads += [{"spec": {**BASE, "data": {**BASE["data"], "source": s}}} for s in data]
    payloads += [{"spec": {**BASE, "model": {**BASE["model"], "gguf_file": g}}} for g in ("../x.gguf", "/etc/x", "..")]
    payloads += [{"spec": {**BASE, "model": {**BASE["model"], "trust_remote_code": True}}}]
    payloads += [None, [], "spec", {"spec": BASE, "extra": 1}, {"spec": None}, {}]
    refused = 0
    for payload in payloads:
        try:
            run_sweep_job(payload, lambda *a, **k: None)
        except TlabError as e:
            assert _clear(e), f"unclear message {e!r} for {payload!r:.300}"
            refused += 1
            continue
        except Exception as e:  # noqa: BLE001 - anything else is a bug: show which input
            pytest.fail(f"{type(e).__name__}: {e} for payload {payload!r:.300}")
        pytest.fail(f"payload ran a sweep: {payload!r:.300}")  # none of these is a runnable web sweep
    counts["inputs tried"] += len(payloads)
    assert refused == len(payloads)
    assert _tree(tmp_path, home) == before  # nothing written outside the data folder
    assert fault_store.list_results() == []


@pytest.mark.parametrize("name, content", [
    ("empty.txt", b""),
    ("blank.txt", b"\n\n   \n\n"),
    ("binary.txt", bytes(range(256)) * 64),
    ("latin1.txt", "caf\xe9 cr\xe8me\n\nbr\xfbl\xe9e".encode("latin-1")),
    ("nul.jsonl", b'{"text": "a"}\n\x00\x00\n'),
    ("notext.jsonl", b'{"body": "no text field"}\n'),
    ("array.jsonl", b'["text", "a list"]\n'),
    ("scalar.jsonl", b"42\n"),
    ("truncated.jsonl", b'{"text": "cut'),
    ("deep.jsonl", b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"),
    ("ok.jsonl", b'{"text": "one"}\n\n{"text": "two"}\n'),
    ("ok.txt", b"first paragraph\n\nsecond paragraph\n"),
])
def test_fuzzed_uploads_are_read_or_refused_clearly(fault_store, counts, name, content):
    """Upload contents as the Experiment page stores them (under $TLAB_HOME/uploads), read as a sweep would."""
    from engine.data import load_documents

    path = Path(os.environ["TLAB_HOME"]) / "uploads" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    outcome = _refused_or_valid(load_documents, str(path))
    counts["inputs tried"] += 1
    if name.startswith("ok"):
        assert outcome == "accepted"
    if name in ("empty.txt", "blank.txt", "notext.jsonl", "array.jsonl", "scalar.jsonl", "truncated.jsonl"):
        assert outcome == "refused"


def test_huge_files_are_refused_before_they_are_read(fault_store, counts):
    from engine.data import MAX_DATA_FILE_BYTES, load_documents

    huge = Path(os.environ["TLAB_HOME"]) / "uploads" / "huge.txt"
    huge.parent.mkdir(exist_ok=True)
    with open(huge, "wb") as f:  # sparse: no disk space, but a read would fill memory
        f.truncate(MAX_DATA_FILE_BYTES + 1)
    with pytest.raises(TlabError, match="MiB; a sweep reads at most"):
        load_documents(str(huge))
    counts["inputs tried"] += 1
