"""Model loading: the bundled model, a Hugging Face id, or a local folder (safetensors/GGUF only)."""

from engine.models.facts import model_facts
from engine.models.loader import LoadedModel, load_model

__all__ = ["LoadedModel", "load_model", "model_facts"]
