"""Grounding checks done by code: the quote that answers a question, and figures not in the sources.

Pure functions (stdlib only, no Django, no model): the small local model cannot be trusted to
quote exactly or to keep numbers, dates and names straight, so the product shows an exact quote
chosen here and marks every figure of the answer that the sources do not contain.

- `quote_select` picks the sentence (or two adjacent ones) of the retrieved passages that best
  answers the question, by lexical overlap weighted by IDF; the quote is an exact substring.
- `excerpt_around` gives the whole sentences around a span, to prompt the model with a short
  excerpt instead of whole passages.
- `figures_in` / `figures_unsupported` find amounts, percentages, dates, times, numbers, codes
  and names in an answer and look each one up in the sources under the usual spellings
  (4.50 / 4,50 / EUR 4.50, three / 3, 31 March / 2025-03-31, 10:00 / 10 am, ...).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# --- public types ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    """Sentences of one passage, exactly as written there, that answer the question."""

    source_index: int  # index into the passages list given
    text: str  # exact substring of passages[source_index], never rewritten
    start: int  # offsets of text within passages[source_index]
    end: int
    score: float


@dataclass(frozen=True)
class Figure:
    """An amount, percentage, date, time, number, code or name as written in a text."""

    text: str  # as written
    start: int
    end: int
    kind: str  # "amount" | "percent" | "date" | "time" | "number" | "code" | "name"
    keys: frozenset[str]  # normalised forms used for lookup


# --- words -------------------------------------------------------------------------------------


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS = _wordset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each either else
    ever every few for from further get gets getting give given go goes going got had has have
    having he her here hers herself him himself his how i if in into is it its itself just know
    let like many may me might more most much must my myself need needs no nor not now of off on
    once only or other our ours ourselves out over own please same shall she should so some such
    tell than that the their theirs them themselves then there these they this those through to
    too under until up upon us very want was we were what whatever when where whether which while
    who whom whose why will with within without would yes yet you your yours yourself
    yourselves"""
)

# Capitalised at the start of a sentence these are ordinary words, not names ("However, ...").
_COMMON_STARTERS = _STOPWORDS | _wordset(
    """according additionally afterwards again already although always answer anyone anything
    based besides briefly currently depending details each employees everyone example finally
    first firstly following furthermore generally hello here hi however important in
    instead lastly meanwhile moreover never next no none note nothing once otherwise overall
    per please regarding remember second secondly see since sorry source sources still
    summary sure thanks thank therefore third thus today typically unfortunately unless
    usually yes
    apply ask book call check contact email fill follow go inform make read reach register
    report request send speak submit take talk use visit write"""
)

_WEEKDAYS = {
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun",
}  # fmt: skip
_MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7,
    "august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9,
    "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
# Capitalised words that are never claims about the documents.
_NAME_ALLOWLIST = (
    frozenset({"i", "counsel", "eur", "usd", "gbp", "chf", "am", "pm", "ok"})
    | _WEEKDAYS
    | {d + "s" for d in _WEEKDAYS}
    | set(_MONTHS)
)

_TOKEN = re.compile(r"[^\W_]+")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.casefold())


def _stem(word: str) -> str:
    """Light suffix stripping so that plural, -ing and -ed forms meet (rates/rate, booked/book)."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "xes", "ches", "shes", "zes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ing") and len(word) >= 6:
        word = _undouble(word[:-3])
    elif word.endswith("ied") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("ed") and len(word) >= 5:
        word = _undouble(word[:-2])
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def _undouble(word: str) -> str:
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeioulsz":
        return word[:-1]
    return word


_TERM = re.compile(r"\d+(?:[.,]\d+)*|[^\W_]+(?:[-'\u2019][^\W_]+)*")


def _terms(text: str) -> set[str]:
    """Content terms of `text`: stemmed words minus stopwords, numbers, codes kept whole."""
    terms: set[str] = set()
    for token in _TERM.findall(text):
        terms.update(_token_terms(token))
    return terms


@functools.lru_cache(maxsize=65536)
def _token_terms(token: str) -> tuple[str, ...]:
    # Cached: the same few hundred words recur in every passage, and this is the hot path of
    # quote_select.
    token = token.casefold()
    if token[0].isdigit() and not any(c.isalpha() for c in token):
        values = _number_values(token)
        return (min(values) if values else token,)
    if token.endswith(("'s", "\u2019s")):
        token = token[:-2]
    terms: list[str] = []
    if "-" in token and any(c.isdigit() for c in token):
        terms.append(token)  # a code such as ka-rrr-0419 also matches as a whole
    for part in re.split(r"[-'\u2019]", token):
        if part and part not in _STOPWORDS and (len(part) > 1 or part.isdigit()):
            terms.append(_stem(part))
    return tuple(terms)


# --- numbers -----------------------------------------------------------------------------------

_SP = "[ \u00a0\u202f]"  # a space inside one figure (never a line break)
_NUM = (
    # Not inside an identifier: "ap-020d79-v1" holds no number 020 (a letter and a hyphen before).
    r"(?<![\w.,])(?<![A-Za-z]-)"
    r"(?:\d{1,3}(?:(?:,|\.|[ \u00a0\u202f])\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?)"
    r"(?!\d|[.,]\d)"
)
_UNITS_W = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9}  # fmt: skip
_TEENS_W = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
            "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}  # fmt: skip
_TENS_W = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
           "seventy": 70, "eighty": 80, "ninety": 90}  # fmt: skip
_WORD_VALUES = {**_UNITS_W, **_TEENS_W, **_TENS_W, "zero": 0, "a": 1}


def _alt(words: Iterable[str]) -> str:
    return "(?:" + "|".join(sorted(words, key=len, reverse=True)) + r")\b"


_SMALL_W = rf"(?:{_alt(_TENS_W)}(?:[- ]{_alt(_UNITS_W)})?|{_alt(_TEENS_W)}|{_alt(_UNITS_W)}|zero\b)"
_HUNDREDS_W = rf"(?:(?:{_SMALL_W}|a)[ ]hundred\b(?:[ ](?:and[ ])?{_SMALL_W})?|{_SMALL_W})"
_NUMWORDS = (
    rf"(?i:\b(?:(?:{_HUNDREDS_W}|a)[ ]thousand\b(?:[ ](?:and[ ])?{_HUNDREDS_W})?|{_HUNDREDS_W}))"
)

_ORDINAL_WORDS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
_ORDINAL_WORD = re.compile(r"(?i)\b(" + "|".join(_ORDINAL_WORDS) + r")\b")


def _canon(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


@functools.lru_cache(maxsize=4096)
def _number_values(text: str) -> frozenset[str]:
    """The values a written number can mean: 1,200 is 1200, 1.200 is 1200 or 1.2, 4,50 is 4.5."""
    text = text.replace("\u00a0", " ").replace("\u202f", " ")
    readings: list[str] = []
    if " " in text:
        readings.append(text.replace(" ", "").replace(",", "."))
    elif "," in text and "." in text:
        decimal_sep = "," if text.rfind(",") > text.rfind(".") else "."
        thousands_sep = "." if decimal_sep == "," else ","
        readings.append(text.replace(thousands_sep, "").replace(decimal_sep, "."))
    else:
        sep = "," if "," in text else "." if "." in text else ""
        groups = text.split(sep) if sep else [text]
        grouped = len(groups) > 1 and all(len(g) == 3 for g in groups[1:]) and len(groups[0]) <= 3
        if grouped:
            readings.append("".join(groups))
        if len(groups) == 2 and not (grouped and sep == ","):
            # One separator: 4,50 and 4.50 are decimals; 1.200 may be either (German thousands,
            # or 1.2), so both count. 3,500 is English thousands only: read as 3.5 it let an
            # invented "$3,500" pass against a source's "3.5 %".
            readings.append(groups[0] + "." + groups[1])
        if not sep:
            readings.append(text)
    values: set[str] = set()
    for reading in readings:
        try:
            values.add(_canon(Decimal(reading)))
        except InvalidOperation:
            continue
    return frozenset(values)


def _words_value(text: str) -> int | None:
    total = current = 0
    for word in re.findall(r"[a-z]+", text.casefold()):
        if word == "and":
            continue
        if word == "hundred":
            current = (current or 1) * 100
        elif word == "thousand":
            total += (current or 1) * 1000
            current = 0
        elif word in _WORD_VALUES:
            current += _WORD_VALUES[word]
        else:
            return None
    return total + current


_MAGNITUDES = {"thousand": 3, "k": 3, "million": 6, "mn": 6, "m": 6, "billion": 9, "bn": 9}


def _values_of(number: str, magnitude: str | None = None) -> set[str]:
    """Canonical values of a number written with digits or words, with its magnitude applied."""
    if number[0].isdigit():
        values = set(_number_values(number))
    else:
        value = _words_value(number)
        values = set() if value is None else {str(value)}
    if magnitude:
        exponent = _MAGNITUDES[magnitude.casefold()]
        values |= {_canon(Decimal(v).scaleb(exponent)) for v in values}
    return values


# --- figure patterns ---------------------------------------------------------------------------

_MONTH = (
    r"\b(January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\b"
)
_ORD = r"(?:st|nd|rd|th)?"
_YEAR = r"(\d{4})(?!\d)"
_MAG = r"(?:million|mn|billion|bn|thousand|m|k)(?![\w])"
_MAG_LONG = r"(?:million|billion|thousand)\b"
_CUR_PRE = r"(?<![\w])(?:EUR|USD|GBP|CHF)(?![\w])|[€$£]"
_CUR_POST = r"(?:(?:EUR|USD|GBP|CHF|[Ee]uros?|[Dd]ollars?|[Cc]ents?)(?![\w])|[€$£])"

_SKIP = [
    re.compile(r"\[\^?\d+(?:\s*[,;\u2013-]\s*\d+)*\]"),  # citations [1], [1, 2]
    re.compile(r"\]\([^)\s]*(?:\s+\"[^\"]*\")?\)"),  # Markdown link targets
    re.compile(r"(?m)^[ \t]*(?:#{1,6}[ \t]+|>[ \t]*)?(?:[-*+•][ \t]+)?\d{1,3}[.)](?=[ \t])"),
    # References to the document's structure, not claims about its content.
    re.compile(
        r"(?i)\b(?:sections?|chapters?|steps?|pages?|pp?\.|articles?|art\.|paragraphs?|items?|"
        r"points?|sources?|rules?|§)\s*\d+(?:\.\d+)*(?:\s*(?:and|,|-|\u2013|to)\s*\d+(?:\.\d+)*)*"
    ),
]
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"https?://[^\s)>\]]+")
_PHONE = re.compile(r"\+\d{1,3}(?:[ \-/]?\(?\d{1,5}\)?){2,6}")
_CODE_DASHED = re.compile(r"(?<![\w-])[A-Z0-9]+(?:-[A-Z0-9]+)+(?![\w-])")
_CODE_MIXED = re.compile(r"(?<![\w-])(?=[A-Z0-9]*[A-Z])(?=[A-Z0-9]*\d)[A-Z0-9]{2,}(?![\w-])")
# A code written in lower case ("ka-rrr-0419", "adr-0009"): letters first, digits last, so that
# "24-hour" or "100-day" stay numbers.
_CODE_LOWER = re.compile(r"(?<![\w-])[A-Za-z]{1,8}(?:-[A-Za-z]{1,8})*-\d{3,}(?![\w-])")
_VERSION = re.compile(r"(?<![\w.])\d+(?:\.\d+){2,}(?![\w]|\.\d)")
_ISO_DATE = re.compile(r"(?<![\d-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\d-])")
_DOTTED_DATE = re.compile(r"(?<![\d.,])(\d{1,2})\.(\d{1,2})\.(?:(\d{4}|\d{2})(?![\d.]))?")
_SLASH_DATE = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})/(\d{4})(?![\d/])")
_DAY_LIST = re.compile(
    rf"(?<![\w.,:])(\d{{1,2}}){_ORD}((?:{_SP}*,{_SP}*\d{{1,2}}{_ORD})*){_SP}*,?{_SP}*"
    rf"(?:and|or|to|until|through|-|\u2013|\u2014){_SP}*\d{{1,2}}{_ORD}(?:{_SP}+of)?{_SP}+{_MONTH}"
    rf"(?:,?{_SP}+{_YEAR})?"
)
_DAY_MONTH = re.compile(
    rf"(?<![\w.,:])(\d{{1,2}}){_ORD}(?:{_SP}+of)?{_SP}+{_MONTH}(?:,?{_SP}+{_YEAR})?"
)
_MONTH_DAY = re.compile(rf"{_MONTH}{_SP}+(\d{{1,2}}){_ORD}(?![\d:]|[.,]\d)(?:,?{_SP}+{_YEAR})?")
_MONTH_YEAR = re.compile(rf"{_MONTH}{_SP}+{_YEAR}")
_AMPM = r"(?:am|pm|a\.m\.|p\.m\.|AM|PM|A\.M\.|P\.M\.)"
_TIME_COLON = re.compile(
    rf"(?<![\d:.,])([01]?\d|2[0-3]):([0-5]\d)(?!\d)(?:{_SP}?({_AMPM})|{_SP}?(?:h|hrs|Uhr)\b)?"
)
_TIME_DOT = re.compile(
    rf"(?<![\d:.,])([01]?\d|2[0-3])\.([0-5]\d)(?:{_SP}?({_AMPM})|{_SP}?(?:h|hrs|Uhr)\b)"
)
_TIME_DOT_RANGE = re.compile(
    rf"(?<![\d:.,])([01]?\d|2[0-3])\.([0-5]\d){_SP}*(?:-|\u2013|to|until){_SP}*"
    r"([01]?\d|2[0-3])\.([0-5]\d)(?![\d]|[.,]\d)"
)
_TIME_HOUR = re.compile(rf"(?<![\w.,:])(1[0-2]|0?[1-9]){_SP}?({_AMPM})(?![\w])")
_PERCENT_SUFFIX = rf"{_SP}?(?:%|(?i:percent\b|per{_SP}cent\b))"
_PERCENT = re.compile(rf"({_NUM}){_PERCENT_SUFFIX}")
_AMOUNT_PRE = re.compile(rf"(?:{_CUR_PRE}){_SP}?({_NUM})(?:{_SP}?({_MAG}))?")
_AMOUNT_POST = re.compile(rf"({_NUM})(?:{_SP}?({_MAG}))?{_SP}?{_CUR_POST}")
_NUMBER = re.compile(rf"({_NUM})(?:{_SP}({_MAG_LONG}))?")
# Number words are found from candidate words (one regex of all their alternatives tried at
# every position was the slowest part of figures_in); the grammar is matched only there.
_NUMBER_WORDS = re.compile(rf"({_NUMWORDS})(?:{_SP}({_MAG_LONG}))?")
_NUMBER_WORD_START = re.compile(
    r"(?i)\b(?:" + "|".join(sorted(set(_WORD_VALUES) - {"a"})) + r"|a(?=[ ](?:hundred|thousand)\b))"
)
_WORDS_PERCENT = re.compile(_PERCENT_SUFFIX)
_WORDS_AMOUNT = re.compile(rf"{_SP}?{_CUR_POST}")
_CAP = "A-ZÀ-ÖØ-Þ"
_NAME_WORD = rf"[{_CAP}][^\W\d_]*(?:['\u2019][^\W\d_]+)?(?:-[^\W\d_]+)*(?![\w-])"
_NAME = re.compile(
    rf"(?<![\w'\u2019-]){_NAME_WORD}(?:{_SP}(?:(?:de|van|von|der|den|du|da|di|la|le|ter){_SP})*"
    rf"{_NAME_WORD})*"
)
_SENTENCE_START = re.compile(
    r"(?:^|[.!?:;|]|\n[ \t]*(?:\d+[.)]|[-*+•>#]+)?)[\s*_\"\u201c\u2018'(\[]*$"
)


def _time_key(hour: int, minute: int, ampm: str | None) -> set[str]:
    if ampm:
        pm = ampm.casefold().startswith("p")
        hour = hour % 12 + (12 if pm else 0)
        return {f"t:{hour:02d}:{minute:02d}"}
    keys = {f"t:{hour:02d}:{minute:02d}"}
    if 1 <= hour < 12:
        keys.add(f"t:{hour + 12:02d}:{minute:02d}")  # "3:00" may be 15:00 in a 24-hour source
    return keys


def _date_keys(day: int, month: int, year: str | None) -> set[str] | None:
    if not (1 <= day <= 31 and 1 <= month <= 12):
        return None
    if year is None:
        return {f"dm:{month:02d}-{day:02d}"}
    if len(year) == 2:
        year = "20" + year
    return {f"d:{year}-{month:02d}-{day:02d}"}


class _Finder:
    """Collects non-overlapping figures; each pass sees earlier figures masked out."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.figures: list[Figure] = []
        self._mask = bytearray(len(text))
        self._masked = text
        self._pending: list[tuple[int, int]] = []

    @property
    def masked(self) -> str:
        """The text with claimed characters replaced by NUL, so later patterns cannot match
        across or inside a figure already found."""
        if self._pending:
            pieces, cursor = [], 0
            for start, end in sorted(self._pending):
                start = max(start, cursor)
                pieces += [self._masked[cursor:start], "\x00" * max(0, end - start)]
                cursor = max(cursor, end)
            pieces.append(self._masked[cursor:])
            self._masked = "".join(pieces)
            self._pending = []
        return self._masked

    def claim(self, start: int, end: int) -> None:
        self._mask[start:end] = b"\x01" * (end - start)
        self._pending.append((start, end))

    def free(self, start: int, end: int) -> bool:
        return self._mask.find(1, start, end) == -1

    def add(self, start: int, end: int, kind: str, keys: set[str]) -> None:
        if start < end and keys and self.free(start, end):
            self.figures.append(Figure(self.text[start:end], start, end, kind, frozenset(keys)))
            self.claim(start, end)


def figures_in(text: str) -> list[Figure]:
    """Every figure written in `text`, in order and non-overlapping.

    Kinds: amount, percent, date, time, number, code and name. Citation markers ([1]), link
    targets, list numbering and references to sections are not figures; the digits inside a
    code belong to the code. `keys` are normalised forms: "n:4.5" for a number or amount,
    "p:23.5", "d:2025-03-31" / "dm:03-31" (no year), "m:2025-03", "y:2025", "t:10:00",
    "c:<code>", "w:<words>" for a name, "ph:<digits>".
    """
    finder = _Finder(text)
    for pattern in _SKIP:
        for m in pattern.finditer(finder.masked):
            finder.claim(m.start(), m.end())
    for m in _EMAIL.finditer(finder.masked) if "@" in text else ():
        finder.add(m.start(), m.end(), "code", {"c:" + m.group().casefold()})
    for m in _URL.finditer(finder.masked) if "://" in text else ():
        end = m.end() - len(m.group()) + len(m.group().rstrip(".,;:!?"))
        finder.add(m.start(), end, "code", {"c:" + text[m.start() : end].casefold()})
    for m in _PHONE.finditer(finder.masked) if "+" in text else ():
        digits = re.sub(r"\D", "", m.group())
        if len(digits) >= 7:
            finder.add(m.start(), m.end(), "number", {"ph:" + digits})
    for pattern in (_CODE_DASHED, _CODE_MIXED, _CODE_LOWER):
        for m in pattern.finditer(finder.masked):
            if re.search(r"[A-Za-z]", m.group()):
                finder.add(m.start(), m.end(), "code", {"c:" + m.group().casefold()})
    # "EUR 1.10." is an amount, not the first of October: amounts with a currency sign first.
    _find_amounts(finder, _AMOUNT_PRE)
    _find_dates(finder)
    _find_times(finder)
    for m in _VERSION.finditer(finder.masked):
        finder.add(m.start(), m.end(), "code", {"c:" + m.group()})
    for m in _PERCENT.finditer(finder.masked):
        finder.add(m.start(), m.end(), "percent", {"p:" + v for v in _values_of(m.group(1))})
    _find_amounts(finder, _AMOUNT_POST)
    _find_numbers(finder)
    _find_names(finder)
    return sorted(finder.figures, key=lambda f: f.start)


def _find_amounts(finder: _Finder, pattern: re.Pattern[str]) -> None:
    for m in pattern.finditer(finder.masked):
        values = _values_of(m.group(1), m.group(2))
        finder.add(m.start(), m.end(), "amount", {"n:" + v for v in values})


def _find_dates(finder: _Finder) -> None:
    for m in _ISO_DATE.finditer(finder.masked):
        keys = _date_keys(int(m.group(3)), int(m.group(2)), m.group(1))
        if keys:
            finder.add(m.start(), m.end(), "date", keys)
    for m in _SLASH_DATE.finditer(finder.masked):
        a, b, year = int(m.group(1)), int(m.group(2)), m.group(3)
        keys = (_date_keys(a, b, year) or set()) | (_date_keys(b, a, year) or set())
        finder.add(m.start(), m.end(), "date", keys)
    for m in _DOTTED_DATE.finditer(finder.masked):
        day, month, year = int(m.group(1)), int(m.group(2)), m.group(3)
        if year is None and len(m.group(2)) != 2:
            continue  # "5.2." ends a sentence about version 5.2 more often than it is a date
        keys = _date_keys(day, month, year)
        if keys:
            if year is None:
                keys |= {"n:" + v for v in _number_values(f"{m.group(1)}.{m.group(2)}")}
            finder.add(m.start(), m.end(), "date", keys)
    # "2 and 4 September": the leading days are dates in September too.
    for m in _DAY_LIST.finditer(finder.masked):
        month, year = _MONTHS[m.group(3).casefold()], m.group(4)
        days = [(m.start(1), m.end(1))]
        offset = m.start(2)
        days += [(offset + d.start(), offset + d.end()) for d in re.finditer(r"\d+", m.group(2))]
        for start, end in days:
            keys = _date_keys(int(finder.text[start:end]), month, year)
            if keys:
                finder.add(start, end, "date", keys)
    for m in _DAY_MONTH.finditer(finder.masked):
        keys = _date_keys(int(m.group(1)), _MONTHS[m.group(2).casefold()], m.group(3))
        if keys:
            finder.add(m.start(), m.end(), "date", keys)
    for m in _MONTH_DAY.finditer(finder.masked):
        keys = _date_keys(int(m.group(2)), _MONTHS[m.group(1).casefold()], m.group(3))
        if keys:
            finder.add(m.start(), m.end(), "date", keys)
    for m in _MONTH_YEAR.finditer(finder.masked):
        month = _MONTHS[m.group(1).casefold()]
        finder.add(m.start(), m.end(), "date", {f"m:{m.group(2)}-{month:02d}"})


def _find_times(finder: _Finder) -> None:
    for m in _TIME_DOT_RANGE.finditer(finder.masked):
        for first in (1, 3):
            keys = _time_key(int(m.group(first)), int(m.group(first + 1)), None)
            finder.add(m.start(first), m.end(first + 1), "time", keys)
    for pattern in (_TIME_COLON, _TIME_DOT):
        for m in pattern.finditer(finder.masked):
            keys = _time_key(int(m.group(1)), int(m.group(2)), m.group(3))
            finder.add(m.start(), m.end(), "time", keys)
    for m in _TIME_HOUR.finditer(finder.masked):
        finder.add(m.start(), m.end(), "time", _time_key(int(m.group(1)), 0, m.group(2)))


def _find_numbers(finder: _Finder) -> None:
    for m in _NUMBER.finditer(finder.masked):
        number = m.group(1)
        keys = {"n:" + v for v in _values_of(number, m.group(2))}
        kind = "number"
        if re.fullmatch(r"(?:19|20)\d\d", number):
            kind = "date"
            keys.add("y:" + number)
        shape = re.fullmatch(r"([01]?\d|2[0-3])[.,]([0-5]\d)", number)
        if shape:  # 10.00 may be a time written with a dot
            keys |= _time_key(int(shape.group(1)), int(shape.group(2)), None)
        finder.add(m.start(), m.end(), kind, keys)
    masked = finder.masked
    cursor = 0
    for start in _NUMBER_WORD_START.finditer(masked):
        if start.start() < cursor:
            continue
        m = _NUMBER_WORDS.match(masked, start.start())
        if m is None or m.group(1).casefold() == "one":
            continue  # "one of the ..." is rarely a count that could be wrong
        values = _values_of(*m.groups())
        end, kind, prefix = m.end(), "number", "n:"
        suffix = _WORDS_PERCENT.match(masked, end)
        if suffix:
            end, kind, prefix = suffix.end(), "percent", "p:"
        else:
            suffix = _WORDS_AMOUNT.match(masked, end)
            if suffix:
                end, kind = suffix.end(), "amount"
        finder.add(m.start(), end, kind, {prefix + v for v in values})
        cursor = end


def _find_names(finder: _Finder) -> None:
    text = finder.text
    for m in _NAME.finditer(finder.masked):
        words = list(re.finditer(r"\S+", m.group()))
        # Leading ordinary words are not part of a name: "The Travel Desk", "However".
        while words:
            word = words[0].group()
            start = m.start() + words[0].start()
            opens = _SENTENCE_START.search(text, max(0, start - 12), start) is not None
            folded = word.casefold()
            if folded in _STOPWORDS or (
                opens and (folded in _COMMON_STARTERS or folded.endswith("ly"))
            ):
                words.pop(0)
            elif opens and len(words) == 1 and word[1:].islower():
                # One capitalised word opening a sentence or a table cell is most often an
                # ordinary word ("Cost", "Hotel"); without a dictionary it is not taken as a name.
                words.pop(0)
            else:
                break
        if not words:
            continue
        start, end = m.start() + words[0].start(), m.start() + words[-1].end()
        if text[end - 2 : end] in ("'s", "\u2019s"):
            end -= 2
        tokens = _tokens(text[start:end])
        if sum(len(t) for t in tokens) <= 1 or all(t in _NAME_ALLOWLIST for t in tokens):
            continue  # "I", "Friday", "December" are never claims about the documents
        finder.add(start, end, "name", {"w:" + " ".join(tokens)})


# --- claim check -------------------------------------------------------------------------------


def _index_keys(keys: Iterable[str]) -> set[str]:
    """What a figure in a source supports: a full date also supports its day and its year."""
    index: set[str] = set()
    for key in keys:
        index.add(key)
        if key.startswith("d:"):
            year, month, day = key[2:].split("-")
            index |= {f"dm:{month}-{day}", f"m:{year}-{month}", f"y:{year}", f"n:{year}"}
        elif key.startswith("dm:"):
            index.add("dm0:" + key[3:])
        elif key.startswith("p:"):
            # "a 70/30 split" of "70 % base and 30 % variable": a plain number, never an
            # amount ("EUR 23.50" is not supported by "23.5%").
            index.add("np:" + key[2:])
        elif key.startswith("m:"):
            index |= {"y:" + key[2:6], "n:" + key[2:6]}
        elif key.startswith("c:"):
            fiscal = re.fullmatch(r"c:fy(\d{2}|\d{4})", key)
            if fiscal:  # FY2026 / FY26 name a year
                year = fiscal.group(1) if len(fiscal.group(1)) == 4 else "20" + fiscal.group(1)
                index |= {"y:" + year, "n:" + year}
    return index


@dataclass
class _Evidence:
    keys: set[str]
    stems: set[str]  # of every word, for names worded a little differently (Hotel / hotels)
    phrase_text: str  # tokens joined by single spaces; sources apart by two


def _evidence(texts: Sequence[str]) -> _Evidence:
    keys: set[str] = set()
    words: set[str] = set()
    phrases: list[str] = []
    for text in texts:
        for figure in figures_in(text):
            keys |= _index_keys(figure.keys)
            if figure.kind == "number" and " " in figure.text.strip():
                # "2 300" may be two numbers in a table: each one counts too.
                for part in re.findall(r"\d+", figure.text):
                    keys |= {"n:" + v for v in _number_values(part)}
        for m in _ORDINAL_WORD.finditer(text):
            keys.add(f"n:{_ORDINAL_WORDS[m.group(1).casefold()]}")
        for m in re.finditer(r"(?m)^\s*(?:[-*+•]\s+)?(\d{1,3})[.)]\s", text):
            keys.add("n:" + str(int(m.group(1))))  # list numbering
        tokens = _tokens(text)
        words.update(tokens)
        phrases.append(" ".join(tokens))
    return _Evidence(keys, {_stem(w) for w in words}, " " + "  ".join(phrases) + " ")


def _supported(figure: Figure, evidence: Sequence[_Evidence]) -> bool:
    if figure.kind in ("name", "code"):
        tokens = _tokens(figure.text)
        if figure.kind == "name" and all(t in _NAME_ALLOWLIST for t in tokens):
            return True
        phrase = " " + " ".join(tokens) + " "
        if any(phrase in e.phrase_text for e in evidence):
            return True
        # Names: a title or a team the model words differently ("Finance Head") is still
        # fine when every word is in the sources; a changed surname is not.
        known = set().union(*(e.stems for e in evidence))
        return figure.kind == "name" and all(
            t in _NAME_ALLOWLIST or _stem(t) in known for t in tokens
        )
    keys = set().union(*(e.keys for e in evidence))
    if figure.kind != "amount":
        keys |= {"n:" + k[3:] for k in keys if k.startswith("np:")}
    if figure.keys & keys:
        return True
    for key in figure.keys:
        if key.startswith("d:"):  # 31 March 2025 in the answer, 31 March and 2025 in the sources
            year, month, day = key[2:].split("-")
            if f"dm0:{month}-{day}" in keys and f"y:{year}" in keys:
                return True
    return False


def figure_supported(figure: Figure, *, sources: Sequence[str], question: str = "") -> bool:
    """Whether `sources` (or the question) hold `figure`, a figure of some answer: the check
    `figures_unsupported` makes, for one figure and, say, one source at a time."""
    evidence = [_evidence(sources)]
    if question:
        evidence.append(_evidence([question]))
    return _supported(figure, evidence)


def figures_unsupported(*, answer: str, sources: Sequence[str], question: str = "") -> list[Figure]:
    """The figures of `answer` that neither the sources nor the question contain.

    Each figure is looked up under the spellings people use for the same thing (4.50, 4,50,
    EUR 4.50, 4.50 euros; three and 3; 23.5% and 23.5 percent; 31 March, March 31, 31.03.,
    2025-03-31; 10:00, 10.00, 10 am); codes and names case-insensitively. A date without a year
    is supported by the same day and month with a year. Returned in answer order.
    """
    evidence = [_evidence(sources)]
    if question:
        evidence.append(_evidence([question]))
    return [f for f in figures_in(answer) if not _supported(f, evidence)]


# --- sentence units ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    kind: str  # "text" | "item" | "row" | "heading"
    header: tuple[int, int] | None = None  # a table row's header row


_LINE_RULE = re.compile(r"[\s\-=_|:+*~.#]*[-=_~]{3,}[\s\-=_|:+*~.#]*")
_LINE_HEADING = re.compile(r"[ \t]{0,3}#{1,6}[ \t]")
_LINE_ITEM = re.compile(r"[ \t]*(?:[-*+•·\u2013]|\d{1,3}[.)]|[a-z][.)])[ \t]+\S")
_GAP_ROW = re.compile(r"[^\s.!?:;,] {2,}\S")  # a fixed-width table's row: columns between gaps
_LINE_ROW = re.compile(r"^[ \t]*\||[^ ] \| |\t|" + _GAP_ROW.pattern)
_LINE_LABEL = re.compile(r"[ \t]*[^\s:][^:]{0,40}:[ \t]+\S")
_MARKER = re.compile(
    r"(?:[ \t]|#{1,6}(?=[ \t])|>|[-*+•·\u2013](?=[ \t])|\d{1,3}[.)](?=[ \t])"
    r"|[a-z][.)](?=[ \t])|\|)*"
)
_SENT_END = re.compile(r"[.!?…]+[\"'\u201d\u2019)\]]*(?=\s)")
_ABBREV_NEVER = _wordset(
    "e.g i.e cf vs incl excl resp dr mr mrs ms prof st z.b u.a bzw approx ca viz al"
)
_ABBREV_BEFORE_DIGIT = _wordset(
    "no nr ext tel fig p pp vol art sec para max min jan feb mar apr jun jul aug sep sept oct nov "
    "dec"
)


def _lines(passage: str) -> list[tuple[int, int, str]]:
    lines: list[tuple[int, int, str]] = []
    pos = 0
    for raw in passage.splitlines(keepends=True):
        content = raw.rstrip("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
        text = passage[pos : pos + len(content)]
        if not text.strip():
            kind = "blank"
        elif _LINE_RULE.fullmatch(text):
            kind = "rule"
        elif _LINE_HEADING.match(text):
            kind = "heading"
        elif _LINE_ROW.search(text) or (
            lines and lines[-1][2] == "row" and re.match(r"[ \t]{8}", text)
        ):
            kind = "row"  # a cell's second line in a fixed-width table is indented
        elif (
            lines
            and lines[-1][2] in ("row", "cont")
            and "|" not in text
            and _GAP_ROW.search(passage, lines[-1][0], lines[-1][1])
            and not _LINE_ITEM.match(text)
        ):
            kind = "cont"  # a wrapped cell of a fixed-width table, its indentation normalised
        elif _all_caps(text):
            kind = "heading"  # "1. WHAT IS A KEY ACCOUNT?" in plain-text documents
        elif _LINE_ITEM.match(text):
            kind = "item"
        else:
            kind = "text"
        if (
            kind == "rule"
            and lines
            and lines[-1][2] in ("text", "item")
            and set(text.strip()) <= set("=-")
        ):
            lines[-1] = (lines[-1][0], lines[-1][1], "heading")  # a Setext underline
        lines.append((pos, pos + len(content), kind))
        pos += len(raw)
    return lines


def _all_caps(text: str) -> bool:
    if not text.isupper() or len(text.strip()) > 80:
        return False
    return sum(c.isalpha() for c in text) >= 3


def _continues(passage: str, previous: tuple[int, int, str], line: tuple[int, int, str]) -> bool:
    """Whether a plain line continues the paragraph or list item above it (wrapped text)."""
    before = passage[previous[0] : previous[1]].strip()
    after = passage[line[0] : line[1]].strip()
    if _LINE_LABEL.match(before) and _LINE_LABEL.match(after):
        return False  # "Head of Key Accounts: Jana Wolff" lines, one fact each
    # A short label line above a new sentence ("Radkurier Rhein-Ruhr AG" / "Largest ...").
    return not (len(before) < 45 and after[:1].isupper() and not before.endswith((",", ";", "(")))


def _units(passage: str) -> list[_Unit]:
    """Sentence-like units of a passage: sentences of paragraphs and list items, table rows,
    headings. Offsets are exact; leading list, heading and table markers are left outside."""
    units: list[_Unit] = []
    block: list[int] | None = None  # [start, end, kind-is-item]
    header: tuple[int, int] | None = None
    previous: tuple[int, int, str] | None = None

    def close() -> None:
        nonlocal block
        if block is not None:
            units.extend(_sentences(passage, block[0], block[1], "item" if block[2] else "text"))
            block = None

    for line in _lines(passage):
        start, end, kind = line
        if kind not in ("row", "cont", "rule", "blank") or (
            # A blank line inside a table keeps its header for rows of as many cells after it.
            kind == "row"
            and previous is not None
            and previous[2] == "blank"
            and header is not None
            and _cells(passage, start, end) != _cells(passage, *header)
        ):
            header = None
        if kind == "cont":
            # The wrapped line belongs to the row above it.
            span = _trim(passage, start, end)
            if span and units and units[-1].kind == "row":
                units[-1] = dataclasses.replace(units[-1], end=span[1])
        elif kind in ("blank", "rule"):
            close()
        elif kind in ("heading", "row"):
            close()
            span = _trim(passage, start, end)
            if span:
                if kind == "row" and header is None:
                    header = span
                    units.append(_Unit(*span, kind))
                else:
                    units.append(_Unit(*span, kind, header if kind == "row" else None))
        elif kind == "item":
            close()
            block = [start, end, 1]
        elif block is not None and previous is not None and _continues(passage, previous, line):
            block[1] = end
        else:
            close()
            block = [start, end, 0]
        previous = line
    close()
    return units


_CELL_GAP = re.compile(r"[ \t]*\|[ \t]*|\t+| {2,}")


def _cells(passage: str, start: int, end: int) -> int:
    """How many cells a table row has (between pipes, tabs or runs of spaces)."""
    text = passage[start:end].strip().strip("|").strip()
    return len(_CELL_GAP.split(text))


def _trim(passage: str, start: int, end: int) -> tuple[int, int] | None:
    start = _MARKER.match(passage, start, end).end()
    while end > start and (passage[end - 1].isspace() or passage[end - 1] == "|"):
        end -= 1
    return (start, end) if start < end else None


def _sentences(passage: str, start: int, end: int, kind: str) -> list[_Unit]:
    units: list[_Unit] = []
    start = _MARKER.match(passage, start, end).end()  # "1." of a list item ends no sentence
    cursor = start
    for m in _SENT_END.finditer(passage, start, end):
        after = m.end()
        while after < end and passage[after].isspace():
            after += 1
        if after >= end or not _splits(passage, start, m.start(), after):
            continue
        span = _trim(passage, cursor, m.end())
        if span:
            units.append(_Unit(*span, kind))
        cursor = after
    span = _trim(passage, cursor, end)
    if span:
        units.append(_Unit(*span, kind))
    return units


def _splits(passage: str, block_start: int, stop: int, after: int) -> bool:
    """Whether the punctuation at `stop` ends a sentence; `after` is the next visible char."""
    following = passage[after]
    if not (following.isupper() or following.isdigit() or following in "\"'\u201c\u2018([*#-•"):
        return False
    word = re.search(r"(\S+)$", passage[max(block_start, stop - 20) : stop])
    if word is None or passage[stop] != ".":
        return True
    token = word.group(1).lstrip("([\"'\u201c\u2018").casefold()
    if token in _ABBREV_NEVER or re.fullmatch(r"[a-z]|(?:[a-z]\.)+[a-z]?", token):
        return False  # e.g. / i.e. / a single initial
    if following.isdigit() and (token in _ABBREV_BEFORE_DIGIT or re.fullmatch(r"\d{1,2}", token)):
        return False  # "No. 4", "approx. 400", "31. 12"
    return not re.fullmatch(r"\d{1,2}\.\d{1,2}", token)  # "31.03. 2025"


# --- quote selection ---------------------------------------------------------------------------

# General question words and the kind of figure that answers them; no document vocabulary.
_CUES: list[tuple[re.Pattern[str], frozenset[str]]] = [
    (
        re.compile(
            r"\bhow much\b|\b(?:cost|costs|price|prices|priced|pay|paid|pays|fee|fees|amount|"
            r"rate|rates|reimburs\w*|allowance|expensive|charge|charged|salary|budget|spend)\b"
        ),
        frozenset({"amount", "number"}),
    ),
    (
        re.compile(
            r"\bwhen\b|\bwhat time\b|\bwhich day\b|\bwhat day\b|\bdeadline\b|\bdates?\b|"
            r"\bby when\b|\bhours\b|\bopen\b|\bclose[sd]?\b|\buntil\b|\bhow late\b|\bhow early\b"
        ),
        frozenset({"date", "time"}),
    ),
    (
        re.compile(
            r"\bhow (?:many|long|often|far|old|big|high|low|much)\b|\bnumber of\b|\bminimum\b|"
            r"\bmaximum\b|\bat least\b|\bat most\b|\blimit\b|\bthreshold\b"
        ),
        frozenset({"number", "amount", "percent"}),
    ),
    (re.compile(r"\bpercent\w*\b|%|\bshare\b|\bdiscount\b"), frozenset({"percent"})),
    (re.compile(r"\bwho\b|\bwhom\b|\bwhose\b|\bcontact\b"), frozenset({"name", "code"})),
    (
        re.compile(r"\b(?:phone|call|ring|dial|extension|number to|hotline|reach)\b"),
        frozenset({"number"}),
    ),
    (re.compile(r"\bwhich\b|\bwhat\b.*\b(?:called|named|code|id)\b"), frozenset({"code", "name"})),
]


# Which kinds of figure a sentence holds, roughly: figures_in is exact but would cost most of
# quote_select's time budget, and a preference only needs a hint.
_KIND_HINTS = re.compile(
    # Figures start with a digit, a capital or a currency sign: the lookahead lets the engine
    # skip every other position cheaply.
    r"(?=[0-9A-Z€$£])(?:"
    r"(?P<amount>(?:\b(?:EUR|USD|GBP|CHF)|[€$£])[ \u00a0]?\d"
    r"|\d[ \u00a0]?(?:EUR|[Ee]uros?|[€$£]))"
    r"|(?P<percent>\d[ \u00a0]?(?:%|per ?cent\b))"
    r"|(?P<time>\b\d{1,2}[:.][0-5]\d\b|\b\d{1,2} ?(?:am|pm|a\.m\.|p\.m\.))"
    rf"|(?P<date>{_MONTH}|\b\d{{4}}-\d\d-\d\d\b|\b(?:19|20)\d\d\b)"
    r"|(?P<code>\b[A-Z]+\d|\b[A-Z]{2,}-[A-Z0-9])"
    r"|(?P<number>\d)"
    r"|(?P<name>(?<=[a-z,;] )[A-Z][a-z]+))"
)
# Counts written as words ("three months") hint at a number too; matched on a unit's terms.
_NUMBER_WORD_TERMS = frozenset(_stem(w) for w in _WORD_VALUES if w not in ("a", "one")) | {
    "hundr",
    "thousand",
}


@dataclass
class _Candidate:
    passage: int
    position: int  # index in the passage's units
    unit: _Unit
    terms: set[str]
    header_terms: set[str]
    kinds: set[str]
    score: float = 0.0
    own: float = 0.0


def _candidates(passages: Sequence[str]) -> list[list[_Candidate]]:
    result: list[list[_Candidate]] = []
    for p, passage in enumerate(passages):
        units = _units(passage)
        starts = [u.start for u in units]
        kinds: list[set[str]] = [set() for _ in units]
        for m in _KIND_HINTS.finditer(passage):
            i = bisect.bisect_right(starts, m.start()) - 1
            if i >= 0 and m.start() < units[i].end and m.lastgroup:
                kinds[i].add(m.lastgroup)
        header_terms: dict[tuple[int, int], set[str]] = {}
        row: list[_Candidate] = []
        for i, unit in enumerate(units):
            header: set[str] = set()
            if unit.header is not None:
                if unit.header not in header_terms:
                    header_terms[unit.header] = _terms(passage[unit.header[0] : unit.header[1]])
                header = header_terms[unit.header]
            terms = _terms(passage[unit.start : unit.end])
            if terms & _NUMBER_WORD_TERMS:
                kinds[i].add("number")
            row.append(_Candidate(p, i, unit, terms, header - terms, kinds[i]))
        result.append(row)
    return result


def _matches(question_terms: set[str], vocabulary: set[str]) -> dict[str, dict[str, float]]:
    """For each question term, the vocabulary terms it matches and how well (exact or a close
    prefix: approv / approval)."""
    by_prefix: dict[str, list[str]] = {}
    for v in vocabulary:
        if len(v) >= 5:
            by_prefix.setdefault(v[:5], []).append(v)
    matches: dict[str, dict[str, float]] = {}
    for q in question_terms:
        found: dict[str, float] = {q: 1.0} if q in vocabulary else {}
        for v in by_prefix.get(q[:5], ()) if len(q) >= 5 else ():
            if v != q and abs(len(v) - len(q)) <= 3 and (v.startswith(q) or q.startswith(v)):
                found[v] = 0.8
        if found:
            matches[q] = found
    return matches


def _similarities(
    similarity: Callable[[list[str]], Sequence[float]],
    passages: Sequence[str],
    flat: list[_Candidate],
    lexical: list[float],
) -> dict[int, float]:
    """Similarity to the question of a pool of candidates (index in `flat` -> cosine): the best
    half of the pool by shared words, the rest in passage order (the best passages first)."""
    heads = {(c.passage, c.unit.header[0]) for c in flat if c.unit.header is not None}
    ranked = sorted(
        (
            i
            for i, score in enumerate(lexical)
            if score > 0 and (flat[i].passage, flat[i].unit.start) not in heads
        ),
        key=lambda i: -lexical[i],
    )
    pool = ranked[: SEMANTIC_POOL // 2]
    for i, c in enumerate(flat):
        if len(pool) >= SEMANTIC_POOL:
            break
        if i not in pool and c.unit.kind != "heading" and (c.passage, c.unit.start) not in heads:
            pool.append(i)
    texts = []
    for i in pool:
        c = flat[i]
        passage = passages[c.passage]
        text = passage[c.unit.start : c.unit.end]
        if c.unit.header is not None:  # a table row means little without its header
            text = passage[c.unit.header[0] : c.unit.header[1]] + "\n" + text
        # Cut: the embedding's cost grows with the longest text of the batch.
        texts.append(text[:_SEMANTIC_CHARS])
    return dict(zip(pool, (float(v) for v in similarity(texts)), strict=True))


def _overlap(terms: set[str], matches: dict[str, dict[str, float]], idf: dict[str, float]) -> float:
    total = 0.0
    for q, found in matches.items():
        best = max((weight for v, weight in found.items() if v in terms), default=0.0)
        total += best * idf[q]
    return total


# With a similarity function, the quote is chosen by meaning as well as by shared words: a
# question in other words than the document ("vacation days" / "annual leave") shares no word
# with its answer. Only a pool of candidates is embedded (a sentence costs the embedding model
# 5-10 ms on this CPU, more for long ones): the best by shared words, then the sentences of the
# best passages.
SEMANTIC_POOL = 10
_LEXICAL_WEIGHT = 0.35  # of the lexical score, normalised to the best candidate's
_SEMANTIC_CHARS = 240
_MIN_SIMILARITY = 0.3  # below this, a sentence sharing no word with the question is no quote


def quote_select(
    *,
    question: str,
    passages: Sequence[str],
    max_sentences: int = 2,
    max_chars: int = 360,
    similarity: Callable[[list[str]], Sequence[float]] | None = None,
    passage_scores: list[float] | None = None,
) -> Quote | None:
    """The sentence (or adjacent sentences) of `passages` that best answers `question`.

    Lexical: content words of the question (stemmed, stopwords dropped) weighted by their IDF
    over the candidate sentences; a table row also counts its header row at half weight; a
    sentence holding the kind of figure the question asks for (how much, when, who, ...) is
    preferred, and earlier passages a little. None when no sentence shares a content word.
    The next sentence joins the quote when it also matches, within `max_chars`.

    `similarity(texts)`, when given, returns each text's cosine similarity to the question (the
    embedding model's); a pool of up to SEMANTIC_POOL candidates is then ranked by similarity
    plus a share of the lexical score, and a sentence sharing no word with the question may be
    the quote when it is similar enough.

    `passage_scores` (one 0.0 per passage), when given, receives each passage's best sentence
    score: how well the passage answers, by its best sentence rather than as a whole.
    """
    question_terms = _terms(question)
    if (not question_terms and similarity is None) or not passages:
        return None
    table = _candidates(passages)
    flat = [c for row in table for c in row]
    if not flat:
        return None
    vocabulary: set[str] = set()
    document_frequency: dict[str, int] = {}
    for c in flat:
        vocabulary |= c.terms | c.header_terms
        for term in c.terms:
            document_frequency[term] = document_frequency.get(term, 0) + 1
    matches = _matches(question_terms, vocabulary)
    if not matches and similarity is None:
        return None
    n = len(flat)
    idf: dict[str, float] = {}
    for q, found in matches.items():
        df = max(document_frequency.get(v, 0) for v in found)
        idf[q] = math.log(1 + (n - df + 0.5) / (df + 0.5))
    lowered = question.casefold()
    wanted: set[str] = set()
    for pattern, kinds in _CUES:
        if pattern.search(lowered):
            wanted |= kinds
    average = sum(len(c.terms) for c in flat) / n or 1.0
    lexical: list[float] = []
    for c in flat:
        c.own = _overlap(c.terms, matches, idf)
        score = c.own + 0.5 * _overlap(c.header_terms, matches, idf)
        if score > 0 and len(c.terms) > average:
            # Long sentences match more words by chance; a mild length penalty evens that out.
            score /= (len(c.terms) / average) ** 0.25
        lexical.append(score)
    similar: dict[int, float] = {}
    if similarity is not None:
        similar = _similarities(similarity, passages, flat, lexical)
        top = max(lexical, default=0.0) or 1.0
    # A table's header row names the columns; it never answers.
    headers = {(c.passage, c.unit.header) for c in flat if c.unit.header is not None}
    best: _Candidate | None = None
    for i, c in enumerate(flat):
        if (c.passage, (c.unit.start, c.unit.end)) in headers:
            continue
        score = lexical[i]
        if similarity is not None:
            if i not in similar:
                continue
            if score <= 0 and similar[i] < _MIN_SIMILARITY:
                continue
            score = similar[i] + _LEXICAL_WEIGHT * score / top
        if score <= 0:
            continue
        if c.unit.kind == "heading":
            score *= 0.4  # a heading names the topic, it does not answer
        if wanted:
            score *= 1.5 if c.kinds & wanted else 0.85
        score *= 1.0 / (1.0 + 0.08 * c.passage)
        c.score = score
        if passage_scores is not None:
            passage_scores[c.passage] = max(passage_scores[c.passage], score)
        if best is None or score > best.score:
            best = c
    if best is None:
        return None
    passage = passages[best.passage]
    start, end = best.unit.start, best.unit.end
    if end - start > max_chars:
        start, end = _window(passage, start, end, max_chars, matches, idf)
    else:
        row = table[best.passage]
        taken = 1
        for following in row[best.position + 1 :]:
            # A continuation: the next sentence of the same paragraph or list item (nothing but
            # spaces between), matching the question on its own words nearly as well.
            if (
                taken >= max_sentences
                or best.unit.kind not in ("text", "item")
                or following.unit.kind != best.unit.kind
                or not passage[end : following.unit.start].isspace()
                or following.own < 0.5 * best.own
                or following.unit.end - start > max_chars
            ):
                break
            end = following.unit.end
            taken += 1
    return Quote(best.passage, passage[start:end], start, end, round(best.score, 4))


def _window(
    passage: str,
    start: int,
    end: int,
    max_chars: int,
    matches: dict[str, dict[str, float]],
    idf: dict[str, float],
) -> tuple[int, int]:
    """The `max_chars` stretch of words within [start, end) that matches the question best;
    of equally good ones, the one with its matching words nearest the middle (so the figure
    after "the hotel limit in Munich is" stays in)."""
    words = [(start + m.start(), start + m.end()) for m in re.finditer(r"\S+", passage[start:end])]
    terms = [_terms(passage[a:b]) for a, b in words]
    matching = [_overlap(t, matches, idf) > 0 for t in terms]
    best_span, best_rank = (words[0][0], min(words[0][1], words[0][0] + max_chars)), (-1.0, 0)
    for i, (word_start, _) in enumerate(words):
        j = i
        while j + 1 < len(words) and words[j + 1][1] - word_start <= max_chars:
            j += 1
        span = (word_start, min(words[j][1], word_start + max_chars))
        inside = set().union(*terms[i : j + 1])
        score = _overlap(inside, matches, idf)
        hits = [k for k in range(i, j + 1) if matching[k]]
        margin = min(words[hits[0]][0] - span[0], span[1] - words[hits[-1]][1]) if hits else 0
        if (score, margin) > best_rank:
            best_span, best_rank = span, (score, margin)
        if words[j][1] >= end:
            break
    return best_span


def excerpt_around(passage: str, start: int, end: int, *, max_chars: int) -> str:
    """Whole sentences of `passage` around [start, end), grown outward alternately (before,
    after, ...) while the excerpt stays within `max_chars`. Always contains passage[start:end]
    exactly; when the sentences holding it are already longer, words are added instead.

    A table row's excerpt that does not reach up to its header row starts with that row (and a
    line break), room permitting: a row far down a table means little without its column names.
    """
    if not 0 <= start <= end <= len(passage):
        raise ValueError("start and end must lie within the passage")
    if end - start >= max_chars:
        return passage[start:end]
    units = _units(passage)
    inside = [i for i, u in enumerate(units) if u.start < max(end, start + 1) and u.end > start]
    if not inside:
        return _grow_words(passage, start, end, max_chars)
    first, last = inside[0], inside[-1]
    low, high = min(start, units[first].start), max(end, units[last].end)
    if high - low > max_chars:
        return _grow_words(passage, start, end, max_chars)
    core = (low, high)
    low, high = _grow_units(units, first, last, *core, max_chars)
    header = units[first].header
    if header is not None and header[0] < low:
        room = max_chars - (header[1] - header[0]) - 1
        if core[1] - core[0] <= room:
            low, high = _grow_units(units, first, last, *core, room)
            return passage[header[0] : header[1]] + "\n" + passage[low:high]
    return passage[low:high]


def _grow_units(
    units: list[_Unit], first: int, last: int, low: int, high: int, max_chars: int
) -> tuple[int, int]:
    """[low, high) grown by whole units, one before and one after in turn, within max_chars."""
    before, after = first - 1, last + 1
    open_before, open_after = before >= 0, after < len(units)
    take_before = True
    while open_before or open_after:
        if take_before and open_before:
            if high - units[before].start <= max_chars:
                low = units[before].start
                before -= 1
                open_before = before >= 0
            else:
                open_before = False
        elif not take_before and open_after:
            if units[after].end - low <= max_chars:
                high = units[after].end
                after += 1
                open_after = after < len(units)
            else:
                open_after = False
        take_before = not take_before
    return low, high


def _grow_words(passage: str, start: int, end: int, max_chars: int) -> str:
    low, high = start, end
    grew = True
    while grew:
        grew = False
        left = re.search(r"\S+\s*$", passage[max(0, low - 40) : low])
        if left and high - (low - len(left.group())) <= max_chars:
            low -= len(left.group())
            grew = True
        right = re.match(r"\s*\S+", passage[high : high + 40])
        if right and high + len(right.group()) - low <= max_chars:
            high += len(right.group())
            grew = True
    return passage[low:high]
