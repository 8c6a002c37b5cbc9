"""Unit tests of catalogue parsing and validation, and of the shipped demo catalogue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tracker.models.catalogue import CatalogueError, load_catalogue, parse_catalogue, parse_offer
from tracker.settings import Settings

DEMO_CATEGORIES = {"shoes", "outdoor", "kitchen", "books", "electronics", "garden"}
DEMO_SLOTS = {"home-hero", "category-side", "product-side"}


def offer(offer_id: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": offer_id, "slots": ["home-hero"], "title": offer_id, "link": "/"}
    return base | fields


def valid_offers() -> list[dict[str, Any]]:
    return [offer("welcome", default=True), offer("run", categories=["shoes"], margin=0.3)]


def test_demo_catalogue_loads_and_covers_the_shop() -> None:
    catalogue = load_catalogue(Settings().catalogue_path)
    assert set(catalogue.slots) == DEMO_SLOTS
    targeted = {c for o in catalogue.offers if o.enabled for c in o.categories}
    assert targeted == DEMO_CATEGORIES
    assert catalogue.warnings == []
    for item in catalogue.offers:
        assert item.image == f"/static/offers/{item.id}.svg"
    for slot in DEMO_SLOTS:
        assert any(o.default for o in catalogue.offers_for_slot(slot)), slot


def test_offers_for_slot_keeps_order_and_skips_disabled() -> None:
    offers = [*valid_offers(), offer("off", categories=["books"], enabled=False)]
    catalogue = parse_catalogue({"offers": offers})
    assert [o.id for o in catalogue.offers_for_slot("home-hero")] == ["welcome", "run"]
    assert catalogue.offers_for_slot("product-side") == ()
    assert catalogue.get("off") is not None


def test_duplicate_ids_are_refused_naming_the_id_and_positions() -> None:
    with pytest.raises(
        CatalogueError, match=r"offer 'run': id is used twice \(offers\[1\] and offers\[2\]\)"
    ):
        parse_catalogue({"offers": [*valid_offers(), offer("run", categories=["books"])]})


@pytest.mark.parametrize("margin", [-0.1, 1.5])
def test_margin_out_of_range_names_offer_and_field(margin: float) -> None:
    offers = [*valid_offers(), offer("bad-margin", categories=["books"], margin=margin)]
    with pytest.raises(CatalogueError, match=r"offer 'bad-margin' \(offers\[2\]\), field 'margin'"):
        parse_catalogue({"offers": offers})


def test_misspelt_field_is_refused() -> None:
    with pytest.raises(CatalogueError, match=r"offer 'typo' \(offers\[2\]\), field 'categoris'"):
        parse_catalogue({"offers": [*valid_offers(), offer("typo", categoris=["shoes"])]})


def test_missing_required_field_is_named() -> None:
    bad = offer("no-link")
    del bad["link"]
    with pytest.raises(
        CatalogueError, match=r"offer 'no-link' \(offers\[2\]\), field 'link': Field required"
    ):
        parse_catalogue({"offers": [*valid_offers(), bad]})


def test_offer_without_an_id_is_located_by_index() -> None:
    bad = offer("x")
    del bad["id"]
    with pytest.raises(CatalogueError, match=r"^offer \(offers\[0\]\), field 'id'"):
        parse_catalogue({"offers": [bad, *valid_offers()]})


def test_slot_without_default_is_refused() -> None:
    offers = [*valid_offers(), offer("side", slots=["product-side"], categories=["shoes"])]
    with pytest.raises(CatalogueError, match=r"slot 'product-side' has no enabled, undated default"):
        parse_catalogue({"offers": offers})


def test_disabled_or_dated_default_does_not_count() -> None:
    disabled = [offer("welcome", default=True, enabled=False), offer("run", categories=["shoes"])]
    with pytest.raises(CatalogueError, match="slot 'home-hero'"):
        parse_catalogue({"offers": disabled})
    dated = [
        offer("welcome", default=True, ends_at="2030-01-01T00:00:00Z"),
        offer("run", categories=["shoes"]),
    ]
    with pytest.raises(CatalogueError, match="slot 'home-hero'"):
        parse_catalogue({"offers": dated})


def test_slot_with_only_disabled_offers_needs_no_default() -> None:
    offers = [*valid_offers(), offer("parked", slots=["product-side"], categories=["shoes"], enabled=False)]
    assert parse_catalogue({"offers": offers}).slots == ["home-hero"]


def test_date_window_must_be_ordered_and_zoned() -> None:
    backwards = offer(
        "w", categories=["shoes"], starts_at="2026-02-01T00:00:00Z", ends_at="2026-01-01T00:00:00Z"
    )
    with pytest.raises(CatalogueError, match=r"offer 'w'.*ends_at must be after starts_at"):
        parse_catalogue({"offers": [*valid_offers(), backwards]})
    naive = offer("n", categories=["shoes"], starts_at="2026-02-01T00:00:00")
    with pytest.raises(CatalogueError, match=r"offer 'n'.*field 'starts_at'"):
        parse_catalogue({"offers": [*valid_offers(), naive]})


def test_repeated_slot_or_category_is_refused() -> None:
    with pytest.raises(CatalogueError, match=r"offer 'dup'.*categories lists a value twice"):
        parse_catalogue({"offers": [*valid_offers(), offer("dup", categories=["shoes", "shoes"])]})


def test_bad_link_is_refused() -> None:
    with pytest.raises(CatalogueError, match=r"offer 'js'.*field 'link'"):
        parse_catalogue(
            {"offers": [*valid_offers(), offer("js", categories=["x"], link="javascript:alert(1)")]}
        )


def test_untargeted_non_default_offer_is_a_warning() -> None:
    catalogue = parse_catalogue({"offers": [*valid_offers(), offer("lost")]})
    assert catalogue.warnings == [
        "offer 'lost' has no categories and is not a default, so it can never be chosen"
    ]


def test_not_a_mapping_is_refused() -> None:
    with pytest.raises(CatalogueError):
        parse_catalogue(["not", "a", "catalogue"])
    with pytest.raises(CatalogueError, match="field 'offers': Field required"):
        parse_catalogue({})


def test_load_json_and_yaml(tmp_path: Path) -> None:
    data = {"offers": valid_offers()}
    (tmp_path / "c.json").write_text(json.dumps(data))
    (tmp_path / "c.yml").write_text(
        "offers:\n"
        "  - {id: welcome, slots: [home-hero], title: Hi, link: /, default: true}\n"
        "  - {id: run, slots: [home-hero], categories: [shoes], title: Run, link: /c/shoes, margin: 0.3}\n"
    )
    for name in ("c.json", "c.yml"):
        assert [o.id for o in load_catalogue(tmp_path / name).offers] == ["welcome", "run"]


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"cannot read catalogue '.*missing\.yaml'"):
        load_catalogue(tmp_path / "missing.yaml")
    (tmp_path / "c.toml").write_text("")
    with pytest.raises(CatalogueError, match=r"must end in \.yaml, \.yml or \.json"):
        load_catalogue(tmp_path / "c.toml")
    (tmp_path / "broken.yaml").write_text("offers: [unclosed\n")
    with pytest.raises(CatalogueError, match=r"broken\.yaml' is not valid YAML"):
        load_catalogue(tmp_path / "broken.yaml")
    (tmp_path / "bad.json").write_text(json.dumps({"offers": [offer("run", categories=["s"], margin=2)]}))
    with pytest.raises(CatalogueError, match=r"bad\.json': offer 'run' \(offers\[0\]\), field 'margin'"):
        load_catalogue(tmp_path / "bad.json")


# --- Targeting, rules and caps ---------------------------------------------------------------


def test_targeting_rules_and_caps_are_parsed() -> None:
    extra = offer(
        "big-cart",
        categories=["shoes"],
        segments=[1, 2],
        audience="returning",
        devices=["desktop", "tablet"],
        require_interest=True,
        min_cart_value=50,
        max_cart_value=500,
        pages=["/c/shoes/*", "/p/*"],
        caps={"per_session": 1, "per_day": 3},
    )
    catalogue = parse_catalogue({"offers": [*valid_offers(), extra]})
    parsed = catalogue.get("big-cart")
    assert parsed is not None
    assert parsed.segments == [1, 2] and parsed.audience == "returning"
    assert parsed.caps is not None and (parsed.caps.per_session, parsed.caps.per_day) == (1, 3)
    assert parsed.restricted and not parsed.always_eligible
    assert parsed.page_matches("/c/shoes/trail") and parsed.page_matches("/p/x")
    assert not parsed.page_matches("/c/books") and not parsed.page_matches(None)


@pytest.mark.parametrize(
    ("fields", "where", "message"),
    [
        ({"audience": "vip"}, "audience", "Input should be 'all', 'new' or 'returning'"),
        ({"devices": ["phone"]}, "devices.0", "Input should be 'desktop', 'mobile' or 'tablet'"),
        ({"segments": [-1]}, "segments.0", "greater than or equal to 0"),
        ({"pages": ["c/shoes"]}, "pages.0", "should match pattern"),
        ({"min_cart_value": -5}, "min_cart_value", "greater than or equal to 0"),
        ({"caps": {"per_session": 0}}, "caps.per_session", "greater than or equal to 1"),
        ({"caps": {"per_week": 2}}, "caps.per_week", "Extra inputs are not permitted"),
    ],
)
def test_bad_rule_fields_name_offer_and_field(fields: dict[str, Any], where: str, message: str) -> None:
    bad = offer("bad-rule", categories=["books"], **fields)
    with pytest.raises(
        CatalogueError, match=rf"offer 'bad-rule' \(offers\[2\]\), field '{where}': .*{message}"
    ):
        parse_catalogue({"offers": [*valid_offers(), bad]})


def test_inconsistent_rules_are_refused_with_the_reason() -> None:
    cart = offer("cart", categories=["books"], min_cart_value=100, max_cart_value=50)
    with pytest.raises(
        CatalogueError, match=r"offer 'cart'.*min_cart_value \(100.0\) is more than max_cart_value"
    ):
        parse_catalogue({"offers": [*valid_offers(), cart]})
    caps = offer("caps", categories=["books"], caps={"per_session": 5, "per_day": 2})
    with pytest.raises(CatalogueError, match=r"offer 'caps'.*per_session \(5\) is more than per_day \(2\)"):
        parse_catalogue({"offers": [*valid_offers(), caps]})
    interest = offer("interest", require_interest=True)
    with pytest.raises(CatalogueError, match=r"offer 'interest'.*require_interest needs categories"):
        parse_catalogue({"offers": [*valid_offers(), interest]})
    dup = offer("dup-dev", categories=["books"], devices=["mobile", "mobile"])
    with pytest.raises(CatalogueError, match=r"offer 'dup-dev'.*devices lists a value twice"):
        parse_catalogue({"offers": [*valid_offers(), dup]})


def test_a_restricted_default_does_not_count_as_the_slots_default() -> None:
    capped = [offer("welcome", default=True, caps={"per_day": 2}), offer("run", categories=["shoes"])]
    with pytest.raises(
        CatalogueError, match="slot 'home-hero' has no enabled, undated default offer without"
    ):
        parse_catalogue({"offers": capped})
    # With an unrestricted default beside it, a capped default is fine.
    both = [*capped, offer("always", default=True)]
    assert parse_catalogue({"offers": both}).get("welcome") is not None


def test_demo_catalogue_uses_rules_and_keeps_an_unrestricted_default_per_slot() -> None:
    catalogue = load_catalogue(Settings().catalogue_path)
    assert any(o.restricted for o in catalogue.offers), "the demo should show rules and caps in use"
    for slot in catalogue.slots:
        assert any(o.default and o.always_eligible for o in catalogue.offers_for_slot(slot)), slot


# --- Admin edits ---------------------------------------------------------------------------------


def test_with_offer_adds_or_replaces_and_revalidates() -> None:
    catalogue = parse_catalogue({"offers": valid_offers()})
    added = catalogue.with_offer(offer("pan", categories=["kitchen"], margin=0.5))
    assert [o.id for o in added.offers] == ["welcome", "run", "pan"]
    replaced = added.with_offer(offer("run", categories=["shoes"], title="Run faster"))
    assert replaced.get("run") is not None and replaced.get("run").title == "Run faster"  # type: ignore[union-attr]
    assert [o.id for o in replaced.offers] == ["welcome", "run", "pan"]
    assert catalogue.get("pan") is None, "the original catalogue is never changed"
    with pytest.raises(CatalogueError, match=r"offer 'run'.*field 'margin'"):
        added.with_offer(offer("run", categories=["shoes"], margin=3))


def test_with_enabled_disables_and_refuses_unknown_ids() -> None:
    catalogue = parse_catalogue({"offers": [*valid_offers(), offer("pan", categories=["kitchen"])]})
    disabled = catalogue.with_enabled("pan", False)
    assert [o.id for o in disabled.offers_for_slot("home-hero")] == ["welcome", "run"]
    assert disabled.with_enabled("pan", True).offers_for_slot("home-hero")[-1].id == "pan"
    with pytest.raises(CatalogueError, match=r"offer 'nope' is not in the catalogue"):
        catalogue.with_enabled("nope", False)
    # Disabling the only default would leave the slot without a banner: refused.
    with pytest.raises(CatalogueError, match="slot 'home-hero' has no enabled, undated default"):
        catalogue.with_enabled("welcome", False)


def test_to_data_round_trips_and_fingerprint_follows_content() -> None:
    catalogue = load_catalogue(Settings().catalogue_path)
    again = parse_catalogue(json.loads(json.dumps(catalogue.to_data())))
    assert again == catalogue
    assert again.fingerprint == catalogue.fingerprint
    changed = catalogue.with_offer(catalogue.offers[0].model_dump(mode="json") | {"title": "Other title"})
    assert changed.fingerprint != catalogue.fingerprint


def test_parse_offer_names_the_offer_and_each_field() -> None:
    assert parse_offer(offer("pan", categories=["kitchen"])).id == "pan"
    with pytest.raises(CatalogueError) as info:
        parse_offer(offer("pan", margin=1.5, categoris=["kitchen"]))
    assert str(info.value) == (
        "offer 'pan', field 'margin': Input should be less than or equal to 1; "
        "offer 'pan', field 'categoris': Extra inputs are not permitted"
    )
    with pytest.raises(CatalogueError, match=r"^offer 'pan': require_interest needs categories"):
        parse_offer(offer("pan", require_interest=True))
    with pytest.raises(CatalogueError, match=r"^offer, field 'id': Field required"):
        parse_offer({"slots": ["home-hero"], "title": "T", "link": "/"})
