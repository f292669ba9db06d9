"""`edge_runtime serve` in a real headless Chromium: upload a real HAM10000 photo through the
page's file input and find the class, confidence, heatmap and disclaimer on the page; a text file
gets a plain message; an oversized upload is refused before it is read."""

import shutil
import threading
import urllib.error
import urllib.request

import pytest

from conftest import HAM_ROOT

pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")
selenium = pytest.importorskip("selenium", reason="selenium (dev extra) drives the browser")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(exported_tiny):
    from edge_runtime.server import make_server

    srv = make_server(exported_tiny["tflite_int8"], "127.0.0.1", 0, threads=1)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _upload(browser, url, path):
    from selenium.webdriver.common.by import By

    browser.get(url)
    browser.find_element(By.ID, "photo").send_keys(str(path))


def _wait_for(browser, element_id):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 60).until(ec.visibility_of_element_located((By.ID, element_id)))


def test_page_shows_class_confidence_heatmap_and_disclaimer(server, browser, exported_tiny, synth_root):
    from edge_runtime import Classifier

    photos = sorted((HAM_ROOT / "images").rglob("*.jpg"))[:1] if HAM_ROOT.is_dir() else []
    photo = photos[0] if photos else next(iter(sorted(synth_root.rglob("*.jpg"))))  # real photo when present
    _upload(browser, server, photo)
    label = _wait_for(browser, "label").text
    expected = Classifier.load(exported_tiny["tflite_int8"]).predict(photo)
    assert label == expected.label
    # The server sends the confidence rounded to 4 decimals and the page shows 1 decimal of a
    # percent: within 0.05 + 0.005 points of the unrounded value (exact equality flips at a tie).
    shown = browser.find_element("id", "confidence").text
    assert shown.endswith("%") and abs(float(shown[:-1]) - 100 * expected.confidence) <= 0.055 + 1e-9
    heatmap = browser.find_element("id", "heatmap")
    assert heatmap.get_attribute("src").startswith("data:image/png;base64,")
    assert browser.execute_script("return arguments[0].naturalWidth", heatmap) == expected.image.shape[1]
    disclaimer = browser.find_element("id", "disclaimer")
    assert disclaimer.is_displayed() and "not a diagnosis" in disclaimer.text.lower()
    assert expected.next_step in browser.find_element("id", "next-step").text


def test_non_image_upload_gets_a_plain_message(server, browser, tmp_path):
    (tmp_path / "report.txt").write_text("this is not a photo")
    _upload(browser, server, tmp_path / "report.txt")
    assert "not an image" in _wait_for(browser, "error").text


def test_oversized_upload_is_refused(server):
    from edge_runtime.server import MAX_UPLOAD_BYTES

    request = urllib.request.Request(f"{server}/predict", data=b"x" * 16, method="POST",
                                     headers={"Content-Length": str(MAX_UPLOAD_BYTES + 1)})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 413 and "limit" in err.value.read().decode()


def test_patient_fields_are_offered_only_for_a_clinical_model_and_sent(server, browser, clinical_model):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from edge_runtime import Classifier, Context
    from edge_runtime.server import make_server

    browser.get(server)  # the plain model's page asks for no context it would ignore
    assert browser.find_elements(By.ID, "site") == []
    srv = make_server(clinical_model["tflite"], "127.0.0.1", 0, threads=1)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        row = clinical_model["rows"][2]
        browser.get(f"http://127.0.0.1:{srv.server_address[1]}")
        browser.find_element(By.ID, "age").send_keys("67")
        Select(browser.find_element(By.ID, "sex")).select_by_value("male")
        Select(browser.find_element(By.ID, "site")).select_by_value("foot")
        browser.find_element(By.ID, "photo").send_keys(row["path"])
        _wait_for(browser, "label")
        clf = Classifier.load(clinical_model["tflite"])
        expected = clf.predict(row["path"], context=Context(67.0, "male", "foot"))
        without = clf.predict(row["path"])
        assert expected.confidence != pytest.approx(without.confidence, abs=1e-3)  # the fields matter here
        shown = browser.find_element(By.ID, "confidence").text
        assert abs(float(shown[:-1]) - 100 * expected.confidence) <= 0.055 + 1e-9
    finally:
        srv.shutdown()
        srv.server_close()
