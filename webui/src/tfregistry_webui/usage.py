"""Download statistics of a module (from ``DownloadEvent``) and their server-rendered SVG chart."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from markupsafe import Markup, escape

_CLIENT = re.compile(r"^(Terraform|OpenTofu)/([0-9][0-9A-Za-z.+-]{0,40})")
#: How far back the charts go.
WEEKS = 26
MONTHS = 12


def client_of(user_agent: str | None) -> tuple[str, str]:
    """``("Terraform", "1.9.5")``, ``("OpenTofu", "1.8.0")`` or ``("Other", "")`` from a User-Agent."""
    match = _CLIENT.match(user_agent or "")
    return (match.group(1), match.group(2)) if match else ("Other", "")


def week_of(moment: datetime) -> date:
    """The Monday starting the ISO week of ``moment``."""
    day = moment.date()
    return day - timedelta(days=day.weekday())


def month_of(moment: datetime) -> date:
    return moment.date().replace(day=1)


@dataclass
class Period:
    """Downloads in one week or month."""

    start: date
    total: int = 0
    by_client: Counter[str] = field(default_factory=Counter)
    by_version: Counter[str] = field(default_factory=Counter)


@dataclass
class Usage:
    weeks: list[Period]
    months: list[Period]
    #: ("Terraform", "1.9.5") -> downloads, over the whole window.
    client_versions: Counter[tuple[str, str]]
    clients: Counter[str]
    versions: Counter[str]
    total: int


def _months_back(today: date, count: int) -> list[date]:
    months = []
    year, month = today.year, today.month
    for _ in range(count):
        months.append(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months[::-1]


def aggregate(events: Iterable[tuple[datetime, str | None, str]], today: date) -> Usage:
    """Count ``(at, user_agent, version)`` events per week (the last :data:`WEEKS`), per month (the
    last :data:`MONTHS`), per client and client version, and per module version."""
    first_week = week_of(datetime.combine(today, datetime.min.time())) - timedelta(weeks=WEEKS - 1)
    weeks = {first_week + timedelta(weeks=i): Period(first_week + timedelta(weeks=i)) for i in range(WEEKS)}
    months = {start: Period(start) for start in _months_back(today, MONTHS)}
    client_versions: Counter[tuple[str, str]] = Counter()
    clients: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    total = 0
    for at, agent, version in events:
        client, client_version = client_of(agent)
        total += 1
        clients[client] += 1
        versions[version] += 1
        if client != "Other":
            client_versions[(client, client_version)] += 1
        for period in (weeks.get(week_of(at)), months.get(month_of(at))):
            if period is not None:
                period.total += 1
                period.by_client[client] += 1
                period.by_version[version] += 1
    return Usage(list(weeks.values()), list(months.values()), client_versions, clients, versions, total)


def bar_chart(periods: list[Period], *, title: str, label_format: str, chart_id: str) -> Markup:
    """An accessible SVG bar chart (stacked: Terraform, then OpenTofu and others) with a ``<title>``;
    the numbers are also in a table next to it.  Colours come from the stylesheet (classes only)."""
    width, height, left, bottom, top = 720, 220, 36, 34, 12
    peak = max([p.total for p in periods] + [1])
    slot = (width - left - 8) / max(len(periods), 1)
    bar = max(slot * 0.7, 2)
    plot = height - bottom - top
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-labelledby="{chart_id}-title" '
             f'xmlns="http://www.w3.org/2000/svg"><title id="{chart_id}-title">{escape(title)}</title>',
             f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - 4}" y2="{height - bottom}"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak}</text>',
             f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">0</text>']
    every = max(1, len(periods) // 8)
    for i, period in enumerate(periods):
        x = left + i * slot + (slot - bar) / 2
        terraform = period.by_client.get("Terraform", 0)
        rest = period.total - terraform
        y = height - bottom
        for count, css in ((terraform, "bar"), (rest, "bar alt")):
            if count:
                h = plot * count / peak
                y -= h
                parts.append(f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                             f"<title>{period.start.strftime(label_format)}: {count}</title></rect>")
        if i % every == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                         f"{period.start.strftime(label_format)}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


def by_version_table(usage: Usage, periods: list[Period], limit: int = 10) -> list[tuple[str, list[int], int]]:
    """Rows of (version, downloads per period, total) for the most downloaded versions."""
    rows = []
    for version, total in usage.versions.most_common(limit):
        rows.append((version, [p.by_version.get(version, 0) for p in periods], total))
    return rows


def group_client_versions(usage: Usage) -> dict[str, list[tuple[str, int]]]:
    """``{"Terraform": [("1.9.5", 12), ...], "OpenTofu": [...]}``, most used first."""
    grouped: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for (client, version), count in usage.client_versions.most_common():
        grouped[client].append((version, count))
    return dict(grouped)
