"""Screenshot of the page of the adapter that `bench/tuning.py` trained last (for the README).

    .venv/bin/python bench/adapter_page.py [--role Sales] [--out docs/img/tuning.png]

Serves the real application with uvicorn on the tuning benchmark's database
(`counsel_tuning_bench`), signs in as the demo administrator in headless Chromium and saves the
adapter page: live loss curve, held-out accuracy of base model, adapter, RAG and hybrid, leak
probe, sample answers. Run it after `bench/tuning.py`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from common import DEFAULT_DATABASE_URL, ROOT, log, setup_django
from load import free_port, start_server

BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", default="Sales")
    parser.add_argument("--out", default=str(ROOT / "docs" / "img" / "tuning.png"))
    args = parser.parse_args()
    url = os.environ.setdefault(
        "BENCH_DATABASE_URL", DEFAULT_DATABASE_URL.replace("counsel_bench", "counsel_tuning_bench")
    )
    os.environ.setdefault("LLM_ADAPTER_DIR", "bench/results/adapters")
    setup_django(migrate=False)

    from django.conf import settings
    from django.contrib.auth.models import Group
    from playwright.sync_api import sync_playwright

    from accounts.selectors import access_profile_for_role
    from tuning.models import Adapter

    profile = access_profile_for_role(role=Group.objects.get(name=args.role))
    adapter = Adapter.objects.filter(profile_key=profile.key).order_by("-version").first()
    if adapter is None:
        raise SystemExit(f"no adapter for {args.role}: run bench/tuning.py --roles {args.role}")
    os.environ.update(DATABASE_URL=url, COUNSEL_DOTENV="0", DJANGO_DEBUG="1")
    port = free_port()
    server = start_server(port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            base = f"http://127.0.0.1:{port}"
            page.goto(base + "/accounts/login/")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(settings.DEMO_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.goto(f"{base}/manage/adapters/{adapter.pk}/")
            page.locator("#evaluation").wait_for()
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
        log(f"{adapter.name} ({adapter.state}): saved {args.out}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
