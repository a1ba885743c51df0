"""The test node itself: the app serves its static pages on a real port with the security headers."""

from __future__ import annotations

from .conftest import TestNode


async def test_static_connect_page_is_served_with_frame_ancestors_for_yclients(node: TestNode) -> None:
    response = await node.http.get("/static/onboarding.html")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors" in csp and "https://*.yclients.com" in csp
    assert "x-frame-options" not in response.headers


async def test_unknown_route_answers_the_json_error_shape(node: TestNode) -> None:
    response = await node.http.get("/no/such/route")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
