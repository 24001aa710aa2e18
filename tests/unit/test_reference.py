"""Published measurements normalized for the estimator and the Reference page."""

import pandas as pd

from engine.perf import arch, catalog
from engine.reference import COLUMNS, fixed_batch_throughput, published_frame, source_label


def test_frame_columns_and_provenance():
    df = published_frame()
    assert list(df.columns) == COLUMNS and len(df) == len(pd.read_csv("assets/published_measurements.csv"))
    assert set(df.provenance) == {"published"}
    assert df.source.notna().all() and df.source_label.notna().all()


def test_ids_map_into_the_catalogs():
    df = published_frame()
    assert set(df.gpu_id.dropna()) <= set(catalog.gpus())
    assert set(df.model_id.dropna()) <= set(arch.catalog())
    assert set(df.precision.dropna()) <= {"bf16", "fp16", "fp8", "int8_sq", "int4_awq", "w4a8_awq", "nvfp4"}
    h100 = df[df.gpu == "H100 SXM 80GB"]
    assert set(h100.gpu_id) == {"h100-sxm"}
    assumed = df[df.gpu == "A100 80GB"]
    assert (assumed.gpu_id == "a100-sxm-80gb").all() and assumed.mapping_note.str.contains("not stated").all()
    assert df[df.gpu == "H100 80GB (variant not stated)"].gpu_id.isna().all()  # no guess where none is stated
    sparse = df[df.sparsity == "2:4"]
    assert len(sparse) and set(sparse.precision) == {"fp8"}


def test_fixed_batch_rows_become_totals():
    f = fixed_batch_throughput()
    per_gpu = f[f.metric == "output_tokens_per_sec_per_gpu"]
    known = per_gpu[per_gpu.tp.notna()]
    assert (known.output_tokens_per_sec == known.value * known.tp.astype(float)).all()
    assert per_gpu[per_gpu.tp.isna()].output_tokens_per_sec.isna().all()  # per GPU at unknown TP: no total
    assert set(f.reading) == {"total", "per GPU"}
    not_estimable = f[~f.estimable]
    assert not_estimable.why_not.str.startswith("not stated").all()
    assert f.batch.notna().all()


def test_source_labels_are_short():
    url = ("https://github.com/NVIDIA/TensorRT-LLM/blob/258c7540c03517def55d9a5aadfa9288af474e1b/docs/source/"
           "performance/perf-overview.md")
    assert source_label(url) == "TensorRT-LLM perf-overview.md@258c7540"
