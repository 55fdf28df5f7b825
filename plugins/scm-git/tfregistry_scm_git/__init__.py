"""tfregistry SCM publishing from any git URL: tags found with ``git ls-remote``, polled."""

from __future__ import annotations

from tfregistry_scm_git.provider import GitScm, check_url

__version__ = "0.1.0"

__all__ = ["GitScm", "__version__", "check_url"]
