"""actor-admin: one supervised WhatsApp connection per YClients salon."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("actor-admin")
except PackageNotFoundError:  # running from a checkout without an install
    __version__ = "0.0.0+checkout"

__all__ = ["__version__"]
