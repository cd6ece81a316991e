"""Request and response models of the HTTP API: they validate bodies and type /openapi.json, so a
client can be generated from it. Responses allow extra fields: the verdict JSON may grow (README)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..engine.lookup import LOOKUPS


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


class LookupItem(Body):
    signal: Literal[LOOKUPS] = Field(description="pdq, md5 or sha256")
    hash: str = Field(description="lowercase hex: 64 characters for pdq and sha256, 32 for md5")
    max_distance: int | None = Field(None, ge=0, le=256, description="pdq only: the policy's loosest band when left out")


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
    listed: list[list[str]] = Field(default=[], description="[signal type, hex] of file digests a hash list gave it (md5, video_md5, ...); in bank listings")
    flat: list[tuple[str, int]] = Field(default=[], description="[hex, quality] of PDQ hashes under quality 50: kept, never matched (too flat); in bank listings")
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
    warnings: list[ImportProblem] = Field(default=[], description="imported, but never matched (a PDQ hash under quality 50)")


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


class LookupMatch(Out):
    bank: str
    reference_id: str
    signal: str
    distance: int = Field(description="pdq: Hamming bits of 256; md5, sha256: 0")
    similarity: float = Field(description="1 - distance / 256 for pdq, 1.0 for an exact digest")
    band: str | None = Field(description="the policy band the distance falls in; null outside every band")
    action: str | None = Field(description="what that band means for this bank under the policy; null when it means "
                                           "nothing (no band, a disabled bank, an allow-list)")
    metadata: dict = Field(description="the reference's metadata (source URL, note, who added it, when)")


class LookupResult(Out):
    signal: str | None
    hash: str | None = Field(description="the hash looked up (canonical lowercase; as sent when it is invalid)")
    matches: list[LookupMatch] | None = Field(description="closest first, each reference once; null with `error`")
    truncated: bool = Field(False, description="more references matched than `limit`: the closest are listed")
    error: str | None = Field(None, description="batch only: why this item was not looked up (one line)")


class LookupBatch(Out):
    results: list[LookupResult] = Field(description="one result per item, in the order sent")


class Comparison(Out):
    signal: str
    a: str
    b: str
    equal: bool
    distance: int | None = Field(description="pdq: Hamming bits; md5, sha256: 0 when equal, else null")
    similarity: float
    band: str | None = Field(description="the policy's band the distance falls in (its default bands), or null")
    action: str | None = Field(description="that band's action; `bank` means the matched bank's own action")


class Health(Out):
    status: str
    version: str


class Readiness(Out):
    status: Literal["ready", "unready"]
    error: str | None = None
    generation: str | None = None
    index_hashes: int | None = None
    index_age_seconds: float | None = None


def json_body(model: type[Body], most: int | None = None) -> dict:
    """`openapi_extra` for a route that reads its JSON body itself (strictly: duplicate keys and
    deep nesting refused), so the description still shows the body's schema; with `most`, a list
    of 1 to `most` of them."""
    schema = model.model_json_schema()
    if most is not None:
        schema = {"type": "array", "items": schema, "minItems": 1, "maxItems": most}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def multipart(files: dict[str, str], texts: tuple[str, ...] = (), many: bool = False) -> dict:
    """`openapi_extra` for a multipart body read by hand (fields checked for repeats and strays)."""
    properties: dict = {name: ({"type": "array", "items": {"type": "string", "format": "binary"}} if many
                               else {"type": "string", "format": "binary"}) | {"description": why}
                        for name, why in files.items()}
    properties.update({name: {"type": "string"} for name in texts})
    schema = {"type": "object", "properties": properties, "required": list(files)}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}
