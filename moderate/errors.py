"""The errors `moderate` raises on purpose.

Each message is a single line that names the input and the problem, so a hook or a log line shows
the user what to fix. Front ends map them to exit codes: a `MediaError` is a property of one input
(the policy's `on_error` verdict applies to it), the others mean the command itself failed.
"""

from __future__ import annotations


class ModerateError(Exception):
    """Base class: a failure we understand and can describe in one line."""


class MediaError(ModerateError):
    """An input could not be read or decoded within its budgets.

    `code` is stable and machine-readable (`too_many_pixels`, `truncated`, `unsupported_format`, ...);
    it appears in the JSON verdict beside the human message.
    """

    def __init__(self, source: str, code: str, detail: str):
        self.source = source
        self.code = code
        self.detail = detail
        super().__init__(f"{source}: {detail} [{code}]")

    def __reduce__(self):  # crosses process boundaries (worker pools, the PDF renderer)
        return (MediaError, (self.source, self.code, self.detail))


class PolicyError(ModerateError):
    """A policy file is malformed: the message names the file, the field and the problem."""


class StoreError(ModerateError):
    """The reference store (Chroma) or the index derived from it cannot be used."""


class BankError(ModerateError):
    """A bank operation was refused: unknown bank, duplicate reference id, bad name, ..."""


class ExchangeError(ModerateError):
    """An exchange was refused: unknown name or type, missing settings, unreadable credentials, ..."""


class ProvenanceError(ModerateError):
    """A key, signing or provenance operation was refused (unknown key, wrong passphrase, ...)."""


class MissingExtra(ModerateError):
    """Something needs an optional extra that is not installed; the message names the install command."""


class HashListError(ModerateError):
    """An imported hash list has malformed lines; `problems` lists each as (line number, message)."""

    def __init__(self, source: str, problems: list[tuple[int, str]]):
        self.source = source
        self.problems = problems
        first_line, first = problems[0]
        more = f" (and {len(problems) - 1} more bad lines)" if len(problems) > 1 else ""
        super().__init__(f"{source}:{first_line}: {first}{more}; nothing imported (--skip-invalid imports the rest)")

    def __reduce__(self):
        return (HashListError, (self.source, self.problems))


class InvalidLookup(ModerateError):
    """A hash lookup or comparison was refused: the message names the field and the problem."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")

    def __reduce__(self):
        return (InvalidLookup, (self.field, self.problem))
