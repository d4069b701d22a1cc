"""The audit report as one self-contained HTML file: inline CSS, inline SVG charts, no script,
no external resource (a Content-Security-Policy of ``default-src 'none'`` says so to the
browser), so it can be mailed, attached to a ticket or archived as a CI artifact.

Charts: items per key (the census) and findings per attribute. Every text is escaped; values
appear only masked, as in the text report.
"""

from __future__ import annotations

from html import escape

from .audit import FERNET_NOTE, AuditReport

__all__ = ["render_html"]

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#1d1d1f}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.status{display:inline-block;padding:.2em .7em;border-radius:1em;color:#fff}
.clean{background:#2e7d32}.findings{background:#c62828}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.25em .5em;
border-bottom:1px solid #eee;vertical-align:top}code{font-size:.95em}
.warn{color:#a15c00}.finding{color:#c62828}svg text{font:12px system-ui,sans-serif}
"""


def _bar_chart(chart_id: str, title: str, data: dict[str, int], color: str) -> str:
    """A horizontal bar chart as inline SVG; one ``rect.bar`` per entry."""
    if not data:
        return (f'<figure id="{chart_id}"><figcaption>{escape(title)}</figcaption>'
                f'<p class="empty">nothing to chart</p></figure>')
    width, label_w, row = 640, 220, 26
    height = row * len(data) + 10
    top = max(data.values()) or 1
    rows = []
    for i, (label, value) in enumerate(data.items()):
        y = 5 + i * row
        w = max(1, int((width - label_w - 70) * value / top))
        rows.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>'
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w}" height="{row - 8}" '
            f'fill="{color}" data-label="{escape(label)}" data-value="{value}"></rect>'
            f'<text x="{label_w + w + 6}" y="{y + 16}">{value}</text>')
    return (f'<figure id="{chart_id}"><figcaption>{escape(title)}</figcaption>'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img" aria-label="{escape(title)}">{"".join(rows)}</svg></figure>')


def render_html(report: AuditReport) -> str:
    census = report.census
    per_key: dict[str, int] = {}
    if census is not None:
        per_key = dict(sorted(census.keys.items()))
        if census.unsealed:
            per_key["not sealed"] = census.unsealed
        if census.malformed:
            per_key["malformed header"] = census.malformed
    per_attribute = report.findings_per_attribute()
    if report.failure_count:
        per_attribute["(verification failures)"] = report.failure_count
    status = "findings" if report.finding_count else "clean"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">",
        f"<title>dynaseal audit: {escape(report.table)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>dynaseal audit of <code>{escape(report.table)}</code></h1>",
        f'<p><span id="status" class="status {status}">{status}</span> '
        f'<span id="finding-count">{report.finding_count}</span> findings; config '
        f"<code>{escape(report.config)}</code>; "
        f"{census.items if census else 0} items scanned.</p>",
        "<h2>Charts</h2>",
        _bar_chart("chart-keys", "Items per key", per_key, "#1565c0"),
        _bar_chart("chart-findings", "Findings per attribute", per_attribute, "#c62828"),
        "<h2>Sensitive values in the clear</h2>",
    ]
    if report.sensitive:
        parts.append('<table id="sensitive"><tr><th>Attribute</th><th>Kind</th>'
                     "<th>Items</th><th>Examples (masked)</th></tr>")
        for f in report.sensitive_sorted():
            kind = escape(f.kind) + (f"<br><small>{escape(FERNET_NOTE)}</small>"
                                     if f.kind == "fernet-token" else "")
            examples = "<br>".join(f"<code>{escape(e['key'])}</code>: "
                                   f"<code>{escape(e['masked'])}</code>" for e in f.examples)
            parts.append(f'<tr class="finding"><td><code>{escape(f.attribute)}</code></td>'
                         f"<td>{kind}</td><td>{f.count}</td><td>{examples}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>None found.</p>")
    parts.append("<h2>Verification</h2>")
    if not report.verified:
        parts.append('<p class="finding">Not verified: the keyring could not be loaded.</p>')
    if report.failures:
        parts.append('<table id="failures"><tr><th>Item key</th><th>Reason</th></tr>')
        for fail in report.failures:
            parts.append(f'<tr class="finding"><td><code>{escape(fail["key"])}</code></td>'
                         f"<td>{escape(fail['reason'])}</td></tr>")
        parts.append("</table>")
        if report.failure_count > len(report.failures):
            parts.append(f"<p>... and {report.failure_count - len(report.failures)} more.</p>")
    elif report.verified:
        parts.append("<p>Every sealed item verified.</p>")
    parts.append('<h2>Table settings</h2><table id="settings">')
    for name, value in report.settings.items():
        parts.append(f"<tr><td>{escape(name)}</td><td>{escape(value)}</td></tr>")
    parts.append("</table>")
    for w in report.warnings:
        cls = "finding" if report.strict else "warn"
        parts.append(f'<p class="{cls}">{"Finding" if report.strict else "Warning"}: '
                     f"{escape(w)}</p>")
    parts.append("<h2>Configuration</h2>")
    for problem in report.configuration:
        parts.append(f'<p class="finding">{escape(problem)}</p>')
    if not report.configuration:
        parts.append("<p>No problems.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
