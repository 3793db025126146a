"""The search page in headless Chromium (Debian's, driven by selenium) against a real server on the real default
model and the demo corpus. `make test-browser` installs Chromium (tests/browser/setup.sh) and runs these."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import ROOT, running_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.e2e]

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", ROOT / "runs" / "browser"))
GERMAN = "Wer hat den Super Bowl 50 gewonnen?"
ARABIC = "كم عدد جوائز غرامي التي فازت بها ليدي غاغا؟"


@pytest.fixture(scope="module")
def demo_server(default_model: Path, demo_index: Path) -> Iterator[str]:
    with running_server({"SEARCH_MODEL_DIR": str(default_model), "SEARCH_INDEX_DIR": str(demo_index)}) as base:
        yield base


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    if not (CHROMIUM and CHROMEDRIVER):
        message = "Debian's chromium and chromium-driver are not installed (tests/browser/setup.sh)"
        if os.environ.get("BROWSER_REQUIRED") == "1":  # `make test-browser`: a missing browser is a failure
            pytest.fail(message)
        pytest.skip(message)
    os.environ["SE_OFFLINE"] = "true"  # selenium must not try to fetch a driver or a browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,1300",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": "de-DE,en-US"})  # a German reader
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait(driver: webdriver.Chrome, seconds: float = 30) -> WebDriverWait:
    # the page replaces its result cards on each search: a card read while they are replaced is retried, not a failure
    return WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,))


def cards(driver: webdriver.Chrome) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#results .card")


def search_for(driver: webdriver.Chrome, query: str) -> None:
    """Type the query and press Enter; wait until the cards of that search are there."""
    box = driver.find_element(By.ID, "q")
    box.clear()
    box.send_keys(query, Keys.ENTER)
    wait(driver).until(lambda d: parse_qs(urlparse(d.current_url).query).get("q") == [query])
    wait(driver).until(lambda d: cards(d) and d.find_element(By.ID, "status").is_displayed())


def test_german_search_shows_grouped_cards_and_their_translations(browser: webdriver.Chrome, demo_server: str) -> None:
    browser.get(demo_server + "/")
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".chip[data-lang='ar']")))
    assert browser.find_element(By.ID, "grouped").is_selected()  # the demo index has the group field
    assert not browser.find_element(By.ID, "key-box").is_displayed()  # no read keys on this server
    search_for(browser, GERMAN)
    found = cards(browser)
    assert len(found) == 10
    ids = [card.get_attribute("data-id") for card in found]
    groups = [i.rsplit("-", 1)[0] for i in ids]
    assert len(set(groups)) == 10, ids  # one card per translation group
    first = found[0]
    assert first.find_element(By.CSS_SELECTOR, ".badge").text == first.get_attribute("data-lang")
    assert first.find_element(By.CSS_SELECTOR, ".rank").text == "#1"
    assert first.find_element(By.CSS_SELECTOR, ".title").text == "Super Bowl 50"
    toggle = first.find_element(By.CSS_SELECTOR, ".also-in")
    assert toggle.text.startswith("also in: ") and " · " in toggle.text
    toggle.click()
    wait(browser).until(lambda d: len(first.find_elements(By.CSS_SELECTOR, ".member .text")) >= 2)
    members = first.find_elements(By.CSS_SELECTOR, ".member")
    assert {m.get_attribute("data-id").rsplit("-", 1)[0] for m in members} == {groups[0]}
    assert all(m.find_element(By.CSS_SELECTOR, ".text").text for m in members)  # texts fetched from /documents
    latency = browser.find_element(By.ID, "latency").text
    assert "ms on the server" in latency and latency.startswith("10 groups")
    # the reader's language first: every group has a German member, so each card shows it
    mine = browser.find_element(By.ID, "mine")
    assert mine.is_selected() and browser.find_element(By.ID, "mine-label").text == "Show de, en first"
    assert [card.get_attribute("data-lang") for card in found] == ["de"] * 10
    mine.click()
    wait(browser).until(lambda d: parse_qs(urlparse(d.current_url).query).get("mine") == ["0"])
    wait(browser).until(lambda d: len({card.get_attribute("data-lang") for card in cards(d)}) >= 3)
    best_first = [card.get_attribute("data-id").rsplit("-", 1)[0] for card in cards(browser)]
    assert best_first == groups  # the same groups in the same order, each shown by its best member
    mix = browser.find_elements(By.CSS_SELECTOR, "#mix span")
    assert len(mix) >= 3  # the results come in several languages
    mine.click()
    wait(browser).until(lambda d: [card.get_attribute("data-lang") for card in cards(d)] == ["de"] * 10)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "search-page.png"))
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []  # no script errors, no 404s


def test_arabic_search_flat_view_and_language_filter(browser: webdriver.Chrome, demo_server: str) -> None:
    browser.get(demo_server + "/")
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".chip[data-lang='zh']")))
    browser.find_element(By.ID, "grouped").click()  # flat: translations are separate results
    search_for(browser, ARABIC)
    found = cards(browser)
    assert len(found) == 10 and found[0].get_attribute("data-id").startswith("xquad-p003-")
    assert not browser.find_elements(By.CSS_SELECTOR, ".also-in")
    assert all(card.find_element(By.CSS_SELECTOR, ".text").get_attribute("dir") == "auto" for card in found)
    arabic = [c for c in found if c.get_attribute("data-lang") == "ar"]
    assert arabic and arabic[0].find_element(By.CSS_SELECTOR, ".text").value_of_css_property("direction") == "rtl"

    before = [c.get_attribute("data-id") for c in found]
    browser.find_element(By.CSS_SELECTOR, ".chip[data-lang='zh']").click()
    wait(browser).until(lambda d: [c.get_attribute("data-id") for c in cards(d)] != before)
    assert {c.get_attribute("data-lang") for c in cards(browser)} == {"zh"}
    # the answer among the Chinese passages (6th for the round-5 default, 3rd or better for round 2's: a ranking
    # detail of the model; this test is about the filter)
    assert "xquad-p003-zh" in [c.get_attribute("data-id") for c in cards(browser)]
    assert parse_qs(urlparse(browser.current_url).query)["langs"] == ["zh"]


def test_a_shared_url_gives_the_same_search(browser: webdriver.Chrome, demo_server: str) -> None:
    browser.get(demo_server + "/")
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".chip[data-lang='de']")))
    topk = browser.find_element(By.ID, "topk")
    topk.clear()
    topk.send_keys("4")
    browser.find_element(By.CSS_SELECTOR, ".chip[data-lang='de']").click()
    browser.find_element(By.CSS_SELECTOR, ".chip[data-lang='es']").click()
    search_for(browser, GERMAN)
    url, shown = browser.current_url, [c.get_attribute("data-id") for c in cards(browser)]
    assert len(shown) == 4

    browser.get("about:blank")
    browser.get(url)
    wait(browser).until(lambda d: len(cards(d)) == 4)
    assert browser.find_element(By.ID, "q").get_attribute("value") == GERMAN
    assert browser.find_element(By.ID, "topk").get_attribute("value") == "4"
    pressed = browser.find_elements(By.CSS_SELECTOR, ".chip[aria-pressed='true']")
    assert sorted(c.get_attribute("data-lang") for c in pressed) == ["de", "es"]
    assert [c.get_attribute("data-id") for c in cards(browser)] == shown


def test_a_refused_request_shows_the_api_message(browser: webdriver.Chrome, demo_server: str) -> None:
    browser.get(demo_server + "/")
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".chip")))
    browser.execute_script("document.getElementById('q').value = 'Warum? '.repeat(400)")  # 2,800 characters
    browser.find_element(By.ID, "go").click()
    error = wait(browser).until(EC.visibility_of_element_located((By.ID, "error")))
    assert error.text == "422: query 0 is 2800 characters long; the limit is 2000"


def test_readable_on_a_phone(browser: webdriver.Chrome, demo_server: str) -> None:
    browser.set_window_size(390, 844)
    try:
        browser.get(f"{demo_server}/?q={GERMAN}&k=3")
        wait(browser).until(lambda d: len(cards(d)) == 3)
        width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], width  # nothing wider than the screen
        for control in ("q", "topk", "grouped"):  # every control has a label
            assert browser.execute_script(f"return document.getElementById('{control}').labels.length") >= 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "search-page-phone.png"))
    finally:
        browser.set_window_size(1100, 1300)


def test_the_page_asks_for_a_read_key_and_sends_it(
    browser: webdriver.Chrome, tiny_model: Path, tiny_index: Path
) -> None:
    env = {"SEARCH_MODEL_DIR": str(tiny_model), "SEARCH_INDEX_DIR": str(tiny_index), "SEARCH_READ_API_KEYS": "r-key"}
    with running_server(env) as base:
        browser.get(base + "/")
        wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".chip")))
        browser.find_element(By.ID, "q").send_keys("Super Bowl", Keys.ENTER)
        key_box = wait(browser).until(EC.visibility_of_element_located((By.ID, "key-box")))
        assert "401" in browser.find_element(By.ID, "error").text
        key_box.find_element(By.ID, "key").send_keys("r-key")
        key_box.find_element(By.ID, "key-save").click()
        wait(browser).until(lambda d: len(cards(d)) == 10)
        assert not browser.find_element(By.ID, "error").is_displayed()


@pytest.fixture(scope="module")
def samples_server(default_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The sample folder (files in 11 languages, no language tags) indexed as the README shows."""
    from app.cli import main

    index_dir = tmp_path_factory.mktemp("samples") / "index"
    corpus = ROOT / "data" / "samples"
    main(["index", "--corpus", str(corpus), "--model-dir", str(default_model), "--out", str(index_dir)])
    with running_server({"SEARCH_MODEL_DIR": str(default_model), "SEARCH_INDEX_DIR": str(index_dir)}) as base:
        yield base


def test_documents_come_back_with_their_part_and_its_neighbours(browser: webdriver.Chrome, samples_server: str) -> None:
    browser.get(samples_server + "/")
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".chip[data-lang='th']")))
    assert browser.find_element(By.ID, "grouped-label").text == "Group by document"
    assert browser.find_element(By.ID, "grouped").is_selected()  # split documents: grouped by default
    search_for(browser, "Wer hat die Dampfmaschine verbessert?")
    found = cards(browser)
    documents = [c.find_element(By.CSS_SELECTOR, ".part").text.split(" of ")[1].split(",")[0] for c in found
                 if c.find_elements(By.CSS_SELECTOR, ".part")]  # fmt: skip
    assert len(documents) == len(set(documents)) >= 3  # one card per document
    steam = next(c for c in found if c.find_elements(By.CSS_SELECTOR, ".title") and
                 c.find_element(By.CSS_SELECTOR, ".title").text == "Steam engine")  # fmt: skip
    assert "characters" in steam.find_element(By.CSS_SELECTOR, ".part").text
    text = steam.find_element(By.CSS_SELECTOR, ".text:not(.neighbour)").text
    steam.find_element(By.CSS_SELECTOR, ".neighbours").click()
    shown = wait(browser).until(lambda d: steam.find_elements(By.CSS_SELECTOR, ".neighbour"))
    assert all(n.text and n.text not in text for n in shown)
