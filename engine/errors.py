"""User-facing errors: each message says what went wrong and what to do about it."""


class TlabError(Exception):
    """An error whose message is meant for the user as is (no traceback needed)."""


class UnknownNameError(TlabError, ValueError):
    """A name (precision, sparsity, GPU, model) that is not registered."""


class UnsupportedOnDevice(TlabError):
    """A recipe or backend that this device cannot run; the message says why."""


class ModelLoadError(TlabError):
    """A model that cannot be loaded: missing, private, pickle-only, or unsupported."""


class DataError(TlabError, ValueError):
    """Calibration or evaluation data that cannot be used."""


class StoreError(TlabError):
    """The results store cannot be opened or written."""


class SettingError(TlabError, ValueError):
    """An environment setting that holds a value Tradeoff Lab cannot use."""


class SpecError(TlabError, ValueError):
    """A sweep spec or job payload that is malformed (wrong type, unknown field, old schema)."""
