"""A user's path through the console in a real browser."""

import re
import time

from playwright.sync_api import expect

from conftest import SHOTS, api, shot, sign_in, wait_active


def test_sign_in_with_the_printed_key(server, page):
    # The key the server printed at first start is the one to sign in with.
    assert server.key.startswith("psl_") and len(server.key) == 36, server.lines
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator(".banner")).to_contain_text("simulated")
    page.fill("#api_key", "psl_not_the_key")
    page.click("button[type=submit]")
    expect(page.locator(".field-error")).to_have_text("That API key is not valid.")
    shot(page, "sign-in")
    page.fill("#api_key", server.key)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/instances$"))
    cookies = page.context.cookies()
    session = [c for c in cookies if c["name"] == "parasol_session"]
    assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict"
    # Never the key in the URL or in storage.
    assert server.key not in page.url
    stored = page.evaluate("() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
    assert server.key not in stored and "psl_" not in stored, stored
    expect(page.locator(".empty")).to_contain_text("No instances yet: pick an offer")


def test_filter_offers_launch_watch_copy_and_delete(signed_in):
    page = signed_in
    page.click("nav >> text=Offers")
    page.select_option("select[name=gpu_type]", "A6000")
    page.check("input[name=available]")
    page.check("input[name=sort]")
    page.click("form.filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"gpu_type=A6000.*available=true.*sort=price"))
    rows = page.locator("#offers tbody tr")
    assert rows.count() > 0
    for t in rows.locator("td:nth-child(3)").all_inner_texts():
        assert t.endswith("A6000"), t
    shot(page, "offers")
    # The URL is the filter: reloading it shows the same rows.
    n = rows.count()
    page.reload()
    assert page.locator("#offers tbody tr").count() == n

    page.locator('#offers tr[data-cloud="massedcompute"] >> text=Launch').first.click()
    expect(page).to_have_url(re.compile(r"/launch\?cloud=massedcompute"))
    expect(page.locator("input[name=type]")).to_have_value("A6000")
    page.fill("input[name=name]", "")
    page.click("#launch button[type=submit]")
    # The browser's own check stops an empty name; an API error shows by its field.
    expect(page.locator("select[name=region]")).to_have_value("us-central-1")
    page.fill("input[name=name]", "browser-box")
    page.fill("input[name=auto_delete_spend]", "lots")
    page.click("#launch button[type=submit]")
    expect(page.locator('.field-error[data-field="auto_delete"]')).to_be_visible()
    shot(page, "launch-error")
    page.fill("input[name=auto_delete_spend]", "")
    # Every refresh of the instance page's live part, and the event streams opened.
    refreshes, streams = [], []
    page.on("request", lambda r: refreshes.append(r.url) if r.url.endswith("/live") else None)
    page.on("request", lambda r: streams.append(r.url) if r.url.endswith("/events/stream") else None)
    page.click("#launch button[type=submit]")
    expect(page).to_have_url(re.compile(r"/instances/[0-9a-f-]{36}$"))
    # The live part waits for the stream; its only timer is the 30 s fallback.
    assert page.get_attribute("#live", "hx-trigger") == "live, every 30s"
    # Watch it go active without reloading: a marker set on this document
    # survives only if the page is never reloaded. Well within the 30 s
    # fallback poll, so the stream brought it.
    page.evaluate("() => { window.__still_here = true; }")
    expect(page.locator("#live .status")).to_have_text("active", timeout=20000)
    assert page.evaluate("() => window.__still_here") is True
    assert streams, "the page never opened the event stream"
    # Nothing happens to an active instance, so nothing is fetched: the
    # 2 s poll is gone.
    page.wait_for_timeout(500)
    quiet = len(refreshes)
    page.wait_for_timeout(4500)
    assert len(refreshes) == quiet, f"the instance page still polls: {refreshes}"
    cmd = page.locator("#ssh-command").inner_text()
    assert re.fullmatch(r"ssh -p \d+ shadeform@[\d.]+", cmd), cmd
    page.click("[data-copy=ssh-command]")
    expect(page.locator("[data-copy=ssh-command]")).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == cmd
    expect(page.locator("ol.timeline")).to_contain_text("active")
    shot(page, "instance")

    page.click("nav >> text=Instances")
    row = page.locator('#instances tr[data-name="browser-box"]')
    expect(row.locator(".status")).to_have_text("active")
    shot(page, "instances")
    row.locator("input[type=checkbox]").check()
    # The checkbox stays ticked across the list's live refreshes.
    page.evaluate("() => htmx.trigger('#rows', 'live')")
    page.wait_for_timeout(1000)
    assert row.locator("input[type=checkbox]").is_checked()
    page.once("dialog", lambda d: d.accept())
    page.click("text=Delete selected")
    expect(page).to_have_url(re.compile(r"/instances$"))
    page.evaluate("() => { window.__still_here = true; }")
    # Deleting, then gone: the live list drops it with no reload.
    expect(page.locator('#instances tr[data-name="browser-box"]')).to_have_count(0, timeout=30000)
    assert page.evaluate("() => window.__still_here") is True


def test_events_page_shows_new_events_as_they_happen(signed_in, server):
    page = signed_in
    page.click("nav >> text=Events")
    # No timer but the 30 s fallback: the stream brings what is new.
    assert page.get_attribute("#events-live", "hx-trigger") == "live, every 30s"
    page.evaluate("() => { window.__still_here = true; }")
    body = {"cloud": "massedcompute", "region": "us-central-1", "shade_instance_type": "A6000",
            "shade_cloud": True, "name": "events-box"}
    i = api(server, "POST", "/v1/instances/create", body)["id"]
    wait_active(server, i)
    expect(page.locator(f'#events a[href="/instances/{i}"]').first).to_be_visible(timeout=20000)
    assert page.evaluate("() => window.__still_here") is True
    api(server, "POST", f"/v1/instances/{i}/delete")


def test_key_and_cluster_pages(signed_in):
    page = signed_in
    page.click("nav >> text=SSH keys")
    expect(page.locator(".empty")).to_contain_text("No SSH keys yet")
    page.fill("input[name=name]", "laptop")
    page.fill("textarea[name=public_key]", "not a key")
    page.click("form.stack button[type=submit]")
    expect(page.locator('.field-error[data-field="public_key"]')).to_contain_text("not a valid OpenSSH public key")
    page.fill(
        "textarea[name=public_key]",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f me@laptop",
    )
    page.click("form.stack button[type=submit]")
    row = page.locator('#keys tr[data-name="laptop"]')
    expect(row).to_contain_text("default")
    shot(page, "keys")

    page.click("nav >> text=Clusters")
    expect(page.locator(".empty")).to_contain_text("No clusters yet")
    page.click("text=Launch a cluster >> nth=0")
    page.locator("#cluster-types tbody tr", has_text="H100_sxm5x8").filter(has_text="denvr").first.locator("text=Use").click()
    expect(page.locator("input[name=cluster_type]")).to_have_value("H100_sxm5x8")
    expect(page.locator("select[name=ssh_key_id] option:checked")).to_contain_text("laptop")
    page.fill("input[name=name]", "train")
    page.click("#cluster-launch button[type=submit]")
    expect(page).to_have_url(re.compile(r"/clusters/[0-9a-f-]{36}$"))
    # The cards wait for the cluster's events; the only timer is the fallback.
    assert page.get_attribute(".cards", "hx-trigger") == "live, every 30s"
    expect(page.locator(".cards .st").first).to_have_text("active", timeout=20000)
    assert page.locator("#nodes tbody tr").count() >= 2
    shot(page, "cluster")
    page.once("dialog", lambda d: d.accept())
    page.click("text=Delete cluster")
    expect(page).to_have_url(re.compile(r"/clusters$"))


def test_spend_chart_and_sign_out(server, page):
    # Three days of use on three clouds, with the server's test clock moved
    # forward instead of waiting.
    def launch(cloud, region, name):
        body = {"cloud": cloud, "region": region, "shade_instance_type": "A6000",
                "shade_cloud": True, "name": name}
        i = api(server, "POST", "/v1/instances/create", body)["id"]
        wait_active(server, i)

    launch("massedcompute", "us-central-1", "spend-a")
    launch("lambdalabs", "us-west-1", "spend-b")
    api(server, "POST", "/admin/clock/advance", {"seconds": 26 * 3600})
    launch("datacrunch", "FIN-01", "spend-c")
    api(server, "POST", "/admin/clock/advance", {"seconds": 30 * 3600})
    sign_in(page, server)
    page.click("nav >> text=Spend")
    month = page.locator("#month-to-date").inner_text()
    assert re.fullmatch(r"\$\d+\.\d\d", month) and month != "$0.00", month
    expect(page.locator("#spend-chart rect").first).to_be_visible()
    assert page.locator("#spend-chart rect").count() >= 5
    for cloud in ["massedcompute", "lambdalabs", "datacrunch"]:
        expect(page.locator("#spend-by-cloud")).to_contain_text(cloud)
    shot(page, "spend")
    page.click("nav >> text=Instances")
    shot(page, "instances-many")
    page.click("text=Sign out")
    expect(page).to_have_url(re.compile(r"/login$"))
    assert not [c for c in page.context.cookies() if c["name"] == "parasol_session" and c["value"]]
    page.goto("/instances")
    expect(page).to_have_url(re.compile(r"/login$"))


def test_webhook_secret_shown_once_test_ping_and_disable(signed_in, receiver):
    page = signed_in
    page.click("nav >> text=Webhooks")
    expect(page.locator(".empty")).to_contain_text("No webhooks yet")
    page.fill("input[name=url]", receiver.url)
    page.fill("input[name=events]", "instance.bogus")
    page.click("form.stack button[type=submit]")
    expect(page.locator('.field-error[data-field="events"]')).to_contain_text("unknown event type")
    expect(page.locator("input[name=url]")).to_have_value(receiver.url)
    page.fill("input[name=events]", "instance.*, ping")
    page.fill("input[name=description]", "ops pager")
    page.click("form.stack button[type=submit]")
    secret = page.locator("#webhook-secret").inner_text()
    assert secret.startswith("whsec_"), secret
    page.click("[data-copy=webhook-secret]")
    expect(page.locator("[data-copy=webhook-secret]")).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == secret
    row = page.locator("#webhooks tr", has_text="ops pager")
    expect(row).to_contain_text("enabled")
    shot(page, "webhook-created")
    # Shown once: coming back to the page, it is gone.
    page.click("nav >> text=Webhooks")
    expect(page.locator("#webhooks tr", has_text="ops pager")).to_have_count(1)
    assert secret not in page.content()
    expect(page.locator("#webhook-secret")).to_have_count(0)

    page.locator("#webhooks tr", has_text="ops pager").locator("text=Send test").click()
    expect(page).to_have_url(re.compile(r"/webhooks/[0-9a-f-]{36}$"))
    # The attempt appears without a reload, with the receiver's answer.
    expect(page.locator("#deliveries tr[data-type=ping] .result")).to_have_text("204", timeout=30000)
    # Instances of the other tests may send events too: one ping, though.
    pings = [b for b in receiver.got if b["type"] == "ping"]
    assert len(pings) == 1, receiver.got
    expect(page.locator("#deliveries tr[data-type=ping]")).to_contain_text(pings[0]["id"])
    shot(page, "webhook")

    page.click("text=Disable")
    expect(page).to_have_url(re.compile(r"/webhooks$"))
    expect(page.locator("#webhooks tr", has_text="ops pager")).to_contain_text("disabled")
    expect(page.locator("#webhooks tr", has_text="ops pager").locator("text=Send test")).to_be_disabled()
    shot(page, "webhooks")


def samples(server, instance_id):
    return api(server, "GET", f"/v1/instances/{instance_id}/metrics")["samples"]


def report(server, instance_id, steering):
    """Steers the simulated agent, moves the test clock one interval on and
    waits for the report it makes."""
    before = len(samples(server, instance_id))
    api(server, "POST", "/admin/sim/agent", dict(steering, instance_id=instance_id, reporting=True))
    api(server, "POST", "/admin/clock/advance", {"seconds": 15})
    deadline = time.monotonic() + 20
    while len(samples(server, instance_id)) <= before:
        assert time.monotonic() < deadline, "the simulated agent never reported"
        time.sleep(0.1)


def test_gpu_charts_and_the_health_badge_follow_the_agent(signed_in, server):
    page = signed_in
    # An 8-GPU machine, so the charts draw a line per GPU.
    types = api(server, "GET", "/v1/instances/types?gpu_type=H100&num_gpus=8&available=true")
    t = types["instance_types"][0]
    region = next(a["region"] for a in t["availability"] if a["available"])
    body = {"cloud": t["cloud"], "region": region, "shade_instance_type": t["shade_instance_type"],
            "shade_cloud": True, "name": "train-8x"}
    i = api(server, "POST", "/v1/instances/create", body)["id"]
    wait_active(server, i)
    gpus = api(server, "GET", f"/v1/instances/{i}/info")["configuration"]["num_gpus"]
    assert gpus == 8
    # Ten minutes of the simulated agent's own numbers (a slow wave per GPU).
    for _ in range(40):
        report(server, i, {})
    page.goto(f"/instances/{i}")
    expect(page.locator("#gpu-util-chart")).to_be_visible()
    expect(page.locator("#gpu-util-chart polyline.series")).to_have_count(gpus)
    expect(page.locator("#gpu-mem-chart polyline.series")).to_have_count(gpus)
    last = samples(server, i)[-1]["gpus"]
    mean = sum(g["utilization_percent"] for g in last) / len(last)
    expect(page.locator("#gpu-util-now")).to_have_text(f"{mean:.0f}%")
    expect(page.locator("#health h2 .hb")).to_have_text("healthy")
    expect(page.locator("#health-checks tr[data-check]")).to_have_count(4)
    page.locator("#gpu").scroll_into_view_if_needed()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#gpu").screenshot(path=str(SHOTS / "instance-gpu.png"))

    # A fatal Xid: the badge turns failed on the open page, brought by the
    # health event on the stream (well before the part's own 15 s timer).
    page.evaluate("() => { window.__still_here = true; }")
    report(server, i, {"xid": 79})
    # A second on, the instance is due and the reconciler's step sees the
    # report (ingestion does not wake it).
    api(server, "POST", "/admin/clock/advance", {"seconds": 1})
    expect(page.locator("#health h2 .hb")).to_have_text("failed", timeout=10000)
    expect(page.locator('#health-checks tr[data-check="xid"]')).to_contain_text("79")
    assert page.evaluate("() => window.__still_here") is True

    page.click("nav >> text=Instances")
    row = page.locator(f'#instances tr[data-id="{i}"]')
    expect(row.locator(".gpu-util")).to_have_text(re.compile(r"^\d+%$"))
    expect(row.locator(".health .hb")).to_have_text("failed")
    shot(page, "instances-gpu")
