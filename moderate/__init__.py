"""moderate: allow, block or review every incoming image.

    from moderate import Engine
    engine = Engine(data_dir="data")
    engine.banks.create("TERROR", action="block")
    engine.banks.add("TERROR", ["flagged/"], recursive=True)
    verdict = engine.check("upload.jpg")      # Verdict(verdict="block", reasons=(...))
"""

from .banks import AddReport, Bank, Banks, ImportReport, Reference
from .engine import Engine, FrameSignals
from .errors import BankError, HashListError, MediaError, ModerateError, PolicyError, ProvenanceError, StoreError
from .match import Match
from .media import Budgets, Media
from .policy import Policy
from .provenance import Provenance
from .regions import Region
from .verdict import Reason, Verdict

__version__ = "0.1.0"

__all__ = [
    "AddReport", "Bank", "BankError", "Banks", "Budgets", "Engine", "FrameSignals", "HashListError",
    "ImportReport", "Match", "Media", "MediaError", "ModerateError", "Policy", "PolicyError", "Provenance", "ProvenanceError", "Reason",
    "Reference", "Region", "StoreError", "Verdict",
]
