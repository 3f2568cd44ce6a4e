import pytest

from retrieval.conversations import ConversationNotFound, ConversationStore


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def test_conversations_persist_across_restarts(store_at):
    db = store_at("c.sqlite")
    store = ConversationStore(db)
    cid = store.append(None, "causes of microcytosis", "causes of microcytosis")
    store.append(cid, "how is it treated?", "how is microcytosis treated?")
    reopened = ConversationStore(db)
    assert [(t.question, t.resolved) for t in reopened.history(cid)] == [
        ("causes of microcytosis", "causes of microcytosis"), ("how is it treated?", "how is microcytosis treated?")]


def test_conversations_expire(store_at):
    clock = Clock()
    store = ConversationStore(store_at("c.sqlite"), ttl_seconds=60, clock=clock)
    cid = store.append(None, "q", "q")
    clock.now += 59
    assert store.history(cid)
    clock.now += 61
    with pytest.raises(ConversationNotFound):
        store.history(cid)
    with pytest.raises(ConversationNotFound):
        store.append(cid, "q2", "q2")


def test_turns_and_conversations_are_bounded(store_at):
    clock = Clock()
    store = ConversationStore(store_at("c.sqlite"), max_turns=3, max_conversations=2, clock=clock)
    cid = store.append(None, "q0", "q0")
    for i in range(1, 6):
        clock.now += 1
        store.append(cid, f"q{i}", f"q{i}")
    assert [t.question for t in store.history(cid)] == ["q3", "q4", "q5"]
    clock.now += 1
    second = store.append(None, "a", "a")
    clock.now += 1
    third = store.append(None, "b", "b")
    assert store.count() == 2
    with pytest.raises(ConversationNotFound):
        store.history(cid)  # the least recently used went first
    assert store.history(second) and store.history(third)


def test_writers_in_several_processes_take_turns(store_at):
    """Four stores on one database (as four server processes would hold) writing at once:
    every turn of a shared conversation is kept at its own position, none is refused, and the
    bound on one client's live conversations holds exactly."""
    import threading

    where = store_at("c.sqlite")
    stores = [ConversationStore(where, max_turns=1000, max_per_client=3, timeout=10) for _ in range(4)]
    cid = stores[0].append(None, "q", "q")
    errors: list[BaseException] = []

    def write(store: ConversationStore, k: int) -> None:
        try:
            for i in range(10):
                store.append(cid, f"q{k}-{i}", f"q{k}-{i}")
                store.append(None, "new", "new", client="busy")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(store, k)) for k, store in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    questions = [t.question for t in stores[1].history(cid)]
    assert len(questions) == 41 and len(set(questions)) == 41
    assert stores[2].count(client="busy") == 3
