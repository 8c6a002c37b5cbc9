"""The snippet as the demo shop pastes it into every page's ``<head>``.

Exactly what ``js-snippet/README.md`` tells site owners to paste: the loader,
then ``tracker("init", ...)``. The shop's consent banner stores the visitor's
choice in ``localStorage`` (``nw_consent``) like any consent platform would, and
the init call starts the snippet in that state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from tracker.settings import REPO_ROOT

if TYPE_CHECKING:
    from tracker.demo.app import ShopConfig

LOADER_PATH = REPO_ROOT / "js-snippet" / "dist" / "loader.js"
# The shop serves the built file from its own origin under a neutral path (ad blockers
# block well-known tracker names and third-party hosts).
SCRIPT_PATH = "/s/t.js"


def loader_source() -> str:
    try:
        return LOADER_PATH.read_text().strip()
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"the snippet is not built ({LOADER_PATH} is missing): run `make bootstrap` "
            "or `cd js-snippet && npm ci && npm run build`"
        ) from exc


def snippet_tag(config: ShopConfig) -> str:
    init = orjson.dumps(
        {
            "site": config.site_id,
            "collector": config.collector_url,
            "offers": config.api_url,
            # The shop sends its own page views, so that category pages can say their category.
            "pageViews": False,
        }
    ).decode()
    return f"""<script>
{loader_source()}
(function () {{
  var choice = "{config.initial_consent}";
  try {{ choice = localStorage.getItem("nw_consent") || choice; }} catch (e) {{}}
  var options = {init};
  options.consent = choice;
  options.consentRecorded = choice === "granted";
  tracker("init", options);
}})();
</script>"""
