"""An answer's references as RIS, BibTeX and NLM-style text, from the answer as it was
given (its stored JSON: `references` in AnswerReferenceOut's shape).

The answer-wide numbers are kept ([3] in the answer is reference 3 in every format). A
number the source article lists no reference for is left out of RIS and BibTeX and named
in the text. Retraction and other notices are carried along (RIS N1, BibTeX note, text).

Every format names the answer's permalink (absolute, as the caller built it): the text in
its heading; RIS and BibTeX in a record of their own for the answer, a web page (RIS `TY  -
ELEC` with `UR`, BibTeX `@misc` with `url`), first in the file. A record holds one URL of its
own (the RIS 2011 specification's UR is the item's URL; a second `url` in a BibTeX entry is a
duplicate field), and a reference's is its publication's, so the permalink is not added to them.
"""

from __future__ import annotations

import re

FORMATS = {
    "ris": ("application/x-research-info-systems; charset=utf-8", "ris"),
    "bib": ("application/x-bibtex; charset=utf-8", "bib"),
    "txt": ("text/plain; charset=utf-8", "txt"),
}
NLM_MAX_AUTHORS = 6  # NLM lists the first six, then "et al."
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _clean(text: object) -> str:
    """One line of text: no control characters, no line breaks."""
    return " ".join(_CONTROL.sub(" ", str(text or "")).split())


def _pubmed(pmid: str) -> str:
    return f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/"


def _notice_lines(ref: dict) -> list[str]:
    out = []
    for n in ref.get("notices") or []:
        kind = str(n.get("type", "")).replace("_", " ").capitalize()
        detail = "; ".join(_clean(x) for x in (n.get("citation"), f"PMID {n['pmid']}" if n.get("pmid") else None, n.get("note")) if x)
        out.append(f"{kind}: {detail}" if detail else kind)
    return out


def _origin(ref: dict, answer_id: str) -> str:
    # An answer stored before `cited_in` existed names only its first citing article.
    citing = ref.get("cited_in") or [{k: ref.get(k) for k in ("article_id", "article_title", "original_number")}]
    places = "; ".join(f"\u201c{_clean(c.get('article_title'))}\u201d ({_clean(c.get('article_id'))}) as [{c.get('original_number')}]"
                       for c in citing)
    return f"Reference {ref['number']} of medkb answer {answer_id}; cited in {places}."


def _resolved(references: list[dict]) -> list[dict]:
    return [r for r in references if not r.get("unresolved")]


def _answer_title(question: str) -> str:
    return f"medkb answer to \u201c{_clean(question)}\u201d" if _clean(question) else "medkb answer"


def _answer_note(answer_id: str) -> str:
    return f"medkb answer {_clean(answer_id)}, which cites the references in this file (numbered as in the answer)."


def ris(references: list[dict], answer_id: str, question: str = "", permalink: str = "") -> str:
    """The resolved references as RIS records (CRLF lines), preceded by a web-page record for
    the answer itself when `permalink` (an absolute URL) is given."""
    lines: list[str] = []
    if permalink:
        lines += ["TY  - ELEC", f"TI  - {_answer_title(question)}", f"UR  - {_clean(permalink)}", f"N1  - {_answer_note(answer_id)}",
                  "ER  - ", ""]
    for ref in _resolved(references):
        ids = ref.get("identifiers") or {}
        kind = "JOUR" if ids.get("pmid") or ids.get("doi") else "ELEC" if ids.get("url") else "GEN"
        lines.append(f"TY  - {kind}")
        lines.extend(f"AU  - {_clean(a)}" for a in ref.get("authors") or [])
        lines.append(f"TI  - {_clean(ref.get('title'))}")
        if ref.get("source"):
            lines.append(f"T2  - {_clean(ref['source'])}")
        if ref.get("year"):
            lines.append(f"PY  - {ref['year']}")
        if ids.get("doi"):
            lines.append(f"DO  - {_clean(ids['doi'])}")
        if ids.get("pmid"):
            lines.append(f"AN  - PMID:{_clean(ids['pmid'])}")
            lines.append(f"UR  - {_pubmed(_clean(ids['pmid']))}")
        elif ids.get("url"):
            lines.append(f"UR  - {_clean(ids['url'])}")
        lines.append(f"KW  - {_clean(ref.get('kind'))}")
        if ref.get("retracted"):
            lines.append("N1  - RETRACTED: a notice says this publication was retracted.")
        lines.extend(f"N1  - {line}" for line in _notice_lines(ref))
        lines.append(f"N1  - {_origin(ref, answer_id)}")
        lines.append("ER  - ")
        lines.append("")
    return "\r\n".join(lines)


_BIB_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _bib(text: object) -> str:
    return "".join(_BIB_SPECIAL.get(c, c) for c in _clean(text))


def _bib_key(ref: dict) -> str:
    first = (ref.get("authors") or [ref.get("source") or "ref"])[0]
    word = re.sub(r"[^A-Za-z0-9]", "", (str(first).split() or ["ref"])[0]) or "ref"
    return f"ref{ref['number']}{word.lower()}{ref.get('year') or ''}"


def _bib_url(url: str) -> str:
    # A url or doi field is read verbatim (biblatex, url.sty; doi.org resolves the DOI as part of a URL): no TeX
    # escapes, which would end up in the link (`\_`), only no braces or backslash to unbalance the field.
    return _clean(url).replace("\\", "%5C").replace("{", "%7B").replace("}", "%7D")


def bibtex(references: list[dict], answer_id: str, question: str = "", permalink: str = "") -> str:
    """The resolved references as BibTeX entries, preceded by a `@misc` entry for the answer
    itself (key `medkb-answer-<id>`, its `url` the permalink) when `permalink` is given."""
    entries = [f"% References of medkb answer {answer_id}, numbered as in the answer."]
    if permalink:
        fields = [("title", _bib(_answer_title(question))), ("howpublished", "medkb"), ("url", _bib_url(permalink)), ("note", _bib(_answer_note(answer_id)))]
        body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
        entries.append(f"@misc{{medkb-answer-{re.sub(r'[^A-Za-z0-9_-]', '', answer_id)},\n{body}\n}}")
    for ref in _resolved(references):
        ids = ref.get("identifiers") or {}
        journal = bool(ids.get("pmid") or ids.get("doi"))
        fields = [("title", _bib(ref.get("title")))]
        if ref.get("authors"):
            fields.append(("author", " and ".join(_bib(a) for a in ref["authors"])))
        if ref.get("source"):
            fields.append(("journal" if journal else "howpublished", _bib(ref["source"])))
        if ref.get("year"):
            fields.append(("year", str(ref["year"])))
        if ids.get("doi"):
            fields.append(("doi", _bib_url(ids["doi"])))
        if ids.get("pmid"):
            fields.append(("pmid", _bib(ids["pmid"])))
            fields.append(("url", _bib_url(_pubmed(_clean(ids["pmid"])))))
        elif ids.get("url"):
            fields.append(("url", _bib_url(ids["url"])))
        notes = (["RETRACTED"] if ref.get("retracted") else []) + _notice_lines(ref) + [_origin(ref, answer_id)]
        fields.append(("note", _bib(" ".join(notes))))
        body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
        entries.append(f"@{'article' if journal else 'misc'}{{{_bib_key(ref)},\n{body}\n}}")
    return "\n\n".join(entries) + "\n"


def _nlm_authors(authors: list[str]) -> str:
    names = [_clean(a) for a in authors]
    if len(names) > NLM_MAX_AUTHORS:
        names = names[:NLM_MAX_AUTHORS] + ["et al"]
    return ", ".join(names) + "." if names else ""


def nlm(references: list[dict], answer_id: str, question: str = "", permalink: str = "") -> str:
    lines = [f"References of the medkb answer to \u201c{_clean(question)}\u201d ({permalink or answer_id})", ""]
    for ref in references:
        if ref.get("unresolved"):
            lines.append(f"{ref['number']}. The source article \u201c{_clean(ref.get('article_title'))}\u201d lists no reference for "
                         f"[{ref.get('original_number')}].")
            continue
        ids = ref.get("identifiers") or {}
        title = _clean(ref.get("title")).rstrip(".")
        parts = [p for p in (_nlm_authors(ref.get("authors") or []), f"{title}{' [Retracted]' if ref.get('retracted') else ''}.",
                             f"{_clean(ref.get('source')).rstrip('.')}." if ref.get("source") else "", f"{ref['year']}." if ref.get("year") else "",
                             f"doi:{_clean(ids['doi'])}." if ids.get("doi") else "", f"PMID: {_clean(ids['pmid'])}." if ids.get("pmid") else "",
                             f"Available from: {_clean(ids['url'])}" if ids.get("url") and not (ids.get("doi") or ids.get("pmid")) else "") if p]
        line = f"{ref['number']}. " + " ".join(parts)
        notices = _notice_lines(ref)
        if notices:
            line += " " + " ".join(f"{n}." for n in notices)
        lines.append(line)
    return "\n".join(lines) + "\n"


def export(fmt: str, answer: dict, answer_id: str, permalink: str) -> str:
    """The stored answer's (JSON, as given) references in `fmt`: "ris", "bib" or "txt" (NLM-style);
    every format names `permalink`, the answer's absolute URL."""
    references = answer.get("references") or []
    question = answer.get("question", "")
    if fmt == "ris":
        return ris(references, answer_id, question, permalink)
    if fmt == "bib":
        return bibtex(references, answer_id, question, permalink)
    return nlm(references, answer_id, question, permalink)
