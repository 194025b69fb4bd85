"""engine.utils: data loading (engine.utils.data)."""
from engine.utils import data  # noqa: F401
