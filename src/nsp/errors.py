"""The errors nsp raises on purpose, all under :class:`NspError`.

Each is also the built-in exception a caller would expect of it (a bad config or file is a ``ValueError``,
a network that cannot be traced a ``RuntimeError``, a transform used before ``fit`` a ``ValueError`` and
an ``AttributeError`` as in scikit-learn), so ``except ValueError`` keeps working. The command line prints
an :class:`NspError` as one line and exits with status 2; anything else is a bug and keeps its traceback.
This module imports nothing: every part of nsp can raise these without loading another. The classes are
also reachable where they are raised (``nsp.tracing.TraceError``, ``nsp.pipeline.config.ConfigError``, …).
"""


class NspError(Exception):
    """Base of the errors nsp raises on purpose: bad input, not a bug."""


class ConfigError(NspError, ValueError):
    """A config that does not follow the schema or refers to something undefined."""


class StorageError(NspError, ValueError):
    """A file that is not what was expected (kind, version, encoding, damaged, or not readable)."""


class DatasetError(NspError, ValueError):
    """A dataset that cannot be loaded as configured (a missing array, a wrong shape or type)."""


class ExternalModelError(NspError, ValueError):
    """A named architecture that cannot be built: unknown source or name, missing extra, a download asked for."""


class TraceError(NspError, RuntimeError):
    """The network could not be traced in the requested mode."""


class ConnectivityError(NspError, ValueError):
    """An operation whose connectivity nsp cannot determine."""


class EdgeWeightError(NspError, RuntimeError):
    """The linear part (edge weights) of an operation could not be derived."""


class KroneckerError(NspError, ValueError):
    """A matrix that cannot be written in the requested Kronecker form."""


class NotFactorable(NspError, ValueError):
    """A graph whose closure has no Kronecker-factored form; the message says why."""


class NotFittedError(NspError, ValueError, AttributeError):
    """A transform used before ``fit``."""


class ExactnessError(NspError, ValueError):
    """Input the exact transform cannot take (NaN or infinity), or a sum too long for exact float64."""


class MemoryBudgetError(NspError, ValueError):
    """A step whose estimated memory exceeds what this process may use; nothing was computed."""


class RegistryError(NspError, ValueError):
    """An unknown name in a registry (transform, operation kind, figure kind, ...) or a name taken twice."""


class InputError(NspError, ValueError):
    """An argument a function cannot take: a wrong shape or value, or an object not built the way the call
    needs (activations loaded without their operations, a graph without edge weights)."""


class InputTypeError(NspError, TypeError):
    """An argument of a type the function does not take."""


class NotInGraphError(NspError, KeyError):
    """A node index or a layer name that is not in the graph."""

    def __str__(self) -> str:                 # the message as written, not quoted as a KeyError's key
        return str(self.args[0]) if self.args else ""


class MissingFileError(NspError, FileNotFoundError):
    """An input file that does not exist."""


class OutputError(NspError, OSError):
    """An output file the file system refuses: a full disk, quota or file size limit, no permission, a
    read-only file system, a name too long, a file where a folder should be."""

    def __str__(self) -> str:                 # the message alone, without OSError's "[Errno N]" prefix
        return str(self.strerror)
