"""The ejc exception hierarchy.

Every error a user can cause derives from :class:`EjcError` and says what is wrong and how
to fix it. The command line prints ``EjcError`` as one line and exits non-zero; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EjcError(Exception):
    """Base class of every error ejc raises on purpose."""


class ConfigError(EjcError):
    """A configuration is invalid. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")

    def __reduce__(self):  # noqa: ANN204 - picklable across process boundaries (Ray tasks)
        return (type(self), (self.problems,))


class SchemaError(EjcError):
    """A table does not have the shape of an ejc event table (a whole-table problem, not a bad row)."""


class ReaderError(EjcError):
    """A source file cannot be read at all (missing, unreadable, wrong format)."""

    def __init__(self, path: object, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # noqa: ANN204 - picklable across process boundaries (Ray tasks)
        return (type(self), (self.path, self.problem))


class EmbeddingError(EjcError):
    """An embedder cannot be created or cannot embed its input."""


class CheckpointError(EjcError):
    """A checkpoint is missing, corrupted, or does not match the model asked for."""


class CubeError(EjcError):
    """An embedding-cube request is invalid: bad vector, dimension mismatch, unknown transform path."""


class UnknownEntityError(CubeError, KeyError):
    """An entity id is not in the cube (serve maps it to 404)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownModalityError(CubeError, KeyError):
    """A modality (embedding space) is not in the cube, or the entity has no vector in it."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class VectorIndexError(EjcError):
    """A vector index is given bad vectors or ids, or its saved files are missing, corrupted or mismatched."""


class MissingDependencyError(EjcError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str):
        self._init_args = (package, extra, purpose)
        super().__init__(
            f"{purpose} needs the package {package!r}, which is not installed; "
            f"install it with: pip install 'ejc[{extra}]'"
        )

    def __reduce__(self):  # noqa: ANN204 - picklable across process boundaries (Ray tasks)
        return (type(self), self._init_args)


class SearchError(EjcError):
    """A snippet-search request cannot be done: nothing to index, no index at the path, an empty
    query, a line outside every snippet (``ejc search``, :mod:`ejc.search`)."""


class RequestError(EjcError):
    """A served request asks for something invalid. ``field`` names it (``sequence.events[3].embedding``),
    ``problem`` says what is wrong; ``status`` is the HTTP status to answer (422, or 404 for unknown ids)."""

    def __init__(self, field: str, problem: str, status: int = 422):
        self.field = field
        self.problem = problem
        self.status = int(status)
        super().__init__(f"{field}: {problem}")

    def __reduce__(self):  # noqa: ANN204 - keeps field/problem/status across process boundaries (Ray)
        return (type(self), (self.field, self.problem, self.status))


__all__ = [
    "CheckpointError",
    "ConfigError",
    "CubeError",
    "EjcError",
    "EmbeddingError",
    "MissingDependencyError",
    "ReaderError",
    "RequestError",
    "SchemaError",
    "SearchError",
    "UnknownEntityError",
    "UnknownModalityError",
    "VectorIndexError",
]
