"""The patient a question is about, and the patients a passage is written for.

"65 year old man with new iron deficiency anaemia, next step?" is not answered by "How is iron
deficiency anemia in children evaluated and treated?" however close the words are, nor by an
article on anaemia in pregnancy or heavy menstrual bleeding. `mismatched` says when a passage's
article title or headings name a population the question rules out:

- an adult (an age of 18 or more, "adult", "man", "woman", "elderly") against a passage written
  for children (children, infants, toddlers, neonates, pediatric) and not also for adults;
- a child (an age under 13, "child", "toddler", "infant", "baby") against one written for adults
  and not also for children;
- a man against one about pregnancy, menstruation or women (and not also about men).

A teenager is neither adult nor child here (pediatric and adult guidance both apply to them), and
a question that names no patient matches every passage. So does one that names an adult and a
child without an age ("mother of a toddler", "grandmother asking for her grandson"), or speaks of
pregnancy, birth or breastfeeding (mother and baby are both patients there): who the patient is
is not clear, and demoting on a guess would hide the answer. Words that name the asker's
relations or the doctor (wife, husband, he, his) say nothing about the patient. A word inside a
hyphenated term is not that word: "Child-Pugh C", "child-bearing age". `demote_mismatched` moves
the passages that do not fit below the rest, each group in its own order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

ADULT_AGE = 18  # years; below it a patient is a minor
CHILD_AGE = 13  # years; below it, a child (13-17: an adolescent, either guidance applies)

# Whole words only: not inside a hyphenated term ("Child-Pugh", "child-bearing", "man-made").
_W0, _W1 = r"(?<![\w-])", r"(?![\w-])"
_AGE = re.compile(r"\b(\d{1,3})\s*(?:-\s*)?(?:year|yr)s?(?:\s*-\s*|\s+)old\b|\b(\d{1,3})\s*(?:yo|y/o|y\.o\.?)(?!\w)|\baged\s+(\d{1,3})\b", re.I)
_MONTHS = re.compile(r"\b\d{1,2}\s*(?:-\s*)?months?(?:\s*-\s*|\s+)old\b", re.I)
_ADULT_WORDS = re.compile(_W0 + r"(?:adults?|elderly|older (?:adults?|people|patients?)|man|woman|men|women|pensioners?|postmenopausal|"
                          r"mother|father)" + _W1, re.I)
_CHILD_WORDS = re.compile(_W0 + r"(?:child|children|childhood|kids?|toddlers?|infants?|bab(?:y|ies)|newborns?|neonates?|preschool(?:er)?s?|"
                          r"schoolchild(?:ren)?|p(?:a)?ediatric|grand(?:son|daughter|child)s?)" + _W1, re.I)
_MALE_WORDS = re.compile(_W0 + r"(?:man|men|male|males)" + _W1, re.I)
_NOT_MALE = re.compile(_W0 + r"(?:woman|women|female|she|her|pregnan\w*|menstrua\w*|periods?|menopaus\w*)" + _W1, re.I)
# Mother and baby are both patients: who is asked about is not clear.
_PERINATAL = re.compile(_W0 + r"(?:pregnan\w*|deliver(?:y|ed|ing)|labou?r|postpartum|post-partum|breastfeed\w*|breast-feed\w*|birth|"
                        r"antenatal|prenatal)" + _W1, re.I)

_FOR_CHILDREN = re.compile(_W0 + r"(?:child|children|childhood|infants?|infancy|toddlers?|neonat\w*|newborns?|p(?:a)?ediatric\w*)" + _W1, re.I)
_FOR_ADULTS = re.compile(_W0 + r"(?:adults?|older people|elderly)" + _W1, re.I)
_FOR_WOMEN = re.compile(_W0 + r"(?:pregnan\w*|antenatal|prenatal|postpartum|obstetric\w*|menstrua\w*|menorrhagia|women|woman|"
                        r"premenopausal|postmenopausal|female)" + _W1, re.I)
_FOR_MEN = re.compile(_W0 + r"(?:men|man|male|males)" + _W1, re.I)


@dataclass(frozen=True)
class Patient:
    """Who a question is about: `age_group` "adult", "child" or None (not said, or an adolescent);
    `male` True when the question says the patient is a man or boy."""

    age_group: str | None = None
    male: bool = False


def patient_of(question: str) -> Patient:
    """The patient a question names ("65 year old man" -> adult, male). One age in years decides
    when the words do not contradict it; "N months old" is a child; adult and child words together,
    several ages, or pregnancy and birth leave the age group unsaid (None)."""
    male = bool(_MALE_WORDS.search(question)) and not _NOT_MALE.search(question)
    if _PERINATAL.search(question):
        return Patient(None, male)
    group: str | None = None
    ages = [int(next(a for a in found if a)) for found in _AGE.findall(question)]
    child = bool(_MONTHS.search(question) or _CHILD_WORDS.search(question))
    adult = bool(_ADULT_WORDS.search(question))
    if len(ages) == 1 and not (child and ages[0] >= ADULT_AGE) and not (adult and ages[0] < ADULT_AGE):
        age = ages[0]
        group = "adult" if age >= ADULT_AGE else "child" if age < CHILD_AGE else None
    elif not ages and child != adult:
        group = "child" if child else "adult"
    return Patient(group, male)


@lru_cache(maxsize=65536)
def written_for(heading_text: str) -> frozenset[str]:
    """The populations a title and heading path name: a subset of {"children", "adults", "women", "men"}."""
    found = set()
    if _FOR_CHILDREN.search(heading_text):
        found.add("children")
    if _FOR_ADULTS.search(heading_text):
        found.add("adults")
    if _FOR_WOMEN.search(heading_text):
        found.add("women")
    if _FOR_MEN.search(heading_text):
        found.add("men")
    return frozenset(found)


def mismatched(patient: Patient, heading_text: str) -> bool:
    """Whether a passage whose title and headings are `heading_text` is written for other patients."""
    if patient.age_group is None and not patient.male:
        return False
    written = written_for(heading_text)
    if patient.age_group == "adult" and "children" in written and "adults" not in written:
        return True
    if patient.age_group == "child" and "adults" in written and "children" not in written:
        return True
    return patient.male and "women" in written and "men" not in written


def demote_mismatched(hits: list, question: str) -> list:
    """Hits written for other patients than the question's moved below the rest, each group in its order."""
    patient = patient_of(question)
    if patient.age_group is None and not patient.male:
        return hits
    kept, moved = [], []
    for hit in hits:
        chunk = hit.chunk
        (moved if mismatched(patient, " . ".join((chunk.article_title, *chunk.section_path))) else kept).append(hit)
    return kept + moved if moved else hits
