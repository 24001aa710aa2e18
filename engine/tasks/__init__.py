"""Accuracy tasks that ship with Tradeoff Lab, defined as lm-evaluation-harness tasks (YAML + data).

`doc_continuation/`: the offline multiple-choice task `tlab_doc_continuation`, built by
`python -m engine.tasks.build_doc_continuation` from the bundled held-out evaluation text.
"""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
DOC_CONTINUATION_DIR = TASKS_DIR / "doc_continuation"
