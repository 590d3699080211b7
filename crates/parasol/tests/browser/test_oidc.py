"""Signing in through an OpenID provider in a real browser: the provider is
oidc-provider-mock (PyPI) on a local port, and its own sign-in page is used."""

import json
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest
from playwright.sync_api import expect

from conftest import api, open_page, shot, start_server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def idp():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "oidc_provider_mock", "--port", str(port), "--require-nonce"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(issuer + "/.well-known/openid-configuration", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("oidc-provider-mock did not start")
            time.sleep(0.1)
    yield issuer
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def oidc_server(idp):
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    secret = tempfile.NamedTemporaryFile("w", delete=False)
    secret.write("s3cret")
    secret.close()
    config.write(f"""
[oidc]
issuer = "{idp}"
client_id = "parasol"
client_secret_file = "{secret.name}"
name = "Mock IdP"
contact = "ml-platform@example.com"

[[oidc.rules]]
group = "ml-team"
account = "research"
role = "member"

[[oidc.rules]]
email_domain = "example.com"
account = "infra"
role = "viewer"
""")
    config.close()
    yield from start_server(["--config", config.name])


@pytest.fixture()
def page(browser, oidc_server):
    yield from open_page(browser, oidc_server.url)


def set_user(idp, sub, claims):
    req = urllib.request.Request(f"{idp}/users/{sub}", data=json.dumps(claims).encode(),
                                 method="PUT", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10)


def test_sign_in_through_the_provider_switch_accounts_and_a_viewer_cannot_launch(idp, oidc_server, page):
    for name in ("research", "infra"):
        api(oidc_server, "POST", "/v1/admin/accounts/create", {"name": name})
    set_user(idp, "ada", {"email": "ada@example.com", "email_verified": True, "name": "Ada",
                          "groups": ["ml-team"]})

    page.goto("/login")
    expect(page.locator("a[data-provider=default]")).to_have_text("Sign in with Mock IdP")
    shot(page, "sign-in-oidc")
    page.click("a[data-provider=default]")
    # The provider's own page: who to sign in as.
    expect(page).to_have_url(re.compile(r"/oauth2/authorize\?"))
    page.fill("input[name=sub]", "ada")
    page.click("button[type=submit]:has-text('Authorize')")
    expect(page).to_have_url(re.compile(r"/instances$"))
    expect(page.locator(".who .person")).to_have_text("ada@example.com · member")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["parasol_session"]["sameSite"] == "Strict", cookies

    # research (a member): launch buttons are there.
    page.goto("/offers")
    assert page.locator("#offers a:has-text('Launch')").count() > 0

    # Switch to infra, where the domain rule makes Ada a viewer.
    page.select_option("form.switch select[name=account]", label="infra")
    page.click("form.switch button[type=submit]")
    expect(page.locator(".who .person")).to_have_text("ada@example.com · viewer")
    expect(page.locator(".who .account")).to_have_text("infra")
    page.goto("/offers")
    assert page.locator("#offers tbody tr").count() > 0
    assert page.locator("#offers a:has-text('Launch')").count() == 0
    shot(page, "viewer-offers")

    # A forged launch, with the session's own CSRF token, is refused.
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    status, text = page.evaluate("""async (csrf) => {
        const r = await fetch('/launch', {method: 'POST', headers: {'Content-Type':
          'application/x-www-form-urlencoded'}, body: new URLSearchParams({csrf, cloud:
          'massedcompute', region: 'us-central-1', type: 'A6000', name: 'forged'})});
        return [r.status, await r.text()];
    }""", csrf)
    assert status == 403, text
    assert "needs the member role" in text
    assert api(oidc_server, "GET", "/v1/instances")["instances"] == []


def test_a_person_no_rule_matches_is_told_whom_to_ask(idp, oidc_server, page):
    set_user(idp, "mallory", {"email": "mallory@elsewhere.org"})
    page.goto("/login")
    page.click("a[data-provider=default]")
    page.fill("input[name=sub]", "mallory")
    page.click("button[type=submit]:has-text('Authorize')")
    expect(page.locator("#no-access")).to_contain_text("ml-platform@example.com")
    shot(page, "no-access")
