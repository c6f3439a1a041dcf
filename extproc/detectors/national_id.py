"""National identity and tax numbers that carry a checksum or a strict structure, validated by python-stdnum.

    detector: national_id
    params:
      countries: [DE, FR, NL]     # default: every supported country
      context_for_weak: true      # see below

Labels are `national_id:<type>`, e.g. `national_id:nl_bsn`. Types whose check accepts one in eleven or so
random digit strings (Dutch BSN, Aadhaar, NHS number, PESEL, ...) are only reported in their distinctive
printed layout (`1234.56.782`, `2345 6789 0123`), or when a keyword naming the number (`BSN`, `Aadhaar`)
comes shortly before them: bare 9-12 digit numbers are everywhere (orders, invoices, phone numbers).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from extproc.detectors import register
from extproc.detectors.base import Detector
from extproc.detectors.hold import hold_run
from extproc.detectors.patterns import compile_re2, match_spans, search_set
from extproc.model import Finding

_CONTEXT_WINDOW = 40
_PREFILTER_UP_TO = 4096  # characters: a short text (a streamed tail) is first checked with one RE2 set pass
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


@dataclass(frozen=True)
class _IdType:
    label: str
    country: str
    module: str  # python-stdnum module that validates it
    pattern: str | None  # reported wherever it validates
    contextual: str | None = None  # reported only after one of `keywords` (if context_for_weak)
    keywords: str = ""  # RE2 alternation

    def validate(self, value: str) -> bool:
        if self.module == "gb.nino":  # python-stdnum has no NINO; its format (and prefixes) is the check
            return value[:2] not in _NINO_BAD_PREFIXES
        return bool(importlib.import_module(f"stdnum.{self.module}").is_valid(value))

    def compiled(self) -> tuple:  # type: ignore[type-arg]
        # RE2's \b knows only ASCII word characters; keywords may be Cyrillic or Thai.
        keywords = compile_re2(rf"(?:^|[^\p{{L}}\p{{N}}])(?:{self.keywords})(?:[^\p{{L}}\p{{N}}]|$)",
                               ignore_case=True) if self.keywords else None
        return (self, _bounded(self.pattern), _bounded(self.contextual), keywords)


def _bounded(pattern: str | None):  # type: ignore[no-untyped-def]
    """Every pattern starts and ends with a letter or digit, and a match glued to an ASCII word character
    is never standalone: `\\b` lets RE2 skip such matches, so a long run of digits yields no candidates
    instead of one per pattern length."""
    return compile_re2(rf"\b(?:{pattern})\b") if pattern else None


# Order matters: where two types validate the same text, the earlier one names it.
_TYPES = [
    _IdType("ch_ssn", "CH", "ch.ssn", r"756\.?\d{4}\.?\d{4}\.?\d{2}"),
    _IdType("cn_ric", "CN", "cn.ric", r"\d{17}[\dX]"),
    _IdType("mx_curp", "MX", "mx.curp", r"[A-Z]{4}\d{6}[HM][A-Z]{5}[0-9A-Z]\d"),
    _IdType("it_codicefiscale", "IT", "it.codicefiscale",
            r"[A-Z]{6}[0-9LMNP-V]{2}[A-EHLMPR-T][0-9LMNP-V]{2}[A-Z][0-9LMNP-V]{3}[A-Z]"),
    _IdType("fr_nir", "FR", "fr.nir",
            r"[12] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}"),
    _IdType("gb_nino", "GB", "gb.nino", r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]"),
    _IdType("es_dni", "ES", "es.dni", r"\d{8}-?[A-Z]"),
    _IdType("es_nie", "ES", "es.nie", r"[XYZ]-?\d{7}-?[A-Z]"),
    _IdType("in_pan", "IN", "in_.pan", r"[A-Z]{3}[ABCFGHJLPT][A-Z]\d{4}[A-Z]"),
    _IdType("ie_pps", "IE", "ie.pps", r"\d{7}[A-W][ABWTXZ]?"),
    _IdType("fi_hetu", "FI", "fi.hetu", r"\d{6}[-+A-FU-Y]\d{3}[0-9A-FHJ-NPR-Y]"),
    _IdType("kr_rrn", "KR", "kr.rrn", r"\d{6}-?\d{7}"),
    _IdType("za_idnr", "ZA", "za.idnr", r"\d{6} ?\d{4} ?\d{3}"),
    _IdType("ro_cnp", "RO", "ro.cnp", r"[1-9]\d{12}"),
    _IdType("si_emso", "SI", "si.emso", r"\d{13}"),
    _IdType("mu_nid", "MU", "mu.nid", r"[A-Z]\d{12}[A-Z0-9]"),
    _IdType("pt_cc", "PT", "pt.cc", r"\d{9} ?[A-Z]{2}\d"),
    _IdType("be_nn", "BE", "be.nn", r"\d{2}\.?\d{2}\.?\d{2}[-.]?\d{3}\.?\d{2}"),
    _IdType("se_personnummer", "SE", "se.personnummer", r"(?:\d{2})?\d{6}[-+]?\d{4}"),
    _IdType("is_kennitala", "IS", "is_.kennitala", r"\d{6}-?\d{4}"),
    _IdType("no_fodselsnummer", "NO", "no.fodselsnummer", r"\d{6}[- ]?\d{5}"),
    _IdType("de_idnr", "DE", "de.idnr", r"[1-9]\d(?: ?\d{3}){3}"),
    _IdType("ee_ik", "EE", "ee.ik", r"[1-6]\d{10}"),
    _IdType("gr_amka", "GR", "gr.amka", r"\d{11}"),
    _IdType("tr_tckimlik", "TR", "tr.tckimlik", r"[1-9]\d{10}"),
    _IdType("br_cpf", "BR", "br.cpf", r"\d{3}\.\d{3}\.\d{3}-\d{2}", r"\d{11}", "cpf"),
    _IdType("nl_bsn", "NL", "nl.bsn", r"\d{4}\.\d{2}\.\d{3}", r"\d{9}",
            "bsn|burgerservicenummer|sofinummer|sofi-nummer"),
    _IdType("in_aadhaar", "IN", "in_.aadhaar", r"[2-9]\d{3} \d{4} \d{4}|[2-9]\d{3}-\d{4}-\d{4}",
            r"[2-9]\d{11}", "aadhaar|aadhar|uidai|uid"),
    _IdType("th_pin", "TH", "th.pin", r"\d-\d{4}-\d{5}-\d{2}-\d|\d \d{4} \d{5} \d{2} \d", r"\d{13}",
            "pin|id card|บัตรประชาชน|เลขประจำตัวประชาชน"),
    _IdType("cz_rc", "CZ", "cz.rc", r"\d{6}/\d{3,4}", r"\d{9,10}", "rodné číslo|rodne cislo|rč"),
    _IdType("pl_pesel", "PL", "pl.pesel", None, r"\d{11}", "pesel"),
    _IdType("lt_asmens", "LT", "lt.asmens", None, r"\d{11}", "asmens kodas|asmens"),
    _IdType("bg_egn", "BG", "bg.egn", None, r"\d{10}", "egn|егн"),
    _IdType("dk_cpr", "DK", "dk.cpr", None, r"\d{6}-?\d{4}", "cpr|cpr-nr|personnummer"),
    _IdType("gb_nhs", "GB", "gb.nhs", None, r"\d{3}[ -]?\d{3}[ -]?\d{4}", "nhs"),
    _IdType("do_cedula", "DO", "do.cedula", None, r"\d{3}-?\d{7}-?\d", "c[eé]dula"),
    _IdType("cr_cpf", "CR", "cr.cpf", None, r"\d-?\d{4}-?\d{4}", "c[eé]dula"),
    _IdType("ua_rntrc", "UA", "ua.rntrc", None, r"\d{10}", "rntrc|рнокпп|іпн|инн|ipn"),
    _IdType("au_tfn", "AU", "au.tfn", None, r"\d{3} ?\d{3} ?\d{2,3}", "tfn|tax file number"),
]
_ID_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ -./+")
SUPPORTED_COUNTRIES = sorted({kind.country for kind in _TYPES})


class NationalIdParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    countries: list[str] = Field(default_factory=lambda: list(SUPPORTED_COUNTRIES), min_length=1)
    context_for_weak: bool = True

    @field_validator("countries")
    @classmethod
    def _supported(cls, value: list[str]) -> list[str]:
        countries = [country.upper() for country in value]
        unknown = sorted(set(countries) - set(SUPPORTED_COUNTRIES))
        if unknown:
            raise ValueError(f"unsupported countries {unknown}; supported: {', '.join(SUPPORTED_COUNTRIES)}")
        return countries


@register
class NationalIdDetector(Detector):
    name = "national_id"
    owasp = ("LLM02:2025", "LLM02:2026")
    Params = NationalIdParams
    max_span = 22  # the longest layout: a spaced French NIR, `1 84 12 76 451 089 46`

    def __init__(self, params: NationalIdParams | None = None) -> None:  # type: ignore[override]
        super().__init__(params)
        wanted = set(self.params.countries)
        self._types = [kind.compiled() for kind in _TYPES if kind.country in wanted]
        patterns = [p for kind, *_ in self._types for p in (kind.pattern, kind.contextual) if p]
        self._owners = [rank for rank, (kind, *_) in enumerate(self._types)
                        for p in (kind.pattern, kind.contextual) if p]
        self._prefilter = search_set(patterns) if patterns else None

    def find(self, text: str) -> list[Finding]:
        candidates = []
        for rank, (kind, pattern, contextual, keywords) in self._types_present(text):
            for start, end in _matches(text, pattern):
                candidates.append((start, end, rank, False))
            for start, end in _matches(text, contextual):
                named = bool(keywords and keywords.search(_before(text, start)))
                if named or not self.params.context_for_weak:
                    candidates.append((start, end, rank, named))
        return [Finding(self.name, f"national_id:{self._types[rank][0].label}", start, end)
                for start, end, rank in _disjoint(text, candidates, self._types)]

    def hold(self, text: str) -> int:
        return hold_run(text, _ID_CHARS, self.max_span)

    def _types_present(self, text: str) -> list[tuple[int, tuple]]:  # type: ignore[type-arg]
        """(rank, type) of the types whose patterns occur in `text`: on a short text (a stream's tail, where
        the per-pattern calls dominate) one set pass picks them; a long one runs every pattern, as a set
        pass that runs out of DFA memory would report no match at all."""
        if self._prefilter is None or len(text) > _PREFILTER_UP_TO:
            return list(enumerate(self._types))
        ranks = sorted({self._owners[i] for i in self._prefilter.Match(text) or ()})
        return [(rank, self._types[rank]) for rank in ranks]


def _matches(text: str, pattern) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    if pattern is None:
        return []
    return [(start, end) for start, end in match_spans(pattern, text) if _standalone(text, start, end)]


def _standalone(text: str, start: int, end: int) -> bool:
    """Not glued to letters or digits, nor to another number through `-`, `.` or `/`, nor one group of a
    longer grouped number (`AL47 2121 1009 0000 ...`)."""
    before = text[max(0, start - 2):start].rjust(2)
    after = text[end:end + 2].ljust(2)
    if before[1].isalnum() or before[1] == "_" or after[0].isalnum() or after[0] == "_":
        return False
    if (before[1] in "-./" and before[0].isalnum()) or (after[0] in "-./" and after[1].isalnum()):
        return False
    return not ((before[1] == " " and before[0].isdigit()) or (after[0] == " " and after[1].isdigit()))


def _before(text: str, start: int) -> str:
    return text[max(0, start - _CONTEXT_WINDOW):start]


def _disjoint(text: str, candidates: list[tuple[int, int, int, bool]],
              types: list) -> list[tuple[int, int, int]]:  # type: ignore[type-arg]
    """Validate, then keep the earliest and longest of overlapping candidates; for one span, a type named by
    a keyword before it wins, then the table order."""
    kept: list[tuple[int, int, int]] = []
    for start, end, rank, _ in sorted(candidates, key=lambda c: (c[0], -c[1], not c[3], c[2])):
        if kept and start < kept[-1][1]:
            continue
        if end - start <= NationalIdDetector.max_span and types[rank][0].validate(text[start:end]):
            kept.append((start, end, rank))
    return kept
