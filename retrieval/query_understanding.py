"""Reading a query before it is searched. Each step has its own switch in RetrievalSettings
(and its own `medkb eval` flag), so each is measured on its own:

1. condense: a long consumer message ("Hi, my mother was told ... thank you!") is cut to its
   subject line, the sentences that ask something, and the drugs and conditions it names;
2. shorthand: clinician shorthand (scope, 60yo, thal, lido, postop, def, ...) from
   data/shorthand.tsv is written out;
3. spelling: a word that neither the index, English, the drug names nor the abbreviations know
   is corrected against the index's own words (counted at index time and saved with the build:
   indexer.spelling) and the drug names (symspellpy); words under five
   letters and known abbreviations are never touched; the result says "searched for X". A
   British or American spelling that the index writes the other way (anaemia / anemia:
   retrieval/regional_spelling.py) brings that spelling as an expansion;
4. negation: NOT x, -x, without x, not caused by x are taken out of the words searched and
   demote passages about x (retrieval/negation.py);
5. abbreviations: expanded to the sense that the query's other words support (cue words from
   data/abbreviations.tsv, then which sense's words the index finds beside them), or to all senses;
6. drug names: a brand or generic name brings the drug's other names that the index uses
   (tylenol -> acetaminophen, paracetamol);
7. lay terms: a lay phrase brings the clinical term that the index uses (water pill ->
   diuretic, small red cells -> microcytosis: retrieval/lay_terms.py).

Expansions are appended in brackets, as the abbreviations always were, so the words typed stay.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from indexer.index_store import LoadedIndex
from indexer.lexical import tokenize
from indexer.spelling import count_words
from retrieval.abbreviations import Abbreviations, Sense
from retrieval.drugs import DrugNames, drug_names
from retrieval.lay_terms import lay_terms as shipped_lay_terms
from retrieval.negation import split_negation
from retrieval.regional_spelling import variants

SHORTHAND_FILE = Path(__file__).parent / "data" / "shorthand.tsv"

# Words that ask rather than name: with the stop words, a query of these alone has no content.
QUESTION_WORDS = frozenset("""
what whats which who whom whose why when where how can could should would shall may might must do does did done
i me my we our you your he she his her him it its they them their am is are was were be been being have has had
please tell know want need help get got thank thanks hi hello dear doctor sir madam question ask asking anyone
any some much many more most about also just like ok okay yes well really very so too there here
""".split())
# Characters pasted from web pages that split or hide a word: soft hyphens and zero-width marks
# go, and the ligatures of British spelling ("anæmia", "fœtal") are written out.
_TYPOGRAPHY = str.maketrans({"\u00ad": None, "\u200b": None, "\u200c": None, "\u200d": None, "\u2060": None, "\ufeff": None,
                             "æ": "ae", "Æ": "Ae", "œ": "oe", "Œ": "Oe"})
_YEARS_OLD = re.compile(r"\b(\d{1,3})\s*-?\s*(?:yo|y/o|y\.o\.|yrs?\s*old|years?[\s-]*old|-year-old)\b", re.I)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z]")


def load_shorthand(path: Path = SHORTHAND_FILE) -> dict[str, str]:
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected 'shorthand<TAB>meaning'")
        out[parts[0].strip().lower()] = parts[1].strip()
    return out


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """The English word list that ships with symspellpy (82,765 words with their frequency)."""
    from importlib.resources import files

    path = files("symspellpy") / "frequency_dictionary_en_82_765.txt"
    return frozenset(line.split(" ", 1)[0] for line in path.read_text(encoding="utf-8").splitlines() if line)


@dataclass
class ParsedQuery:
    """A query as the engine reads it.

    `question`: the words searched, before expansions (condensed, shorthand written out,
    spelling corrected, negated phrases taken out); `text`: with the expansions appended,
    what the model embeds and BM25 scores (`lexical_text`); `searched_for`: what to show
    the reader when it differs from what they typed; `negated`: phrases whose passages are
    demoted; `has_content`: some word is neither a stop word nor a question word; `known`:
    some content word occurs in the index; `steps`: what each step did."""

    original: str
    question: str
    text: str
    searched_for: str | None = None
    negated: list[str] = field(default_factory=list)
    has_content: bool = True
    known: bool = True
    steps: dict[str, str] = field(default_factory=dict)

    @property
    def lexical_text(self) -> str:
        return self.text


class QueryUnderstanding:
    """The query-reading steps over one index (whose words the spelling and sense choices use)."""

    def __init__(self, index: LoadedIndex, abbreviations: Abbreviations, shorthand: dict[str, str] | None = None):
        self.index = index
        self.abbreviations = abbreviations
        self.shorthand = shorthand if shorthand is not None else load_shorthand()
        self._speller = None
        self._vocabulary: Counter[str] | None = None
        self._heading_bigrams: set[tuple[str, str]] | None = None
        self._headings_blob: str | None = None
        # The tables above are made from the whole index on first use (at MedQuAD scale the
        # vocabulary and speller take ~3.5 s of CPU and ~110 MB): once, by one thread, while
        # concurrent requests wait for it.
        self._making = threading.RLock()

    def warm(self, spelling: bool = True, negation: bool = True, lay_terms: bool = True) -> None:
        """Make now the per-index tables that the first query would otherwise make: the
        vocabulary, the speller (`spelling`), the title/heading bigrams (`negation`) and the
        titles and headings text with the lay-term list (`lay_terms`). The
        server's reloader calls this before swapping a new build in, so no request pays for it."""
        self.vocabulary()
        if spelling:
            self._spell()
            drug_speller()
        if negation:
            self._bigrams()
        if lay_terms:
            self._headings_text()
            shipped_lay_terms()

    # ------------------------------------------------------------------ the steps

    def read(self, query: str, cfg) -> ParsedQuery:
        steps: dict[str, str] = {}
        text = " ".join(query.translate(_TYPOGRAPHY).split())
        shown = False  # whether the reader should see what was searched
        if cfg.condense:
            condensed = condense(text, self._focus_terms)
            if condensed != text:
                steps["condense"] = condensed
                text, shown = condensed, True
        if cfg.shorthand:
            written = self.write_out_shorthand(text)
            if written != text:
                steps["shorthand"] = written
                text = written
        if cfg.spelling:
            corrected = self.correct(text)
            if corrected != text:
                steps["spelling"] = corrected
                text, shown = corrected, True
        negated: list[str] = []
        if cfg.negation:
            positive, negated = split_negation(text, self._names_topic)
            if negated:
                steps["negation"] = f"{positive} | not: {'; '.join(negated)}"
                text = positive
        question = text
        expansions: list[str] = []
        if cfg.spelling:
            respelled, regional = self.respell_regional(question)
            if respelled != question or regional:
                steps["spelling_variants"] = "; ".join([respelled] * (respelled != question) + regional)
            question = respelled
            expansions += regional
        if cfg.expand_abbreviations:
            expansions += [e for e in self.abbreviations.expansions(question, self._choose_sense, self._index_lacks_name) if e not in expansions]
        if cfg.drug_names:
            drugs = self.drug_synonyms(question)
            if drugs:
                steps["drug_names"] = "; ".join(drugs)
            expansions += [d for d in drugs if d not in expansions]
        if cfg.lay_terms:
            clinical = [t for t in self.lay_expansions(question) if t not in expansions]
            if clinical:
                steps["lay_terms"] = "; ".join(clinical)
            expansions += clinical
        full = f"{question} ({'; '.join(expansions)})" if expansions else question
        content = content_words(full)
        known = any(self.index.lexical.knows(t) for t in tokenize(" ".join(content))) if content else False
        return ParsedQuery(original=query, question=question, text=full, searched_for=question if shown else None,
                           negated=negated, has_content=bool(content), known=known, steps=steps)

    def write_out_shorthand(self, text: str) -> str:
        text = _YEARS_OLD.sub(lambda m: f"{m.group(1)} year old", text)

        def swap(m: re.Match) -> str:
            word = m.group(0)
            if word.isupper() and len(word) > 1:
                return word  # capitals: an abbreviation, not shorthand (PT is prothrombin time)
            return self.shorthand.get(word.lower(), word)

        return re.sub(r"(?<![\w/])[A-Za-z][A-Za-z/-]*(?![\w/])", swap, text)

    # ------------------------------------------------------------------ spelling

    def vocabulary(self) -> Counter[str]:
        """The index's own words (lower case, letters only) with their frequency: the build's
        spelling.tsv (indexer.spelling, counted at index time), or, for a build without one,
        counted here once."""
        if self._vocabulary is None:
            with self._making:  # one count per build, however many requests ask at once
                if self._vocabulary is None:
                    if self.index.words is not None:
                        self._vocabulary = Counter(self.index.words)
                    else:
                        self._vocabulary = count_words([c.text for c in self.index.chunks] + [r.title for r in self.index.articles.values()])
        return self._vocabulary

    def _spell(self):
        if self._speller is None:
            with self._making:
                if self._speller is None:
                    from symspellpy import SymSpell

                    speller = SymSpell(max_dictionary_edit_distance=2, prefix_length=7)
                    for word, count in self.vocabulary().items():
                        if len(word) >= 4 and word.isalpha():
                            speller.create_dictionary_entry(word, 10 * count + 10)
                    self._speller = speller  # the drug names are in drug_speller(), made once per process
        return self._speller

    def is_known_word(self, word: str) -> bool:
        w = word.lower()
        return (w in self.vocabulary() or w in english_words() or w in drug_names().canonical or self.abbreviations.is_known(word)
                or w in self.shorthand)

    def respell_regional(self, text: str) -> tuple[str, list[str]]:
        """(`text` with each word that the index never uses written in the regional spelling it
        does use, the other spellings to add for words that it uses less often than a variant).

        "microcytic anaemia" over an index that says only "anemia" becomes "microcytic anemia"
        (the words embedded are then the index's); where the index has both spellings, the more
        frequent one is added instead ("haemoglobin (hemoglobin)"). Not shown to the reader as a
        correction: a British spelling is not a mistake. Words under four letters are left alone.
        """
        counts = self.vocabulary()
        added: list[str] = []

        def respell(m: re.Match) -> str:
            word = m.group(0)
            lowered = word.lower()
            if len(lowered) < 4:
                return word
            best = max(variants(lowered), key=lambda v: counts.get(v, 0), default=None)
            if not best or counts.get(best, 0) <= counts.get(lowered, 0):
                return word
            if counts.get(lowered, 0) == 0:
                return best.capitalize() if word[:1].isupper() and not word.isupper() else best
            if best not in added:
                added.append(best)
            return word

        return _WORD.sub(respell, text), added

    def correct(self, text: str) -> str:
        """`text` with each unknown word of five letters or more replaced by the closest word of
        the index or the drug names (edit distance 1; 2 from eight letters; the same first
        letter), when there is one. Words joined by a hyphen are left as typed."""

        def fix(m: re.Match) -> str:
            word = m.group(0)
            if len(word) < 5 or not word.isalpha() or (word.isupper() and len(word) <= 6) or self.is_known_word(word):
                return word
            stems = tokenize(word)
            if stems and self.index.lexical.knows(stems[0]):
                return word  # another form of a word the index has ("hypotensive", "hypotension")
            distance = 2 if len(word) >= 8 else 1
            found = closest_words(word.lower(), distance, (self._spell(), drug_speller()))
            # A typo seldom touches the first letter ("macular" is not a misspelled "acular").
            # Nor is a different ending a typo: "tetraplegic" is not a misspelled "tetraplegia".
            found = [term for term in found if term[:1] == word[:1].lower() and not _other_ending(term, word.lower())]
            if not found:
                return word
            best = found[0]
            if best in variants(word.lower()) or word.lower() in variants(best):
                return word  # another regional spelling, not a mistake: respell_regional's to handle, unannounced
            return best.capitalize() if word[:1].isupper() and not word.isupper() else best

        # A part of a hyphenated name is not a word of its own: "Prader-Willi" is not a misspelled
        # "Prader-Will", nor "Coffin-Siris" a "Coffin-Ssris".
        return re.sub(r"(?<![\w-])[A-Za-z]+(?:'[a-z]+)?(?![\w-])", fix, text)

    # ------------------------------------------------------------------ senses, drugs, negation

    def _postings(self, words: str) -> np.ndarray | None:
        """Chunks that contain every content word of `words` (None: some word is unknown)."""
        ids: np.ndarray | None = None
        for t in tokenize(words):
            p = self.index.lexical.postings(t)
            if not len(p):
                return None
            ids = p if ids is None else np.intersect1d(ids, p, assume_unique=True)
        return ids

    def _choose_sense(self, abbreviation: str, senses: list[Sense], query: str) -> list[Sense]:
        """The sense that the query's other words support: by its cue words, then by how many
        passages hold the sense's words together with the query's other words; all senses
        when nothing tells them apart."""
        context = [t for t in tokenize(re.sub(re.escape(abbreviation), " ", query)) if t]
        context_set = set(context) | {w.lower() for w in _WORD.findall(query)}
        scores = []
        for sense in senses:
            cue = sum(1 for c in sense.cues if c in context_set or (tokenize(c) and tokenize(c)[0] in context_set))
            together = 0.0
            ids = self._postings(sense.expansion)
            if ids is not None and len(ids) and context:
                near = [self.index.lexical.postings(t) for t in context]
                together = float(sum(len(np.intersect1d(ids, p, assume_unique=True)) > 0 for p in near))
            scores.append(cue + 0.5 * together + (0.25 if ids is not None and len(ids) else 0.0))
        best = max(scores)
        if best <= 0 or scores.count(best) > 1:
            return senses
        return [senses[scores.index(best)]]

    def drug_synonyms(self, text: str) -> list[str]:
        """For each drug named in `text` that the index never names so: its generic name and up to
        two other names that the index uses, when the query does not say them already. (Where
        the index uses the name typed, adding others only pulls in passages about them: on
        MedicationQA that cost 0.03 nDCG@10.)"""
        table: DrugNames = drug_names()
        out: list[str] = []
        lowered = text.lower()
        for name, generic in table.find(text):
            if self._postings(name) is not None:
                continue
            candidates = [generic] + table.synonyms(name)
            added = 0
            for other in candidates:
                if other == name or other in lowered or other in out or tokenize(other) == tokenize(name) or "agent" in other:
                    continue  # the same word, or a drug class rather than a drug's name
                if other != generic and self._postings(other) is None:
                    continue  # the index never uses this name
                out.append(other)
                added += 1
                if added >= 3:
                    break
        return out

    def lay_expansions(self, text: str) -> list[str]:
        """The clinical term for each lay phrase of `text` (data/lay_terms.tsv) when the index
        knows every word of it, its titles and headings do not say the lay phrase as often as the
        term, and the query does not say the term already ("water pill side effects" ->
        ["diuretic"]). A term the index never uses would only move the query's vector; where
        titles say "Heart attack" more than "myocardial infarction", adding the clinical term
        only pulls in other articles (as with drug names)."""
        lowered = text.lower()
        out: list[str] = []
        for phrase, term in shipped_lay_terms().find(text):
            words = tokenize(term)
            if term.lower() in lowered or not words or not all(self.index.lexical.knows(w) for w in words):
                continue
            if self._index_lacks_name(phrase, term):
                out.append(term)
        return out

    def _index_lacks_name(self, name: str, term: str) -> bool:
        """Whether appending `term` for `name` can help: False where the index's titles and
        headings say `name` itself at least as often as `term` (pages titled "COPD" need no
        "chronic obstructive pulmonary disease"; as with lay names and drug names)."""
        headings = self._headings_text()
        named = headings.count(f" {' '.join(_normal_words(name))} ")
        return not named or named < headings.count(f" {' '.join(_normal_words(term))} ")

    def _headings_text(self) -> str:
        """Every title and section heading of the index, normalised (_normal_words), one a line,
        each word between spaces: a phrase is in some heading when " phrase " is in this text."""
        if self._headings_blob is None:
            with self._making:
                if self._headings_blob is None:
                    lines = [r.title for r in self.index.articles.values()] + list(self.index.sections.texts)
                    self._headings_blob = "\n".join(f" {' '.join(_normal_words(t))} " for t in lines)
        return self._headings_blob

    def _names_topic(self, trigger: str, phrase: str) -> bool:
        """"without anaemia" is a topic where a title or heading of the index says it."""
        if trigger.lower() != "without":
            return False
        first = _normal_words(phrase)[:1]
        return bool(first) and ("without", first[0]) in self._bigrams()

    def _bigrams(self) -> set[tuple[str, str]]:
        """Pairs of consecutive words in the index's titles and section headings."""
        if self._heading_bigrams is None:
            with self._making:
                if self._heading_bigrams is None:
                    bigrams: set[tuple[str, str]] = set()
                    for line in self._headings_text().splitlines():  # the titles and headings, normalised once
                        words = line.split()
                        bigrams.update(zip(words, words[1:]))
                    self._heading_bigrams = bigrams
        return self._heading_bigrams

    def _focus_terms(self, sentence: str) -> bool:
        """Whether a sentence names a drug or a word of the index's titles."""
        if drug_names().find(sentence):
            return True
        titles = self._title_words()
        return any(t in titles for t in tokenize(sentence))

    def _title_words(self) -> frozenset[str]:
        if not hasattr(self, "_titles"):
            words: set[str] = set()
            for record in self.index.articles.values():
                words.update(tokenize(record.title))
            self._titles = frozenset(words - {tokenize(w)[0] for w in QUESTION_WORDS if tokenize(w)})
        return self._titles


def _other_ending(candidate: str, word: str) -> bool:
    """The same word with another ending (-ic / -ia), not two letters typed the wrong way round."""
    return len(candidate) == len(word) and candidate[:-2] == word[:-2] and candidate[-2:] != word[-2:][::-1]


_BRITISH = (("anaem", "anem"), ("haem", "hem"), ("oesoph", "esoph"), ("coeliac", "celiac"), ("aemia", "emia"))


def _normal_words(text: str) -> list[str]:
    out = []
    for w in re.findall(r"[a-z]+", text.lower()):
        for a, b in _BRITISH:
            w = w.replace(a, b)
        out.append(w)
    return out


def content_words(text: str) -> list[str]:
    """The words of `text` that name something: not stop words or question words, two
    letters or more, not numbers alone."""
    stop = _stopwords()
    return [w for w in re.findall(r"[A-Za-z][A-Za-z0-9'-]*", text) if len(w) >= 2 and w.lower() not in stop and w.lower() not in QUESTION_WORDS]


@lru_cache(maxsize=1)
def drug_speller():
    """A SymSpell (symspellpy) over the drug names of retrieval.drugs, which are the same for every
    build: made once per process (~1 s for ~24,000 names) instead of into every build's speller."""
    from symspellpy import SymSpell

    speller = SymSpell(max_dictionary_edit_distance=2, prefix_length=7)
    for name in drug_names().canonical:
        if " " not in name and len(name) >= 5 and name.isalpha():
            speller.create_dictionary_entry(name, 1)
    return speller


def closest_words(word: str, distance: int, spellers) -> list[str]:
    """The words of `spellers` (SymSpell dictionaries) closest to `word`, within `distance` edits,
    as one dictionary holding all their words would suggest them (symspellpy's Verbosity.CLOSEST):
    only the smallest distance found, a word in several dictionaries once with its counts added,
    most frequent first (ties alphabetically)."""
    from symspellpy import Verbosity

    found: dict[str, tuple[int, int]] = {}
    for speller in spellers:
        for s in speller.lookup(word, Verbosity.CLOSEST, max_edit_distance=distance):
            d, count = found.get(s.term, (s.distance, 0))
            found[s.term] = (min(d, s.distance), count + s.count)
    if not found:
        return []
    nearest = min(d for d, _ in found.values())
    return sorted((t for t, (d, _) in found.items() if d == nearest), key=lambda t: (-found[t][1], t))


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


# ---------------------------------------------------------------------- condensing

CONDENSE_OVER_WORDS = 25
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_GREETING = re.compile(r"^\s*(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|greetings)\b[^.!?]*", re.I)
_THANKS = re.compile(r"\b(?:thanks?|thank you|thankyou|appreciate|grateful|regards|sincerely|best wishes|god bless|cheers)\b", re.I)
_ABOUT_ME = re.compile(r"^\s*(?:my name is|i am writing|i'm writing|i am a|i'm a|this is)\b", re.I)
_ASKS = re.compile(r"\?|^\s*(?:what|how|why|when|where|which|who|can|could|should|would|is|are|does|do|did|will|may|might|please|kindly|i (?:want|need|would like) to know|is there|are there)\b", re.I)


def condense(message: str, names_focus=lambda sentence: False, over: int = CONDENSE_OVER_WORDS) -> str:
    """A long message cut to its medical focus and question: the subject line (a first
    sentence of eight words or fewer), the sentences that ask something, and the other
    sentences that name a drug or a condition the index knows; greetings, thanks, signatures
    and introductions dropped. Messages of `over` words or fewer are returned as they are."""
    if len(message.split()) <= over:
        return message
    sentences = [s.strip() for s in _SENTENCE.split(message) if s and s.strip()]
    kept: list[str] = []
    for n, sentence in enumerate(sentences):
        if _THANKS.search(sentence) and not _ASKS.search(sentence):
            continue
        cleaned = _GREETING.sub("", sentence).strip(" ,.")
        if not cleaned or _ABOUT_ME.match(cleaned):
            continue
        subject = n == 0 and len(cleaned.split()) <= 8
        if subject or _ASKS.search(cleaned):
            kept.append(cleaned)
    if not any(_ASKS.search(s) for s in kept):
        # No sentence asks: keep those that name the focus.
        kept += [s for s in sentences if names_focus(s) and s not in kept]
    else:
        focus = [s for s in sentences if names_focus(s) and s not in kept and not _THANKS.search(s) and len(s.split()) <= 25]
        kept = kept[:1] + focus[:1] + kept[1:]
    out = " ".join(kept).strip()
    words = out.split()
    if len(words) > 60:
        out = " ".join(words[:60])
    return out or message
