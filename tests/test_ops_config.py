"""Configuration is environment variables only, documented in one generated table that
cannot drift from tracker/settings.py."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tracker import configdoc
from tracker.cli import app
from tracker.settings import REPO_ROOT, Settings

DOC = REPO_ROOT / "docs" / "CONFIGURATION.md"


def test_configuration_doc_matches_the_settings() -> None:
    expected = configdoc.markdown()
    assert DOC.read_text() == expected, (
        "docs/CONFIGURATION.md is out of date: run `tracker config --markdown > docs/CONFIGURATION.md`"
    )


def test_every_setting_is_one_row_of_the_table() -> None:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| `TRACKER_")]
    documented = [row.split("`")[1] for row in rows]
    assert documented == [f"TRACKER_{name.upper()}" for name in Settings.model_fields]
    assert all(row.count(" | ") >= 4 and not row.rstrip(" |").endswith("|") for row in rows)


def test_a_setting_without_description_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(configdoc.FALLBACK_DESCRIPTIONS, "redis_url")
    with pytest.raises(ValueError, match=r"without a description: redis_url\. Add a comment"):
        configdoc.setting_docs()


def test_fallback_descriptions_are_not_stale() -> None:
    assert set(configdoc.FALLBACK_DESCRIPTIONS) <= set(Settings.model_fields)


def test_defaults_do_not_depend_on_the_machine() -> None:
    text = DOC.read_text()
    assert str(REPO_ROOT) not in text
    assert "`<checkout>/deploy/catalogue.yaml`" in text
    assert "`~/.cache/tracker`" in text


def test_config_command_prints_values_in_effect_with_secrets_masked() -> None:
    env = {"TRACKER_ADMIN_TOKEN": "s3cret-admin-token-value", "TRACKER_REDIS_URL": "redis://10.1.2.3:6379/2"}
    result = CliRunner().invoke(app, ["config"], env=env)
    assert result.exit_code == 0, result.output
    assert "TRACKER_REDIS_URL=redis://10.1.2.3:6379/2" in result.output.splitlines()
    assert "TRACKER_ADMIN_TOKEN=(set)" in result.output.splitlines()
    assert "TRACKER_ACCESS_SIGNING_KEY=(empty)" in result.output.splitlines()
    assert "s3cret" not in result.output


def test_config_markdown_command_prints_the_doc() -> None:
    result = CliRunner().invoke(app, ["config", "--markdown"])
    assert result.exit_code == 0
    assert result.output == configdoc.markdown()
