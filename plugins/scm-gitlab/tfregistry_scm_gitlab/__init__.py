"""tfregistry SCM publishing from GitLab (gitlab.com and self-managed)."""

from __future__ import annotations

from tfregistry_scm_gitlab.provider import GITLAB_API, GitLabScm

__version__ = "0.1.0"

__all__ = ["GITLAB_API", "GitLabScm", "__version__"]
