"""The live view as a terminal page (the README's screenshot of it)."""

from __future__ import annotations

from tracker.live.figures import Figures
from tracker.live.page import terminal_page
from tracker.live.view import render_block


def test_terminal_page_shows_the_output_then_the_block_escaped() -> None:
    block = render_block(Figures(interval=2.0, offers_per_s=5.3, ctr_groups={"policy": 0.196}))
    page = terminal_page(["$ make run", "<b>not markup</b> & more"], block, title="make <run>")
    pre = page[page.index("<pre>") : page.index("</pre>")]
    assert len(pre.split("\n")) == 2 + len(block)
    assert "&lt;b&gt;not markup&lt;/b&gt; &amp; more" in pre and "<b>" not in pre
    assert "CTR policy 19.6% vs holdout -" in pre
    assert "<title>make &lt;run&gt;</title>" in page
    assert "<script" not in page and "http" not in page
