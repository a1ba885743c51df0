"""The one name for a decoded JSON object whose fields are not checked yet.

Bodies from the outside (HTTP, websocket frames, YClients' answers, simulator frames) arrive as
``JSON`` and are read field by field with ``isinstance`` checks; what we build to send is ``JSON``
too. Anything with a fixed shape gets its own type instead (``session.Frame``, the store's records).
"""

from typing import Any, TypeAlias

JSON: TypeAlias = dict[str, Any]

__all__ = ["JSON"]
