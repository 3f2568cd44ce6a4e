"""Follow-up questions: each turn of a conversation is classified before it is resolved.

A turn is one of:

- `acknowledgement`: "thanks", "ok", "great, thank you!". Not searched; the topic stays.
- `question`: it names its own subject ("what about IV lidocaine for pain?"). Searched as
  typed; its subject becomes the conversation's topic.
- `follow_up`: it refers back ("how is it treated?", "is this condition inherited?",
  "what do they cause?") or is elliptic ("and in children?", "what about the dose?",
  "what are the symptoms?"). The reference is replaced by the topic, or the topic is
  appended; the topic stays.
- `no_subject`: it refers back or is elliptic, but there is nothing to refer to (the first
  turn of a conversation, e.g. "what is it?"). Not searched: the answer says the question
  does not say what it is about.

A dummy "it" ("is it safe to give iron in pregnancy?", "is it true that...") is not a
back-reference, and neither is "that" as a conjunction ("tests that show...") nor a
pronoun whose referent is named earlier in the same question ("what is ferritin and what
does it measure?").

The topic is what the last `question` turn was about, found by peeling the question's
frame off ("What are the causes of X?" -> "X"). It is kept apart from the resolved strings
(the conversation store keeps it per turn), so it never nests turn after turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QUESTION = "question"
FOLLOW_UP = "follow_up"
ACKNOWLEDGEMENT = "acknowledgement"
NO_SUBJECT = "no_subject"
TURN_KINDS = (QUESTION, FOLLOW_UP, ACKNOWLEDGEMENT, NO_SUBJECT)
SEARCHED_KINDS = (QUESTION, FOLLOW_UP)

_DUMMY_ADJECTIVES = (r"(?:safe|unsafe|true|false|possible|impossible|necessary|ok|okay|fine|advisable|reasonable|common|normal|usual|dangerous|risky|"
                     r"recommended|better|best|worse|worth|worthwhile|wise|important|appropriate|useful|helpful|acceptable|needed|required|essential|"
                     r"harmful|likely|unlikely|legal|right|wrong|bad|good|preferable|mandatory|advisable|rare|unusual|enough|too\s+late|too\s+early|"
                     r"known|recommended|standard|routine|typical|okay)")

_FRAME = [
    re.compile(r"^(?:and|but|so|also|then|ok(?:ay)?|now)\b[\s,]*", re.I),
    re.compile(r"^(?:what|how)\s+about\s+", re.I),
    re.compile(r"^what\s+of\s+", re.I),
    re.compile(r"^(?:what|how|why|when|where|which|who|whom)\b(?:\s+(?:is|are|was|were|do|does|did|can|could|should|would|will|to))?(?:\s*\((?:is|are)\))?\s+", re.I),
    re.compile(r"^(?:is|are|does|do|can|could|should|would|will)\s+", re.I),
    re.compile(r"^(?:tell me about|explain|describe|define|list)\s+", re.I),
    re.compile(r"^(?:the|a|an)\s+", re.I),
    re.compile(rf"^it(?:\s+is|'s)?\s+(?:(?:really|ever|still|always|generally|usually|also|more|less|very)\s+)?{_DUMMY_ADJECTIVES}\s+(?:to|that|if|whether)\s+", re.I),
    re.compile(r"^(?:give|take|use|start|stop|continue|prescribe|check|measure|test\s+for|screen\s+for)\s+(?=\S)", re.I),
    re.compile(r"^(?:main\s+|common\s+|usual\s+|possible\s+|rare\s+)?(?:causes?|doses?|dosage|dosing|side\s+effects?|symptoms?|signs?(?:\s+and\s+symptoms)?|treatments?|therapy|therapies|management|diagnosis|"
               r"work-?up|tests?|evaluation|outlook|prognosis|complications?|risk\s+factors?|stages?|types?|definition|meaning|"
               r"inheritance\s+pattern)\s+(?:of|for|in|with|to|about)\s+", re.I),
    re.compile(r"^(?:prevent|diagnose|treat|manage|causes?|affects?)\s+(?=\S)", re.I),
    re.compile(r"^(?:at\s+risk\s+(?:of|for)|genetic\s+changes\s+related\s+to|research\s+\(or\s+clinical\s+trials\)\s+(?:is\s+)?being\s+done\s+for|"
               r"to\s+(?:prevent|diagnose|treat)|the\s+(?:treatments?|outlook)\s+for)\s+", re.I),
]
_TRAILING = re.compile(r"\s*(?:\?|\.|!)+\s*$")
# A second clause ("... and what does it measure?") is not part of the subject.
_SECOND_CLAUSE = re.compile(r"(?:\s*[,;:]\s*(?:and\s+)?|\s+and\s+)(?=(?:what|how|why|when|where|which|who|is|are|does|do|can|should|could|would|will)\b)", re.I)

_STOP = {"a", "an", "the", "and", "or", "but", "so", "also", "then", "in", "on", "of", "for", "to", "with", "about", "what", "how", "is", "are", "was",
         "were", "does", "do", "did", "can", "could", "should", "would", "will", "may", "might", "must", "shall", "when", "why", "which", "who", "whom",
         "where", "it", "its", "this", "that", "they", "them", "their", "these", "those", "be", "been", "being", "there", "any", "me", "i", "my", "we",
         "our", "you", "your", "he", "she", "his", "her", "s", "t", "if", "by", "at", "from", "as", "than", "into", "after", "before", "during", "without",
         "between", "among", "some", "much", "many", "more", "most", "very", "just", "still", "else", "other", "now", "ok", "okay", "please", "yet",
         "not", "no", "has", "have", "had", "get", "gets", "got", "here", "again", "all", "each", "every", "one", "ones", "like", "well"}

# Words that ask about an aspect of a subject without naming one: "what is the dose?",
# "how long does treatment last?". A question made only of these (and stop words) is elliptic.
_GENERIC_STEMS = (
    "treat", "therap", "manag", "cure", "curab", "curat", "medicat", "medicine", "drug", "remed", "option", "alternativ", "approach", "choice",
    "diagnos", "test", "work-up", "workup", "evaluat", "investigat", "screen", "exam", "assess", "detect", "check", "confirm", "measur",
    "caus", "etiolog", "aetiolog", "reason", "origin", "trigger", "due",
    "symptom", "sign", "present", "feature", "look", "feel",
    "prognos", "outlook", "surviv", "expectan", "life", "mortal", "outcome", "course", "recover", "relaps", "recurr", "progress",
    "prevent", "avoid", "prophyla", "reduc", "lower", "stop", "start", "continu", "switch", "chang",
    "risk", "factor", "suscept", "likel", "chance", "odds",
    "complicat", "side", "effect", "adverse", "harm", "toxic", "interact", "contraindicat", "safe", "danger", "serious", "fatal",
    "dose", "dosing", "dosag", "regimen", "amount", "frequen", "often", "long", "last", "durat", "time", "week", "day", "month", "year",
    "first", "second", "line", "best", "recommend", "guideline", "evidence", "study", "studies", "trial", "research", "data",
    "monitor", "follow", "target", "goal", "threshold", "cut", "level", "range", "normal", "value", "result", "mean", "interpret", "high", "low",
    "inherit", "hered", "genetic", "gene", "contagio", "infectio", "spread", "transmi", "common", "rare", "prevalen", "inciden",
    "stage", "types", "type", "kind", "forms", "form", "classes", "classification", "grade", "sever", "mild", "moderate", "definit", "defin", "information", "info", "overview", "detail",
    "happen", "work", "help", "need", "take", "taken", "give", "given", "use", "used", "using", "when", "differ", "same", "similar", "compar",
    "refer", "special", "urgent", "emergenc", "admi", "hospital", "surgery", "surgical", "procedur", "operat", "lifestyle", "diet", "support",
    "specialist", "doctor", "clinic", "cost", "insur", "name", "called", "know", "tell", "explain", "say", "said", "about", "why", "affect",
    "get", "gets", "develop", "occur", "appear", "away", "better", "worse", "improv", "respon", "fail", "success", "effective", "work",
)
_GENERIC = re.compile(r"^(?:" + "|".join(re.escape(s) for s in _GENERIC_STEMS) + r")[a-z-]*$")
_NOT_GENERIC = {"testosterone", "testicular", "testis", "testes", "formula", "formaldehyde", "general", "generalized", "generalised",
                "classic", "lifeguard"}
# People a follow-up narrows the topic to ("and in children?"); with no topic they are a subject.
_POPULATION = {"child", "children", "kid", "kids", "pediatric", "paediatric", "infant", "infants", "newborn", "newborns", "neonate", "neonates",
               "baby", "babies", "adolescent", "adolescents", "teen", "teens", "teenager", "teenagers", "adult", "adults", "elderly", "older", "old",
               "young", "age", "aged", "man", "men", "woman", "women", "male", "males", "female", "females", "pregnancy", "pregnant", "breastfeeding",
               "lactation", "lactating", "postpartum", "postmenopausal", "premenopausal", "menopause", "patient", "patients", "people", "person",
               "someone", "athletes", "athlete", "vegetarians", "vegans", "boys", "girls"}
_PREPOSITION = r"(?:in|during|for|among|with|after|before|without|at|on|under|over|while)"
_OPENER = r"(?:(?:and|but|so|also|ok(?:ay)?|then)\s+)?(?:(?:what|how)\s+about\s+|what\s+of\s+)?"
_QUALIFIER = re.compile(rf"^{_OPENER}{_PREPOSITION}\s+[^,;:?]*\??$", re.I)

# "this condition" stands for the topic as a whole; "this test" is a test of the topic ("X test").
_DISEASE_NOUNS = r"(?:conditions?|diseases?|disorders?|illness(?:es)?|syndromes?|infections?|problems?)"
_REFERENCE = re.compile(
    rf"\b(?:(?:this|that|these|those|the)\s+{_DISEASE_NOUNS}\b|(?:this|these)\b|(?:that|those)(?=\s*(?:[?.!,;:]|$))"
    rf"|(?:that|those)(?=\s+(?:drugs?|medications?|medicines?|treatments?|therap(?:y|ies)|tests?|results?|findings?|levels?|values?)\b)"
    r"|its\b|it\b|they\b|them\b|their\b)",
    re.I)

_DUMMY_IT = re.compile(
    rf"\bit(?:\s+is|'s|\s+was|\s+would\s+be|\s+will\s+be|\s+be|\s+ever|\s+still|\s+always|\s+generally|\s+usually|\s+also|\s+really)*"
    rf"\s+(?:(?:really|ever|still|always|generally|usually|also|more|less|very|too)\s+)?{_DUMMY_ADJECTIVES}\s+(?:to|that|if|whether|when|for\s+(?:\S+\s+){1,3}to)\b"
    r"|\bit\s+(?:matter|depends|seems|appears|turns\s+out|takes)\b"
    r"|\bit\s+(?:is|'s)\s+(?:raining|time)\b", re.I)

_ACK_CORE = {"thanks", "thank", "thx", "ty", "tnx", "thankyou", "cheers", "ok", "okay", "k", "kk", "great", "good", "cool", "nice", "perfect",
             "awesome", "excellent", "wonderful", "brilliant", "fantastic", "super", "fine", "alright", "understood", "noted", "appreciated",
             "appreciate", "bye", "goodbye", "helpful", "useful", "yes", "yeah", "yep", "no", "nope", "sure", "right", "gotcha", "ta", "lovely",
             "clear", "see", "sense", "got", "all"}
_ACK_FILLER = {"you", "it", "got", "that", "that's", "thats", "this", "is", "was", "very", "so", "much", "lot", "a", "lots", "for", "all", "now",
               "i", "ah", "oh", "makes", "done", "the", "answer", "info", "information", "really", "many", "again", "then", "and", "just", "what",
               "needed", "wanted", "bye", "will", "do", "that'll", "indeed", "quite", "well", "enough", "everything", "help", "your", "most",
               "kind", "kindly", "great", "already", "thanks", "okay", "ok"}
_ACK_SPLIT = re.compile(r"[,.!;:]+|\s+-+\s+")


@dataclass(frozen=True)
class Reading:
    """How one turn was read: its kind, what to search (None when it is not searched), and
    the conversation's topic after it."""

    kind: str
    searched: str | None
    topic: str | None

    @property
    def is_searched(self) -> bool:
        return self.kind in SEARCHED_KINDS


def _norm(text: str) -> str:
    return " ".join(text.split())


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9][a-z0-9'+-]*", text.lower().replace("\u2019", "'"))


def topic_of(question: str) -> str:
    """The subject of a self-contained question: 'What are the causes of chronic microcytic anemia?' -> 'chronic microcytic anemia'."""
    text = _TRAILING.sub("", _norm(question))
    clause = _SECOND_CLAUSE.search(text)
    if clause and clause.start() > 0:
        text = text[: clause.start()]
    changed = True
    while changed:
        changed = False
        for pattern in _FRAME:
            stripped = pattern.sub("", text, count=1)
            if stripped != text and stripped.strip():
                text, changed = stripped, True
    text = re.sub(r"\s+(?:treated|diagnosed|inherited|managed|prevented|caused|used|interpreted|defined)$", "", text, flags=re.I)
    return _TRAILING.sub("", text).strip()


def content_words(text: str) -> list[str]:
    return [w for w in _words(text) if w not in _STOP]


def is_generic(word: str) -> bool:
    """A word that asks about an aspect ("dose", "treated", "symptoms") rather than naming a subject."""
    return word in _STOP or (word not in _NOT_GENERIC and bool(_GENERIC.match(word)))


def subject_words(text: str) -> list[str]:
    """The content words of `text` that could name a subject: not stop words, not aspect words."""
    return [w for w in content_words(text) if not is_generic(w)]


def is_acknowledgement(text: str) -> bool:
    """'thanks', 'ok', 'great, thank you!', 'got it': a reply that asks nothing."""
    if "?" in text:
        return False
    words = _words(text)
    if not words or len(words) > 8:
        return False
    if not all(w in _ACK_CORE or w in _ACK_FILLER for w in words):
        return False
    return any(w in _ACK_CORE for w in words)


def strip_acknowledgement(text: str) -> str:
    """'thanks! and how is it treated?' -> 'and how is it treated?'; other text unchanged."""
    match = _ACK_SPLIT.search(text)
    if match and match.start() > 0 and is_acknowledgement(text[: match.start()]):
        rest = text[match.end():].strip()
        if rest:
            return strip_acknowledgement(rest)
    return text


def back_references(question: str) -> list[re.Match]:
    """The words of `question` that refer back to the conversation's topic, in order. A dummy
    'it', 'that' as a conjunction, and a pronoun whose referent the question names before it
    are not references."""
    dummies = [m.span() for m in _DUMMY_IT.finditer(question)]
    out = []
    for match in _REFERENCE.finditer(question):
        if any(start <= match.start() < end for start, end in dummies):
            continue
        out.append(match)
    if out and any(w not in _POPULATION for w in subject_words(question[: out[0].start()])):
        return []  # "what is ferritin and what does it measure?": 'it' is ferritin
    return out


def _substitute(question: str, references: list[re.Match], topic: str) -> str:
    parts, last = [], 0
    for match in references:
        word = match.group(0).lower()
        replacement = f"{topic}'s" if word in ("its", "their") else topic
        parts.append(question[last: match.start()])
        parts.append(replacement)
        last = match.end()
    parts.append(question[last:])
    return "".join(parts)


def _elliptic(question: str, topic: str) -> str:
    return f"{_TRAILING.sub('', question)} ({topic})"


def read_turn(question: str, topic: str | None) -> Reading:
    """Classify one turn given the conversation's topic (None at the start), and say what to search."""
    question = _norm(question)
    if is_acknowledgement(question):
        return Reading(ACKNOWLEDGEMENT, None, topic)
    question = strip_acknowledgement(question)
    if not question:
        return Reading(NO_SUBJECT, None, topic)
    if topic and topic.lower() in question.lower():
        return Reading(QUESTION, question, topic)  # names the topic itself: searched as typed, same topic
    references = back_references(question)
    if references:
        if not topic:
            return Reading(NO_SUBJECT, None, None)
        return Reading(FOLLOW_UP, _substitute(question, references, topic), topic)
    subjects = subject_words(question)
    qualifier = bool(_QUALIFIER.match(question)) and len(content_words(question)) <= 5  # "and in children?"
    people_only = all(w in _POPULATION for w in subjects)
    if not subjects or qualifier or (topic and people_only):
        if topic:
            return Reading(FOLLOW_UP, _elliptic(question, topic), topic)
        if not subjects or (qualifier and people_only):
            return Reading(NO_SUBJECT, None, None)
    return Reading(QUESTION, question, topic_of(question) or question)


def read_conversation(questions: list[str], topic: str | None = None) -> list[Reading]:
    """Each turn (oldest first) read in the context of those before it."""
    readings = []
    for question in questions:
        reading = read_turn(question, topic)
        readings.append(reading)
        topic = reading.topic
    return readings


def topic_after(questions: list[str]) -> str | None:
    """The conversation's topic after these turns (oldest first)."""
    readings = read_conversation(questions)
    return readings[-1].topic if readings else None


def resolve(question: str, history: list[str]) -> str:
    """The question as it should be searched, given the earlier turns of the conversation
    (oldest first, as asked). A turn that is not searched (an acknowledgement, a question
    with no subject) comes back as it was typed."""
    reading = read_turn(question, topic_after(history))
    return reading.searched if reading.searched is not None else _norm(question)


def resolve_history(questions: list[str]) -> list[str]:
    """Each turn (oldest first) as it would be searched, turn by turn."""
    return [r.searched if r.searched is not None else _norm(q) for q, r in zip(questions, read_conversation(questions))]
