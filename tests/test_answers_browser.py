"""In Chromium: "causes of chronic microcytosis", "thanks", "how is it treated?" keeps the whole
conversation on the page, answers the last turn with cited key points about treatment, and the
answer's permalink shows the same answer again (also after a reload); feedback is sent from it.

uvicorn serves the real app over the default corpus, indexed with the fake embedder (so the test
needs no model); the key points are checked to be about treatment, not only to exist."""

import os
import re

import pytest

from indexer.build import build_index
from indexer.index_store import load_index
from medkb.settings import Settings
from retrieval.search import SearchService
from server.app import create_app

from fakes import FakeEmbedder
from live_server import serve
from paths import REPO

TREATMENT = re.compile(r"\b(?:treat|manag|therap|transfus|chelat|phlebotom|venesect|pyridoxine|iron replacement|oral iron|intravenous iron|"
                       r"ferrous|tablet|parenteral|replac|erythropoietin)", re.I)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("answers-browser")
    build_index([REPO / "corpus"], tmp / "index", FakeEmbedder())
    settings = Settings(index_dir=tmp / "index", conversations_db=tmp / "conversations.sqlite")
    app = create_app(settings, service_factory=lambda s: SearchService(load_index(s.index_dir), FakeEmbedder()))
    with serve(app) as base:
        yield base, app


def _key_points(card) -> list[str]:
    from selenium.webdriver.common.by import By

    return [li.text for li in card.find_elements(By.CSS_SELECTOR, ".key-points li")]


@pytest.mark.browser
def test_thanks_then_how_is_it_treated_and_the_permalink(site, browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    base, app = site
    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))
    browser.get_log("browser")  # start from an empty console
    browser.get(base + "/")
    browser.find_element(By.ID, "q").send_keys("causes of chronic microcytosis")
    browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
    first = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "article.answer")))
    assert first.find_element(By.CSS_SELECTOR, ".coverage").text.startswith("Draws on ")

    def follow_up(text: str, count: int):
        box = wait.until(EC.visibility_of_element_located((By.ID, "followup-q")))
        box.send_keys(text)
        browser.find_element(By.CSS_SELECTOR, "#followup button").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.answer")) == count)
        return browser.find_elements(By.CSS_SELECTOR, "article.answer")[-1]

    thanks = follow_up("thanks", 2)
    assert thanks.get_attribute("data-turn") == "acknowledgement"
    assert thanks.find_element(By.CSS_SELECTOR, ".reply").text.startswith("You're welcome")
    assert not thanks.find_elements(By.CSS_SELECTOR, ".key-points li") and not thanks.find_elements(By.CSS_SELECTOR, "li.passage")

    treated = follow_up("how is it treated?", 3)
    cards = browser.find_elements(By.CSS_SELECTOR, "article.answer")
    assert [c.find_element(By.CSS_SELECTOR, "h2").text for c in cards] == ["causes of chronic microcytosis", "thanks", "how is it treated?"], \
        "the whole conversation stays on the page"
    assert treated.get_attribute("data-conversation") == first.get_attribute("data-conversation")
    assert treated.find_element(By.CSS_SELECTOR, ".resolved").text == "Searched as: how is chronic microcytosis treated?"
    items = treated.find_elements(By.CSS_SELECTOR, ".key-points li")
    assert len(items) >= 3
    for li in items:
        assert li.find_elements(By.CSS_SELECTOR, "a.cite"), f"a key point without its citation: {li.text}"
        assert TREATMENT.search(li.text), f"a key point not about treatment: {li.text}"
    coverage = treated.find_element(By.CSS_SELECTOR, ".coverage").text
    assert re.match(r"Draws on \d+ articles?, 0 approved; most recent update \d{4}-\d\d-\d\d; no cited source is retracted\.", coverage), coverage
    exports = {a.text: a.get_attribute("href") for a in treated.find_elements(By.CSS_SELECTOR, ".export a")}
    assert set(exports) == {"RIS", "BibTeX", "Text (NLM)"}
    points = _key_points(treated)
    if os.environ.get("MEDKB_SCREENSHOT"):
        browser.execute_script("arguments[0].scrollIntoView()", thanks)
        browser.save_screenshot(os.environ["MEDKB_SCREENSHOT"])
    link = treated.find_element(By.CSS_SELECTOR, "a.permalink-link")
    permalink = link.get_attribute("href")
    assert re.search(r"/answers/[A-Za-z0-9_-]{16}$", permalink)
    answer_id = permalink.rsplit("/", 1)[1]

    for _ in range(2):  # the permalink, then the same page reloaded
        if browser.current_url != permalink:
            browser.get(permalink)
        else:
            browser.refresh()
        shown = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, f"article.answer[data-answer='{answer_id}']")))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "article.answer .feedback"))  # rendered by the script
        shown = browser.find_element(By.CSS_SELECTOR, "article.answer")
        assert shown.find_element(By.CSS_SELECTOR, "h2").text == "how is it treated?"
        assert shown.find_element(By.CSS_SELECTOR, ".resolved").text == "Searched as: how is chronic microcytosis treated?"
        assert _key_points(shown) == points, "the permalink shows the same answer"
        assert shown.find_element(By.CSS_SELECTOR, ".coverage").text == coverage

    shown.find_element(By.CSS_SELECTOR, "button.feedback-not-helpful").click()
    shown.find_element(By.CSS_SELECTOR, "textarea.feedback-comment").send_keys("Wanted the iron dose.")
    shown.find_element(By.CSS_SELECTOR, "button.feedback-send").click()
    wait.until(lambda d: "recorded" in d.find_element(By.CSS_SELECTOR, ".feedback-status").text)
    if os.environ.get("MEDKB_SCREENSHOT"):
        browser.save_screenshot(os.environ["MEDKB_SCREENSHOT"].replace(".png", "-permalink.png"))
    items, total = app.state.answers.feedback()
    assert total == 1 and items[0].answer_id == answer_id and items[0].helpful is False and items[0].comment == "Wanted the iron dose."

    ris = browser.execute_script("return fetch(arguments[0]).then(r => r.text())", exports["RIS"])
    assert ris.count("TY  - ") >= 1
    violations = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert not violations, violations


@pytest.mark.browser
def test_the_permalink_page_lists_the_answer_without_javascript(site, browser):
    from selenium.webdriver.common.by import By

    base, app = site
    import httpx

    answer = httpx.post(f"{base}/api/ask", json={"question": "how is chronic microcytosis treated?"}).json()
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        browser.get(base + answer["permalink"])
        card = browser.find_element(By.CSS_SELECTOR, "article.answer")
        assert [t.split(" (")[0] for t in _key_points(card)] == [p["text"].split(" (")[0] for p in answer["key_points"]]
        assert card.find_element(By.CSS_SELECTOR, ".coverage").text == answer["coverage"]["summary"]
        assert card.find_elements(By.CSS_SELECTOR, ".export a")
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


@pytest.mark.browser
def test_the_page_says_when_there_is_no_answer(site, browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    base, _ = site
    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))
    browser.get(base + "/?q=what+is+it%3F")
    card = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "article.answer")))
    assert card.get_attribute("data-turn") == "no_subject"
    assert "does not say what it is about" in card.find_element(By.CSS_SELECTOR, ".no-match").text
    assert not card.find_elements(By.CSS_SELECTOR, ".key-points li") and not card.find_elements(By.CSS_SELECTOR, "li.passage")
    assert card.find_elements(By.CSS_SELECTOR, "button.feedback-not-helpful"), "a reader can still say it did not help"

    browser.get(base + "/?q=how+is+chronic+microcytosis+prevented%3F")
    card = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "article.answer")))
    note = card.find_element(By.CSS_SELECTOR, ".aspect-note").text
    assert note == "No passage on the prevention of chronic microcytosis; the nearest passages are shown."
    assert not card.find_elements(By.CSS_SELECTOR, ".key-points li") and card.find_elements(By.CSS_SELECTOR, "li.passage")
    if os.environ.get("MEDKB_SCREENSHOT"):
        browser.save_screenshot(os.environ["MEDKB_SCREENSHOT"].replace(".png", "-aspect-note.png"))


@pytest.mark.browser
def test_a_follow_up_on_an_expired_conversation_does_not_leave_the_box_stuck(site, browser):
    """The server answers a follow-up on an expired conversation with a 404; the page kept the
    dead id, so every later follow-up got the same 404 until the page was reloaded."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    base, app = site
    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))
    browser.get(base + "/")
    browser.find_element(By.ID, "q").send_keys("causes of chronic microcytosis")
    browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
    first = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "article.answer")))
    app.state.conversations.delete(first.get_attribute("data-conversation"))  # expired meanwhile

    def follow_up(text: str) -> None:
        box = wait.until(EC.visibility_of_element_located((By.ID, "followup-q")))
        box.clear()
        box.send_keys(text)
        browser.find_element(By.CSS_SELECTOR, "#followup button").click()

    follow_up("how is it treated?")
    wait.until(lambda d: "expired" in d.find_element(By.ID, "status").text)
    assert "ask the question in full" in browser.find_element(By.ID, "status").text
    follow_up("how is chronic microcytosis treated?")  # asked in full: answered, in a new conversation
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.answer")) == 2)
    second = browser.find_elements(By.CSS_SELECTOR, "article.answer")[-1]
    assert second.get_attribute("data-conversation") not in ("", None, first.get_attribute("data-conversation"))
    assert browser.find_element(By.ID, "status").text == ""
