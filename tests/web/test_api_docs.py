"""The interactive API docs (/docs) render offline: Swagger UI from web/static/vendor, no outside request."""

import os
from urllib.parse import urlparse

from conftest import browser_page, free_port, serve, stop


def test_api_docs_render_with_no_outside_request(db_url, clean):
    port = free_port()
    proc = serve({**os.environ, "DATABASE_URL": db_url}, port, "--no-demo")
    try:
        outside = []
        with browser_page() as (page, errors):
            def only_local(route):
                if urlparse(route.request.url).hostname == "127.0.0.1":
                    return route.continue_()
                outside.append(route.request.url)
                return route.abort()
            page.route("**/*", only_local)
            page.goto(f"http://127.0.0.1:{port}/docs")
            page.wait_for_selector(".opblock", timeout=20000)  # operations drawn from /openapi.json
            assert "/routes/check" in page.inner_text("#swagger-ui")
        assert outside == [] and errors == []
    finally:
        stop(proc)
