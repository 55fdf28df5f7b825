"""tfregistry SCM publishing from GitHub and GitHub Enterprise Server."""

from __future__ import annotations

from tfregistry_scm_github.provider import GITHUB_API, GitHubScm

__version__ = "0.1.0"

__all__ = ["GITHUB_API", "GitHubScm", "__version__"]
