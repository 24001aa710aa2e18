"""The Experiment page's pure checks: number ranges, stale Run clicks, long sweeps, sizes beyond the text."""

import pytest

from app.data_check import size_problems, source_stamp
from app.number_fields import STALE_MESSAGE, changed_fields, long_run_label, range_problem, snapshot
from tests.conftest import requires_bundled


def test_range_problem_names_the_field_and_its_range():
    assert range_problem("Calibration sequences", 32, 1, 4096) is None
    assert range_problem("Calibration sequences", 4096, 1, 4096) is None
    msg = range_problem("Calibration sequences", 100_000, 1, 4096)
    assert msg == "Calibration sequences: 100,000 is out of range. Enter a whole number from 1 to 4,096."
    assert "from 1 to 4,096" in range_problem("Calibration sequences", 0, 1, 4096)
    assert "not a whole number" in range_problem("Images per label", 2.5, 1, 1024)
    assert "not a number" in range_problem("Steps", None, 1, 1000)
    assert "not a number" in range_problem("Steps", True, 1, 1000)
    assert "not a number" in range_problem("Guidance scale", float("nan"), 1.0, 100.0, whole=False)
    assert range_problem("Guidance scale", 1.5, 1.0, 100.0, whole=False) is None
    assert "a number from 1 to 100" in range_problem("Guidance scale", 0.5, 1.0, 100.0, whole=False)


class _Upload:
    def __init__(self, file_id):
        self.file_id = file_id


def test_changed_fields_compares_click_time_values_with_the_rendered_ones():
    rendered = snapshot({"calib_size": 32, "batch_sizes": [1, 8], "data_upload": _Upload("a")},
                        ["calib_size", "batch_sizes", "data_upload", "hf_id"])
    assert rendered["hf_id"] is None  # a field not shown is compared as absent
    same = {"calib_size": 32, "batch_sizes": [1, 8], "data_upload": _Upload("a")}
    assert changed_fields(rendered, same) == []
    assert changed_fields(rendered, {**same, "calib_size": 100_000}) == ["calib_size"]
    assert changed_fields(rendered, {**same, "batch_sizes": [1]}) == ["batch_sizes"]
    assert changed_fields(rendered, {**same, "data_upload": _Upload("b")}) == ["data_upload"]
    assert changed_fields(rendered, {**same, "hf_id": "x/y"}) == ["hf_id"]
    # the speed fields were hidden in the render (their old values still in state then), gone at the click
    assert changed_fields({**rendered, "input_len": 128}, same) == []
    assert "click Run again" in STALE_MESSAGE


def test_long_run_label_only_above_an_hour():
    assert long_run_label(3600) is None and long_run_label(10) is None
    assert long_run_label(3601) == "Run anyway: this sweep takes about 1.0 h"
    assert long_run_label(5.5 * 3600) == "Run anyway: this sweep takes about 5.5 h"


def test_size_problems_name_the_fields_and_the_maximum():
    assert size_problems(1000, 500, 256, 500) == []
    (msg,) = size_problems(1000, 500, 256, 501)
    assert msg.startswith("Evaluation tokens:") and "Enter at most 500" in msg and "--eval" not in msg
    (msg,) = size_problems(100, 500, 256, 128)
    assert msg.startswith("Tokens per calibration sequence:") and "at most 100" in msg
    assert size_problems(100, 500, None, None) == []  # fields already refused for their range


def test_source_stamp(tmp_path):
    assert source_stamp("bundled") == ("bundled",)
    assert source_stamp("hf:wikitext:test") is None  # not downloaded to count it
    f = tmp_path / "t.txt"
    f.write_text("one")
    first = source_stamp(str(f))
    f.write_text("one two")
    assert source_stamp(str(f)) != first  # an edited file is counted again
    assert source_stamp(str(tmp_path / "missing.txt")) == ("missing",)


class _CharTokenizer:
    """One token per character."""

    def __call__(self, text, return_tensors=None):
        import torch

        class Out:
            input_ids = torch.tensor([[ord(c) % 256 for c in text]])

        return Out()


def test_available_tokens_is_exactly_what_prepare_accepts(tmp_path):
    from engine.data import available_tokens, prepare
    from engine.errors import DataError
    from engine.spec import DataSpec

    f = tmp_path / "t.txt"
    f.write_text("\n\n".join(f"paragraph {i} " * 20 for i in range(50)))
    calib, held_out = available_tokens(_CharTokenizer(), str(f))
    assert 0 < held_out < calib
    prepare(_CharTokenizer(), DataSpec(str(f), calib_size=2, calib_seq_len=calib, eval_tokens=held_out,
                                       eval_seq_len=64))
    with pytest.raises(DataError, match="Evaluation tokens"):
        prepare(_CharTokenizer(), DataSpec(str(f), calib_size=2, calib_seq_len=16, eval_tokens=held_out + 1))
    with pytest.raises(DataError, match="fewer than one calibration"):
        prepare(_CharTokenizer(), DataSpec(str(f), calib_size=2, calib_seq_len=calib + 1, eval_tokens=128))


def test_text_sizes_for_other_models_and_unreadable_files(tmp_path):
    from app.data_check import text_sizes

    problems, note = text_sizes(False, "bundled", 32, 256, 10**6)
    assert problems == [] and "when the job starts" in note  # another model's tokenizer may need a download
    problems, note = text_sizes(True, "hf:wikitext:test", 32, 256, 8192)
    assert problems == [] and "not downloaded here" in note
    problems, _ = text_sizes(True, str(tmp_path / "missing.txt"), 32, 256, 8192)
    assert len(problems) == 1 and "does not exist" in problems[0]


@requires_bundled
def test_the_kept_tokenizer_copy_counts_like_the_gguf(tmp_path, monkeypatch):
    from app import data_check
    from engine.data import available_tokens

    monkeypatch.setenv("TLAB_CACHE", str(tmp_path / "cache"))  # empty: the first call converts
    data_check._bundled_tokenizer.clear()
    converted = data_check._bundled_tokenizer()  # from the GGUF; keeps a copy
    (copy,) = (tmp_path / "cache" / "gguf").glob("*/tokenizer")
    data_check._bundled_tokenizer.clear()
    kept = data_check._bundled_tokenizer()  # from the copy
    assert kept is not converted and kept.name_or_path == str(copy)
    assert available_tokens(kept, "bundled") == available_tokens(converted, "bundled")
    data_check._bundled_tokenizer.clear()
