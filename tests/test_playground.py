"""The playground (``GET /playground``, service/playground/) in a real browser: Debian's chromium driven by
Playwright against the session's service (auth required, so the page's API-key field is used).

Each test draws with mouse events the way a person would, runs the edit from the page and checks what the
service computed: the mask the page uploaded and the result PNG, fetched by the API. Outside CI a machine
without chromium or Playwright skips these tests; with CI=true they fail instead (the README's test
command installs chromium first).
"""

from __future__ import annotations

import io
import os

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import TEST_TOKENS

ADMIN_KEY = TEST_TOKENS["admin"]
DESKTOP = {"width": 1280, "height": 800}


def _chromium() -> str:
    from service.tools.playground_shots import chromium_path

    try:
        import playwright.sync_api  # noqa: F401

        return chromium_path()
    except (ImportError, SystemExit) as exc:
        message = f"the playground tests need Playwright and Debian's chromium: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def browser(service):
    _chromium()
    from playwright.sync_api import sync_playwright

    from service.tools.playground_shots import launch

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _view(page, service, model: str, op: str | None = None, key: str | None = ADMIN_KEY) -> None:
    from service.tools.playground_shots import open_view

    open_view(page, service.url, model, key, op)


def _png(client, asset_id: str, mode: str = "RGB") -> np.ndarray:
    url = client.get(f"/v1/assets/{asset_id}").json()["url"]
    return np.asarray(Image.open(io.BytesIO(httpx.get(url).content)).convert(mode)).astype(int)


def _last_request(page) -> dict:
    return page.evaluate("() => playground.lastResult.request")


# ---- the route -----------------------------------------------------------------------------------
def test_the_page_is_static_needs_no_key_and_is_not_in_the_api_schema(service, client):
    anonymous = httpx.Client(base_url=service.url, timeout=30)
    page = anonymous.get("/playground")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "/playground/app.js" in page.text
    script = anonymous.get("/playground/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "no build step" in script.text[:600].lower()
    example = anonymous.get("/playground/examples/astronaut.png")
    assert example.status_code == 200 and Image.open(io.BytesIO(example.content)).size == (64, 64)
    for missing in ("/playground/nope.js", "/playground/../service/ingress.py", "/playground/%2e%2e/pyproject.toml"):
        response = anonymous.get(missing)
        assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json", missing
    assert anonymous.get("/v1/models").status_code == 401  # the page is open, the API behind it is not
    assert not [path for path in client.get("/openapi.json").json()["paths"] if path.startswith("/playground")]


# ---- families ------------------------------------------------------------------------------------
def test_an_inpaint_mask_drawn_on_the_canvas_fills_the_hole_and_keeps_the_rest(page, service, client):
    from service.tools.playground_shots import drag, native_to_page, run_edit

    _view(page, service, "edgeconnect-demo", "inpaint")
    assert page.evaluate("() => playground.bgSize") == [64, 64]
    page.click("#tool-brush")
    page.evaluate("() => { const s = document.getElementById('brush-size'); s.value = 6; s.dispatchEvent(new Event('input')); }")
    drag(page, native_to_page(page, 16, 30), native_to_page(page, 46, 30))
    result_id = run_edit(page)
    request = _last_request(page)
    mask_png = httpx.get(client.get(f"/v1/assets/{request['inputs']['mask']}").json()["url"]).content
    assert Image.open(io.BytesIO(mask_png)).mode == "L"  # the page uploads a real greyscale PNG
    mask = np.asarray(Image.open(io.BytesIO(mask_png))).astype(int)
    hole = mask >= 128
    assert hole[30, 20:42].all() and not hole[:20].any() and not hole[40:].any()
    image, result = _png(client, request["inputs"]["image"]), _png(client, result_id)
    assert np.abs(result - image)[hole].mean() > 5, "the hole did not change"
    assert np.abs(result - image)[mask == 0].max() <= 2, "pixels outside the hole changed"
    timings = page.inner_text("#timings")
    assert "total ms" in timings and "compute ms" in timings
    # the edge tool draws on its own layer, sent as inputs.edges
    page.click("#tool-stroke")
    drag(page, native_to_page(page, 20, 28), native_to_page(page, 40, 32))
    run_edit(page)
    assert len(_last_request(page)["inputs"].get("edges", "")) == 64
    # the form offers the strategies of the op's schema; a crop's box is drawn over the result
    assert {"crop", "original", "resize"} <= set(page.eval_on_selector_all("#params-strategy option", "os => os.map(o => o.textContent)"))
    page.select_option("#params-strategy", label="crop")
    page.fill("#params-crop_margin", "4")
    run_edit(page)
    response = page.evaluate("() => playground.lastResult.response")
    assert _last_request(page)["params"]["strategy"] == "crop" and _last_request(page)["params"]["crop_margin"] == 4
    boxes = response["extras"]["crop_boxes"]
    assert boxes and all(w < 64 or h < 64 for _, _, w, h in boxes)  # a crop, not the whole image
    drawn = page.eval_on_selector_all("#result-boxes .box", "bs => bs.map(b => [b.style.left, b.style.top, b.style.width, b.style.height])")
    assert drawn == [[f"{100 * x / 64:g}%", f"{100 * y / 64:g}%", f"{100 * w / 64:g}%", f"{100 * h / 64:g}%"] for x, y, w, h in boxes]
    assert "crop box" in page.inner_text("#result-caption")


def test_a_collage_region_takes_the_class_picked_for_it(page, service, client):
    from service.tools.playground_shots import drag, native_to_page, run_edit

    _view(page, service, "collage-faces", "label_collage")
    page.select_option("#inputs-base-class_id", "cat")
    page.select_option("#inputs-regions-0-class_id", "owl")
    page.fill("#inputs-regions-0-intensity", "1")
    page.click("#tool-brush")
    drag(page, native_to_page(page, 6, 12), native_to_page(page, 26, 12))
    drag(page, native_to_page(page, 6, 16), native_to_page(page, 26, 16))
    result_id = run_edit(page)
    request = _last_request(page)
    region = request["inputs"]["regions"][0]
    assert region["class_id"] == "owl" and region["intensity"] == 1 and len(region["mask"]) == 64
    assert request["inputs"]["base"]["class_id"] == "cat"
    base = client.post(
        "/v1/edits",
        json={"model": "collage-faces", "op": "sample", "inputs": {"seed": request["inputs"]["base"]["seed"], "class_id": "cat"}},
    ).json()
    assert np.abs(_png(client, result_id) - _png(client, base["result_id"])).mean() > 1, "the region's class changed nothing"
    # a second region, on its own layer, with its own class
    page.click("#inputs-regions-add")
    page.select_option("#inputs-regions-1-class_id", "frog")
    drag(page, native_to_page(page, 8, 26), native_to_page(page, 24, 26))
    run_edit(page)
    assert [r["class_id"] for r in _last_request(page)["inputs"]["regions"]] == ["owl", "frog"]


def test_a_dragged_keypoint_is_the_target_pose_of_pose_transfer(page, service, client):
    from service.tools.playground_shots import drag, native_to_page, run_edit

    _view(page, service, "warp-persons", "pose_transfer")
    page.click("#tool-keypoints")
    before = page.evaluate("() => playground.pose.points")
    index = next(i for i in (4, 7, 3, 6, 2, 5) if before[i])
    x, y = before[index]
    target = (min(30.0, x + 7), max(2.0, y - 6))
    drag(page, native_to_page(page, x, y), native_to_page(page, *target))
    result_id = run_edit(page)
    request = _last_request(page)
    moved = request["inputs"]["target_keypoints"]
    assert abs(moved[index][0] - target[0]) < 1 and abs(moved[index][1] - target[1]) < 1
    assert [p for i, p in enumerate(moved) if i != index] == [p for i, p in enumerate(before) if i != index]
    unmoved = client.post(
        "/v1/edits",
        json={"model": "warp-persons", "op": "pose_transfer", "inputs": {"image": request["inputs"]["image"], "target_keypoints": before}},
    ).json()
    assert unmoved["result_id"] != result_id
    assert np.abs(_png(client, result_id) - _png(client, unmoved["result_id"])).mean() > 0.5
    # the keyboard moves the chosen keypoint too
    page.focus("#canvas")
    page.keyboard.press("ArrowRight")
    assert page.evaluate(f"() => playground.pose.points[{index}][0]") == pytest.approx(moved[index][0] + 1, abs=0.02)
    page.keyboard.press("Control+z")
    assert page.evaluate(f"() => playground.pose.points[{index}][0]") == pytest.approx(moved[index][0], abs=0.02)


# ---- errors, keys, links ---------------------------------------------------------------------------
def test_a_4xx_is_shown_next_to_the_field_it_names(page, service):
    from service.tools.playground_shots import drag, native_to_page

    _view(page, service, "edgeconnect-demo", "inpaint")
    page.click("#run")  # nothing drawn: the required mask is missing
    page.wait_for_function("() => document.getElementById('err-inputs-mask').textContent")
    assert "required" in page.inner_text("#err-inputs-mask").lower()
    page.click("#tool-brush")
    drag(page, native_to_page(page, 10, 10), native_to_page(page, 30, 20))
    page.fill("#params-dilate", "99")  # the schema says at most 32
    page.click("#run")
    page.wait_for_function("() => document.getElementById('err-params-dilate').textContent")
    assert "32" in page.inner_text("#err-params-dilate")
    assert page.get_attribute("#params-dilate", "aria-invalid") == "true"
    assert page.inner_text("#err-inputs-mask") == ""
    assert "422" in page.inner_text("#err-general")


def test_the_api_key_is_asked_for_kept_out_of_urls_and_a_wrong_one_is_shown_at_its_field(page, service):
    page.goto(f"{service.url}/playground")
    page.wait_for_selector("body[data-ready=true]")
    assert "API key" in page.inner_text("#err-api-key")  # auth is on: the page says what it needs
    page.fill("#api-key", "clg_not-a-key")
    page.click("#connect")
    page.wait_for_function(
        "() => document.getElementById('err-api-key').textContent.includes('401') || "
        "document.getElementById('err-api-key').textContent.length > 20"
    )
    page.fill("#api-key", ADMIN_KEY)
    page.check("#remember-key")
    page.click("#connect")
    page.wait_for_function("() => window.playground.models.length > 0")
    assert page.evaluate("() => sessionStorage.getItem('collage-api-key')") == ADMIN_KEY
    assert page.evaluate("() => document.cookie") == ""
    assert ADMIN_KEY not in page.url


def test_the_link_of_a_result_reopens_the_same_edit(page, browser, service):
    from service.tools.playground_shots import drag, native_to_page, run_edit

    _view(page, service, "collage-faces", "label_collage")
    page.fill("#inputs-base-seed", "7")
    page.click("#tool-brush")
    drag(page, native_to_page(page, 8, 8), native_to_page(page, 24, 20))
    result_id = run_edit(page)
    link = page.get_attribute("#permalink", "href")
    assert link.startswith(f"#result={result_id}&edit=") and ADMIN_KEY not in link
    request = _last_request(page)
    other = browser.new_context(viewport=DESKTOP).new_page()
    other.goto(f"{service.url}/playground{link}")
    other.wait_for_selector("body[data-ready=true]")
    other.fill("#api-key", ADMIN_KEY)
    other.click("#connect")
    other.wait_for_function("id => document.getElementById('result-figure').dataset.resultId === id", arg=result_id)
    other.wait_for_function(
        "() => document.getElementById('result-image').complete && document.getElementById('result-image').naturalWidth === 32"
    )
    assert other.input_value("#inputs-base-seed") == "7"
    assert other.evaluate("() => playground.layers[0].ghost.id") == request["inputs"]["regions"][0]["mask"]
    assert run_edit(other) == result_id  # the reopened form is the same edit: the same result id
    other.context.close()


# ---- jobs ----------------------------------------------------------------------------------------------
def test_a_batch_runs_as_a_job_with_progress_and_a_fit_job_can_be_cancelled(page, service, client):
    from service.tools.playground_shots import run_edit

    _view(page, service, "collage-faces", "sample")
    page.fill("#batch", "3")
    run_edit(page, timeout_ms=120_000)
    page.wait_for_function("() => document.querySelectorAll('#gallery img').length === 3")
    assert "succeeded" in page.inner_text("#job-state")
    assert page.evaluate("() => document.getElementById('job-progress').value") == 1
    # InGAN: the fit panel is generated from the FitJob schema of /openapi.json; a long fit, then cancel
    _view(page, service, "ingan-rocket")
    assert page.is_visible("#fit-panel")
    page.wait_for_function("() => document.getElementById('fit-image').value.length === 64")
    page.fill("#fit-iterations", "100000")
    page.fill("#fit-name", "ingan-playground-cancel")
    page.click("#fit-run")
    page.wait_for_function("() => /running|queued/.test(document.getElementById('job-state').textContent)", timeout=60_000)
    page.click("#job-cancel")
    page.wait_for_function("() => /cancelled/.test(document.getElementById('job-state').textContent)", timeout=120_000)
    assert client.get("/v1/models/ingan-playground-cancel").status_code == 404


# ---- layout and accessibility ------------------------------------------------------------------------
_UNLABELLED = """async () => {
  const bad = [];
  for (const model of playground.models.filter(m => !m.broken)) {
    await selectModel(model.name);
    for (const op of model.ops) {
      selectOp(op.name);
      await new Promise(ok => setTimeout(ok, 50));
      for (const e of document.querySelectorAll('input, select, textarea')) {
        if (e.closest('[hidden]') || e.type === 'hidden') continue;
        if (!(e.labels && e.labels.length) && !e.getAttribute('aria-label')) bad.push(`${model.name} ${op.name}: ${e.id || e.outerHTML.slice(0, 80)}`);
      }
      if (document.documentElement.scrollWidth > window.innerWidth + 1) bad.push(`${model.name} ${op.name}: scrolls sideways`);
    }
  }
  return bad;
}"""


@pytest.mark.parametrize("viewport", [DESKTOP, {"width": 390, "height": 844}], ids=["1280x800", "phone"])
def test_every_control_of_every_op_has_a_label_and_nothing_overflows(browser, service, viewport):
    context = browser.new_context(viewport=viewport)
    tab = context.new_page()
    _view(tab, service, "edgeconnect-demo", "inpaint")
    assert tab.evaluate(_UNLABELLED) == []
    if viewport["width"] < 760:  # stacked: the canvas sits below the form, full width
        form, canvas = tab.locator("#form-panel").bounding_box(), tab.locator("#editor").bounding_box()
        assert canvas["y"] >= form["y"] + form["height"] - 1
        assert canvas["width"] > viewport["width"] * 0.9
    context.close()


def test_canvas_tools_are_buttons_reachable_by_keyboard(page, service):
    _view(page, service, "edgeconnect-demo", "inpaint")
    page.focus("#inputs-image-source")
    reached = set()
    for _ in range(80):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("() => document.activeElement.id"))
    assert {"tool-brush", "tool-eraser", "tool-stroke", "tool-clear", "brush-size", "canvas", "run"} <= reached
    page.focus("#canvas")
    for key in ("ArrowRight",) * 8 + ("ArrowDown",) * 8:
        page.keyboard.press(key)
    page.keyboard.press(" ")  # paints with the brush at the keyboard cursor
    assert page.evaluate("() => playground.layers.find(l => l.kind === 'mask').touched")
