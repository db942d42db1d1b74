"""The page's [web] options: a tile server URL is checked, and only its origin joins the CSP."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.config import ConfigError, load_central_config, web_settings_of
from central.web.routes import content_security_policy
from central.web.settings import WebSettings, tile_url_problem


def test_no_tile_server_by_default_and_the_csp_allows_only_central() -> None:
    csp = content_security_policy(WebSettings())
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "img-src 'self';" in csp
    assert "unsafe-inline" not in csp and "http" not in csp and "frame-ancestors 'none'" in csp


def test_a_tile_server_adds_its_origin_to_the_images_only(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(
        '[web]\ntile_url = "https://{s}.tiles.dijon.example:8443/osm/{z}/{x}/{y}.png"\n'
        'tile_attribution = "© OpenStreetMap contributors"\n'
    )
    settings = web_settings_of(load_central_config(tmp_path / "c.toml"))
    assert settings.tile_origin == "https://*.tiles.dijon.example:8443"
    csp = content_security_policy(settings)
    assert "img-src 'self' https://*.tiles.dijon.example:8443 data:;" in csp
    assert "connect-src 'self';" in csp and "script-src 'self';" in csp


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://tiles.example/{z}/{x}/{y}.png", "http:// or https://"),
        ("https://tiles.example/{z}/{x}.png", "{z}, {x} and {y}"),
        ("https://tiles.example/{z}/{x}/{y}.png?key={apikey}", "unknown placeholder {apikey}"),
        ("https://u:secret@tiles.example/{z}/{x}/{y}.png", "user name or password"),
        ("https://tiles.example/{z}/{x}/{y}.png; script-src *", "spaces, quotes"),
        ('https://tiles.example/"{z}/{x}/{y}', "spaces, quotes"),
        ("https://tile{s}.example/{z}/{x}/{y}.png", "first label"),
        ("https://tiles.example/" + "a" * 600 + "/{z}/{x}/{y}", "longer than 512"),
    ],
)
def test_a_wrong_tile_url_is_refused_with_the_reason(tmp_path: Path, url: str, problem: str) -> None:
    found = tile_url_problem(url)
    assert found is not None and problem in found
    (tmp_path / "c.toml").write_text(f"[web]\ntile_url = '{url}'\n" if "'" not in url else "")
    if "'" not in url:
        with pytest.raises(ConfigError) as caught:
            load_central_config(tmp_path / "c.toml")
        assert caught.value.key == "web.tile_url" and problem in caught.value.problem


def test_an_unknown_web_key_names_the_section(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('[web]\ntiles = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_central_config(tmp_path / "c.toml")
    assert caught.value.key == "web.tiles" and "[web]" in caught.value.problem
