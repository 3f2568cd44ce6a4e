"""In Chromium: a reviewer signs in, approves "What are the causes of chronic microcytic
anemia?", and the search page shows it approved with the reviewer's name and no pending
caution for it; after the file is edited and re-indexed it shows pending re-review.

uvicorn serves the real app over a copy of the default corpus; the index is built with
the fake embedder (fake_model_app) so the test needs no model and re-indexes in a second."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from indexer.build import build_index

from fakes import FakeEmbedder
from review_helpers import PASSWORD, accounts

REPO = Path(__file__).resolve().parent.parent
ARTICLE = "chronic-microcytosis-causes"
QUESTION = "What are the causes of chronic microcytic anemia?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Debian Chromium, set up as in test_end_to_end."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        reason = "Debian's chromium and chromium-driver are not installed (`make test` installs them)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    os.environ["SE_OFFLINE"] = "true"  # selenium must never try to download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1200,1600",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-reviews')}"):
        options.add_argument(flag)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    yield drv
    drv.quit()


class Site:
    def __init__(self, tmp: Path):
        self.corpus = tmp / "corpus"
        shutil.copytree(REPO / "corpus", self.corpus)
        self.index = tmp / "var" / "index"
        self.env = dict(os.environ, MEDKB_INDEX_DIR=str(self.index), MEDKB_CORPUS=str(self.corpus),
                        MEDKB_CONVERSATIONS_DB=str(tmp / "var" / "conversations.sqlite"),
                        PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]))
        self.proc = None
        self.base = ""
        self.reindex()
        store = accounts(tmp / "var" / "accounts.sqlite")
        store.add("rhea", "reviewer", PASSWORD, "Dr Rhea Viewer", "MD, haematology", "None declared")

    def reindex(self):
        build_index([self.corpus], self.index, FakeEmbedder())

    def start(self):
        port = _free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "fake_model_app:create_app", "--factory", "--port", str(port), "--log-level", "warning"],
                                     cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            assert self.proc.poll() is None, self.proc.stdout.read().decode()
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "server did not come up in 60 s"
            time.sleep(0.2)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    s.start()
    yield s
    s.stop()


def _search(browser, site, wait):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    browser.get(site.base + "/")
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys(QUESTION)
    browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
    answer = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "article.answer")))
    passages = answer.find_elements(By.CSS_SELECTOR, f'li.passage[data-article="{ARTICLE}"]')
    assert passages, "the article's passages are in the answer"
    return answer, passages


@pytest.mark.browser
def test_reviewer_approves_and_the_approval_lapses_when_the_file_changes(site, browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))
    browser.delete_all_cookies()
    browser.get(site.base + "/signin?next=/reviews")
    browser.find_element(By.ID, "name").send_keys("rhea")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    wait.until(EC.presence_of_element_located((By.ID, "queue")))
    assert "Dr Rhea Viewer" in browser.find_element(By.ID, "signed-in").text
    session = browser.get_cookie("medkb_session")
    assert session and session["httpOnly"] and session["sameSite"] == "Lax"

    browser.find_element(By.CSS_SELECTOR, f'li[data-article="{ARTICLE}"] a').click()
    wait.until(EC.presence_of_element_located((By.ID, "decision-form")))
    assert browser.find_element(By.TAG_NAME, "h2").text == QUESTION
    browser.find_element(By.ID, "comment").send_keys("Checked against the cited guideline.")
    browser.find_element(By.ID, "decide-approve").click()
    wait.until(lambda d: d.find_element(By.ID, "review-badge").text.lower() == "approved")
    assert browser.find_element(By.ID, "review-note").text.startswith("Approved by Dr Rhea Viewer (MD, haematology) on ")
    assert "Checked against the cited guideline." in browser.find_element(By.ID, "history").text

    answer, passages = _search(browser, site, wait)
    for p in passages:
        assert p.find_element(By.CSS_SELECTOR, ".badge").text.lower() == "approved"
        assert p.find_element(By.CSS_SELECTOR, ".review.approved").text.startswith("Approved by Dr Rhea Viewer (MD, haematology) on ")
        assert not p.find_elements(By.CSS_SELECTOR, ".passage-caution"), "no pending caution for an approved article"
    status = answer.find_element(By.CSS_SELECTOR, f'.article-statuses li[data-article="{ARTICLE}"]')
    assert status.get_attribute("data-status") == "approved"
    if os.environ.get("MEDKB_SCREENSHOT"):
        browser.save_screenshot(os.environ["MEDKB_SCREENSHOT"].replace(".png", "-approved.png"))

    path = site.corpus / f"{ARTICLE}.md"
    text = path.read_text()
    path.write_text(text.replace("## From the Guidelines", "## From the Guidelines\n\nMicrocytosis has several causes [1].", 1))
    site.stop()
    site.reindex()
    site.start()

    answer, passages = _search(browser, site, wait)
    for p in passages:
        assert p.get_attribute("data-status") != "approved"
        assert p.find_element(By.CSS_SELECTOR, ".badge").text.lower() == "approved version changed, pending re-review"
        assert p.find_element(By.CSS_SELECTOR, ".passage-caution").text.startswith("Approved version changed, pending re-review")
    if os.environ.get("MEDKB_SCREENSHOT"):
        browser.save_screenshot(os.environ["MEDKB_SCREENSHOT"].replace(".png", "-changed.png"))
    browser.get(f"{site.base}/articles/{ARTICLE}")
    assert "Microcytosis has several causes [1]." in browser.find_element(By.CSS_SELECTOR, "#diff .add").text
