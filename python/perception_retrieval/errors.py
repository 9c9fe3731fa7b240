"""The exceptions perception_retrieval raises.

Every error is a ``perception_retrieval.Error`` and also the built-in exception
a Python user would catch for that problem, so existing ``except ValueError`` or
``except FileNotFoundError`` code keeps working:

==========================  ===========================  ==========================================
class                       also a                       raised for
==========================  ===========================  ==========================================
``InvalidArgumentError``    ``ValueError``               a bad argument value (size, k, option)
``FileNotFoundError``       ``FileNotFoundError``        a file (image, model, index) that is missing
``IoError``                 ``OSError``                  a file that cannot be read or written
``CorruptFileError``        ``ValueError``               damaged data: truncated image, bad checksum,
                                                         a model that is not TorchScript
``UnsupportedFormatError``  ``ValueError``               a format or feature this build cannot read
``VersionMismatchError``    ``RuntimeError``             a file of a newer format version, a build
                                                         against another torch
``CancelledError``          ``RuntimeError``             a call asked to stop
==========================  ===========================  ==========================================

Wrong argument *types* raise plain ``TypeError``, and Ctrl-C raises
``KeyboardInterrupt``, as everywhere in Python. The C++ library throws the
``pe::Error`` classes of the same names (``pe/error.hpp``); docs/errors.md lists
which functions raise what.
"""

import builtins

__all__ = ["Error", "InvalidArgumentError", "FileNotFoundError", "IoError", "CorruptFileError",
           "UnsupportedFormatError", "VersionMismatchError", "CancelledError"]


class Error(Exception):
    """Base class of every perception_retrieval error."""


class InvalidArgumentError(Error, ValueError):
    """An argument has a value the function cannot take; the message names it."""


class IoError(Error, OSError):
    """A file could not be read or written."""


class FileNotFoundError(IoError, builtins.FileNotFoundError):  # noqa: A001 - the built-in's name on purpose
    """A file the call needs does not exist."""


class CorruptFileError(Error, ValueError):
    """A file or buffer is damaged or truncated."""


class UnsupportedFormatError(Error, ValueError):
    """The input is in a format (or needs a feature) this build does not support."""


class VersionMismatchError(Error, RuntimeError):
    """A file or build belongs to another version."""


class CancelledError(Error, RuntimeError):
    """A long call was asked to stop."""
