"""TensorRT-LLM runtime backend: export the calibrated model, run trtllm-bench, read its report.

Modules: availability (can it run here), export (modelopt -> checkpoint), dataset (synthetic
JSONL requests), commands (argv for trtllm-bench / trtllm-build), report (--report_json parsing),
failures (error messages), runtime (the `Runtime` implementation). None imports tensorrt_llm.
"""

from engine.runtimes.tensorrt_llm.runtime import TensorRTLLMRuntime

__all__ = ["TensorRTLLMRuntime"]
