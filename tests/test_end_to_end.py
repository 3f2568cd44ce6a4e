"""End to end on the real parts: the packaged model, the default corpus, uvicorn, and Chromium."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
MEDKB = [sys.executable, "-m", "medkb.cli"]
QUERY = "causes of chronic microcytosis"


@pytest.mark.model
def test_index_command_reports_counts(real_index):
    _, stdout, _ = real_index
    assert "articles indexed" in stdout and "chunks" in stdout and "citations resolved" in stdout
    assert "articles skipped    0" in stdout


@pytest.mark.model
def test_microcytosis_question_ranks_the_microcytosis_article_first(real_index):
    from retrieval.search import open_service

    service = open_service(real_index[0])
    top = service.search(QUERY, k=5).hits[0].chunk
    assert top.article_id == "chronic-microcytosis-causes"
    assert top.references, "the top passage cites its references"
    assert all(r.title and r.source and r.kind in ("guideline", "research") for r in top.references)
    assert top.review_status in ("submitted", "under_review")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(real_index):
    port = _free_port()
    env = dict(os.environ, MEDKB_CONVERSATIONS_DB=str(real_index[0].parent / "conversations.sqlite"))
    proc = subprocess.Popen([*MEDKB, "serve", "--index-dir", str(real_index[0]), "--port", str(port), "--log-level", "warning"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.time() < deadline, "server did not come up in 90 s"
        time.sleep(0.3)
    yield base
    proc.terminate()
    proc.wait(10)


@pytest.mark.model
def test_http_api_under_uvicorn(live_server):
    r = httpx.get(f"{live_server}/api/search", params={"q": QUERY})
    assert r.status_code == 200
    top = r.json()["results"][0]
    assert top["article_id"] == "chronic-microcytosis-causes"
    assert top["citations"] and top["review_status_label"] in ("Submitted", "Under review") and top["caution"]
    bad = httpx.get(f"{live_server}/api/search", params={"q": ""})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


@pytest.mark.model
def test_asking_how_chronic_microcytosis_is_treated_gives_cited_treatment_points(live_server):
    r = httpx.post(f"{live_server}/api/ask", json={"question": "how is chronic microcytosis treated?"})
    assert r.status_code == 200
    points = r.json()["key_points"]
    assert len(points) >= 2, points
    assert all(p["citations"] for p in points), "every key point carries the citation that supports it"
    treatment = re.compile(r"\b(?:treat|manag|therap|transfus|chelat|phlebotom|pyridoxine|iron replacement|oral iron|intravenous iron)", re.I)
    cause = re.compile(r"\bcaus", re.I)
    assert treatment.search(points[0]["text"]), points[0]["text"]
    causes_only = [p["text"] for p in points if cause.search(p["text"]) and not treatment.search(p["text"])]
    assert not causes_only, f"key points about causes, not treatment: {causes_only}"


def test_serve_refuses_without_an_index(tmp_path):
    out = subprocess.run([*MEDKB, "serve", "--index-dir", str(tmp_path / "none")], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and "medkb index" in out.stderr


@pytest.mark.model
@pytest.mark.browser
def test_search_page_answers_and_follows_up_in_a_real_browser(live_server, browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))
    browser.get(live_server + "/")
    box = browser.find_element(By.ID, "q")
    box.send_keys(QUERY)
    browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
    first = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "article.answer")))
    assert first.find_element(By.CSS_SELECTOR, "h2").text == QUERY
    points = first.find_elements(By.CSS_SELECTOR, ".key-points li")
    assert points and all(p.find_elements(By.CSS_SELECTOR, "a.cite") for p in points), "every key point shows its citation"
    passages = first.find_elements(By.CSS_SELECTOR, "li.passage")
    assert passages[0].get_attribute("data-article") == "chronic-microcytosis-causes"
    assert passages[0].find_element(By.CSS_SELECTOR, ".badge").text.lower() in ("submitted", "under review")
    caution = first.find_element(By.CSS_SELECTOR, ".caution")
    assert caution.is_displayed() and "not been approved" in caution.text
    groups = [g.text for g in first.find_elements(By.CSS_SELECTOR, "h3.group")]
    assert groups and groups[0] == "From the Guidelines"
    refs = first.find_elements(By.CSS_SELECTOR, "ol.refs li.ref")
    cite = points[0].find_element(By.CSS_SELECTOR, "a.cite")
    target = cite.get_attribute("href").split("#")[1]
    assert any(r.get_attribute("id") == target for r in refs), "a citation number links to its reference"
    assert first.find_elements(By.CSS_SELECTOR, "a.related-question")
    if os.environ.get("MEDKB_SCREENSHOT"):
        browser.save_screenshot(os.environ["MEDKB_SCREENSHOT"])

    follow = wait.until(EC.visibility_of_element_located((By.ID, "followup-q")))
    follow.send_keys("how is it treated?")
    browser.find_element(By.CSS_SELECTOR, "#followup button").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.answer")) == 2)
    second = browser.find_elements(By.CSS_SELECTOR, "article.answer")[1]
    resolved = second.find_element(By.CSS_SELECTOR, ".resolved").text
    assert "treated" in resolved and "microcyt" in resolved.lower(), resolved
    assert second.get_attribute("data-conversation") == first.get_attribute("data-conversation")
    assert second.find_elements(By.CSS_SELECTOR, ".key-points li")
    if os.environ.get("MEDKB_SCREENSHOT"):
        browser.execute_script("arguments[0].scrollIntoView()", second)
        browser.save_screenshot(os.environ["MEDKB_SCREENSHOT"].replace(".png", "-followup.png"))


@pytest.mark.model
@pytest.mark.browser
def test_page_without_javascript_lists_passages(live_server, browser):
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        browser.get(live_server + "/?q=" + QUERY.replace(" ", "+"))
        first = browser.find_elements(By.CSS_SELECTOR, "#results li.passage")[0]
        assert first.get_attribute("data-article") == "chronic-microcytosis-causes"
        assert first.find_elements(By.CSS_SELECTOR, "ol.refs li.ref")
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


@pytest.mark.model
def test_two_server_processes_share_the_port_and_the_conversations(real_index, tmp_path):
    """`medkb serve --workers 2`: both processes answer on one port with the same results, a
    conversation started through one continues through the other, and stopping the server
    stops both."""
    port = _free_port()
    env = dict(os.environ, MEDKB_CONVERSATIONS_DB=str(tmp_path / "conversations.sqlite"), MEDKB_ANSWERS_DB=str(tmp_path / "answers.sqlite"))
    proc = subprocess.Popen([*MEDKB, "serve", "--index-dir", str(real_index[0]), "--port", str(port), "--log-level", "warning", "--workers", "2"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    seen: dict[int, dict] = {}  # process id -> the first search it answered
    conversations: dict[int, str] = {}
    try:
        deadline = time.time() + 120
        while len(seen) < 2:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, f"two processes did not answer within 120 s (seen {sorted(seen)})"
            try:
                # A new connection each time, so that either process may accept it.
                with httpx.Client(timeout=5) as client:
                    health = client.get(f"{base}/healthz")
                    if health.status_code == 200:
                        pid = health.json()["process"]
                        if pid not in seen:
                            seen[pid] = client.get(f"{base}/api/search", params={"q": QUERY, "k": 5}).json()
                            answer = client.post(f"{base}/api/ask", json={"question": QUERY})
                            conversations[pid] = answer.json()["conversation_id"]
            except httpx.HTTPError:
                time.sleep(0.3)
        first, second = seen.values()
        assert [r["chunk_id"] for r in first["results"]] == [r["chunk_id"] for r in second["results"]]
        # Follow-ups until each process has continued a conversation that the other one started.
        continued: set[int] = set()
        deadline = time.time() + 60
        while continued != set(seen):
            assert time.time() < deadline, f"follow-ups reached only {sorted(continued)}"
            with httpx.Client(timeout=30) as client:
                pid = client.get(f"{base}/healthz").json()["process"]
                other = next(p for p in seen if p != pid)
                r = client.post(f"{base}/api/ask", json={"question": "how is it treated?", "conversation_id": conversations[other]})
                assert r.status_code == 200, r.text
                assert "microcyt" in r.json()["resolved_query"].lower(), r.json()["resolved_query"]
                continued.add(pid)
        workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()]
        assert set(seen) <= set(workers), (seen, workers)
    finally:
        proc.terminate()
        proc.wait(30)
    assert not [p for p in seen if os.path.exists(f"/proc/{p}")], "a worker outlived the server"
