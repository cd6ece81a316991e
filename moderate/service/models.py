"""Request and response models of the HTTP API: they validate bodies and type /openapi.json, so a
client can be generated from it. Responses allow extra fields: the verdict JSON may grow (README)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    """A JSON request body: exactly these keys, of these types (no coercion)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- requests -------------------------------------------------------------------------------------

class CheckURL(Body):
    url: str = Field(description="http(s) URL of the input; fetched with SSRF guards")


class NewBank(Body):
    name: str
    action: str = "block"
    description: str = ""
    kind: str = "flagged"


class BankChange(Body):
    name: str = Field(description="the bank's new name")


class Decision(Body):
    decision: str = Field(description="confirm or reject")
    note: str | None = None
    bank: str | None = Field(None, description="with confirm: add the item's signals to this bank")


# -- responses ------------------------------------------------------------------------------------

class Error(Out):
    error: str = Field(description="one line: what is wrong")
    error_code: str | None = None
    verdict: str | None = Field(None, description="on /v1/check: the policy's on_error verdict to apply")


class Region(Out):
    x: int
    y: int
    w: int
    h: int
    origin: str | None = None


class Reason(Out):
    rule: str
    action: str
    bank: str | None = None
    reference_id: str | None = None
    signal: str | None = None
    distance: float | None = None
    score: float | None = None
    region: Region | None = None
    variant: str | None = None
    inliers: int | None = None
    polygon: list[list[float]] | None = None
    detail: str | None = None


class Verdict(Out):
    source: str
    frame: int = 0
    verdict: Literal["allow", "review", "block"]
    reasons: list[Reason] = []
    error: str | None = None
    error_code: str | None = None
    elapsed_ms: float = 0
    policy: str | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int = 1


class BatchVerdicts(Out):
    verdict: Literal["allow", "review", "block"] = Field(description="the most severe of the results")
    results: list[Verdict] = Field(description="one verdict per file, in the order sent")


class Bank(Out):
    name: str
    action: str
    description: str
    enabled: bool
    created_at: str
    kind: str
    references: int
    hashes: int


class Reference(Out):
    bank: str
    id: str
    pdq: list[str] = Field(description="PDQ hashes (hex); the first when read singly")
    metadata: dict


class ReferencePage(Out):
    bank: str
    offset: int
    limit: int
    total: int
    references: list[Reference]


class AddedReference(Out):
    bank: str
    reference_id: str
    hashes: int


class Deleted(Out):
    bank: str
    reference_id: str | None = None
    hashes_removed: int


class ImportProblem(Out):
    line: str
    problem: str


class ImportReport(Out):
    imported: int
    already_present: int
    skipped: list[ImportProblem]


class ReviewItem(Out):
    id: int
    created_at: str
    source: str
    sha256: str | None
    priority: int
    priority_reason: str = Field(description="why the item sits where it does in the queue")
    status: Literal["open", "claimed", "decided"]
    verdict: dict
    claimed_by: str | None
    claim_expires: float | None
    decision: str | None
    decided_by: str | None
    decided_at: str | None
    note: str | None
    has_image: bool


class QueueStats(Out):
    open: int
    claimed: int
    decided: int
    confirmed: int
    rejected: int
    oldest_waiting_seconds: int | None


class Health(Out):
    status: str
    version: str


class Readiness(Out):
    status: Literal["ready", "unready"]
    error: str | None = None
    generation: str | None = None
    index_hashes: int | None = None
    index_age_seconds: float | None = None


def json_body(model: type[Body]) -> dict:
    """`openapi_extra` for a route that reads its JSON body itself (strictly: duplicate keys and
    deep nesting refused), so the description still shows the body's schema."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def multipart(files: dict[str, str], texts: tuple[str, ...] = (), many: bool = False) -> dict:
    """`openapi_extra` for a multipart body read by hand (fields checked for repeats and strays)."""
    properties: dict = {name: ({"type": "array", "items": {"type": "string", "format": "binary"}} if many
                               else {"type": "string", "format": "binary"}) | {"description": why}
                        for name, why in files.items()}
    properties.update({name: {"type": "string"} for name in texts})
    schema = {"type": "object", "properties": properties, "required": list(files)}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}
