"""One module per finding of the MemoryDT post; each has ``run(model, config) -> Section``.

:data:`SECTION_MODULES` lists them in report order (key -> module).
"""

from types import ModuleType

from dtlens.report.sections import (
    agent_comparison,
    attention,
    calibration,
    circuit,
    clone,
    congruence,
    dynamics,
    look_back,
    maps,
    patching,
    path_patching,
    probes,
    rtg_entropy,
    scrubbing,
    set_routine,
    steering,
)

__all__ = ["SECTION_MODULES"]

#: The report's sections in order: key (as in ``report.json``) -> module.
SECTION_MODULES: dict[str, ModuleType] = {
    "calibration": calibration,
    "set_routine": set_routine,
    "look_back": look_back,
    "rtg_entropy": rtg_entropy,
    "attention": attention,
    "congruence": congruence,
    "patching": patching,
    "path_patching": path_patching,
    "circuit": circuit,
    "scrubbing": scrubbing,
    "probes": probes,
    "steering": steering,
    "dynamics": dynamics,
    "maps": maps,
    "agent_comparison": agent_comparison,
    "clone": clone,
}
