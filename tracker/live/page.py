"""The live view as a terminal-looking HTML page (for a screenshot of what ``tracker up`` shows).

Pure: the lines printed above the block (the run's own output) and the block of
:func:`tracker.live.view.render_block` in, one self-contained HTML page out.

>>> page = terminal_page(["$ make run"], [("live figures", ""), ("  CTR 4.2%", "  (rewards)")])
>>> "live figures" in page and '<span class="dim">  (rewards)</span>' in page
True
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from tracker.live.view import Line

CSS = """
html,body{margin:0;background:#e9ecef}
.frame{padding:12px}
.term{border-radius:8px;overflow:hidden;box-shadow:0 4px 14px rgba(0,0,0,.25);background:#1e1f22}
.bar{background:#34363b;color:#c9ccd1;font:13px system-ui,sans-serif;padding:7px 12px}
.bar i{display:inline-block;width:11px;height:11px;border-radius:50%;margin-right:6px;
vertical-align:-1px}
pre{margin:0;padding:10px 14px 14px;color:#d7dae0;font:12.5px/1.5 'DejaVu Sans Mono',
'Liberation Mono',monospace;white-space:pre}
.block{color:#fff}.head{color:#7fc4ff}.dim{color:#8b9099}.prompt{color:#9fdc8c}
"""


def terminal_page(above: Sequence[str], block: Sequence[Line], *, title: str = "tracker up") -> str:
    """A terminal window showing ``above`` (plain lines) and, under them, the live ``block``."""
    rows = []
    for line in above:
        css = "prompt" if line.startswith("$ ") else ""
        rows.append(f'<span class="{css}">{escape(line)}</span>' if css else escape(line))
    for index, (text, note) in enumerate(block):
        css = "head" if index == 0 else "block"
        dim = f'<span class="dim">{escape(note)}</span>' if note else ""
        rows.append(f'<span class="{css}">{escape(text)}</span>{dim}')
    dots = "".join(f'<i style="background:{c}"></i>' for c in ("#ff5f57", "#febc2e", "#28c840"))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'<div class="frame"><div class="term"><div class="bar">{dots} {escape(title)}</div>'
        f"<pre>{chr(10).join(rows)}</pre></div></div></body></html>\n"
    )
