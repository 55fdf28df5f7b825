"""tfregistry: a private Terraform registry.

The public API for plugin authors is what this module exports, plus
:mod:`tfregistry.hookspecs`, :mod:`tfregistry.interfaces` and
:mod:`tfregistry.testing`.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Version of the plugin API: the hooks in :mod:`tfregistry.hookspecs` (their arguments and what the
#: core does with their results), the objects hooks receive, and :mod:`tfregistry.interfaces`.
#: ``MAJOR.MINOR``: the minor part grows when something is added (a hook, a hook argument, an
#: interface method with a default), the major part when something a plugin may rely on is removed or
#: changed.  A plugin states the range it works with in its plugin module, as a PEP 440 specifier:
#: ``TFR_PLUGIN_API = ">=1.0,<2"``; a plugin whose range excludes this version stops start-up.
PLUGIN_API = "1.3"

#: Marker for hook implementations: ``@hookimpl def tfr_configure(registry): ...``
hookimpl = pluggy.HookimplMarker("tfregistry")


class StartupError(RuntimeError):
    """The registry cannot start: bad settings, a broken plugin, an unusable backend.

    The message is shown to the operator as is, so it names the setting or plugin at fault.
    """


__all__ = ["PLUGIN_API", "StartupError", "__version__", "hookimpl"]
