"""Graph-to-graph passes, their registry, named pipelines and the PassManager."""
from .manager import (PIPELINES, Instrument, PassManager, get_pass, known_passes, pipeline,
                      register_pass, unregister_pass)
from . import constfold, dce, fusion, layout, memory, simplify  # noqa: F401,E402  (register the passes)

__all__ = ["PassManager", "Instrument", "register_pass", "unregister_pass", "get_pass",
           "known_passes", "PIPELINES", "pipeline"]
