"""tfregistry: a private Terraform registry.

The public API for plugin authors is what this module exports, plus
:mod:`tfregistry.hookspecs`, :mod:`tfregistry.interfaces` and
:mod:`tfregistry.testing`.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Marker for hook implementations: ``@hookimpl def tfr_configure(registry): ...``
hookimpl = pluggy.HookimplMarker("tfregistry")


class StartupError(RuntimeError):
    """The registry cannot start: bad settings, a broken plugin, an unusable backend.

    The message is shown to the operator as is, so it names the setting or plugin at fault.
    """


__all__ = ["StartupError", "__version__", "hookimpl"]
