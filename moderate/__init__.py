"""moderate: allow, block or review every incoming image.

    from moderate import Engine
    engine = Engine(data_dir="data")
    engine.banks.create("TERROR", action="block")
    engine.banks.add("TERROR", ["flagged/"], recursive=True)
    verdict = engine.check("upload.jpg")      # Verdict(verdict="block", reasons=(...))
"""

from importlib import import_module

# Names are loaded on first use (PEP 562), so `moderate --help` and hooks do not pay for numpy,
# Pillow and the engine before they need them.
_EXPORTS = {
    "AddReport": "banks", "Bank": "banks", "Banks": "banks", "ImportReport": "banks", "Reference": "banks",
    "Engine": "engine", "FrameSignals": "engine", "Match": "evidence", "Budgets": "media", "Media": "media",
    "Evidence": "evidence",
    "Policy": "policy", "Provenance": "provenance", "Region": "regions", "Reason": "verdict", "Verdict": "verdict",
    "BankError": "errors", "HashListError": "errors", "MediaError": "errors", "ModerateError": "errors",
    "PolicyError": "errors", "ProvenanceError": "errors", "StoreError": "errors",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'moderate' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = sorted(_EXPORTS)
