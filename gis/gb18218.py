"""GB 18218-2018 危险化学品重大危险源辨识: identification (4.2) and grading (4.3).

Pure Python, no database and no HTTP. The tables are CSV files in ``gis/data``:

``gb18218_table1.csv``
    Table 1, the 85 named chemicals with their critical quantity Q in tonnes. ``beta`` holds
    the Table 3 value for the named toxic gases (rows with a ``beta`` and no ``hazard_class``);
    otherwise it is the Table 4 value of the row's ``hazard_class``, which is our own
    classification and not part of the standard. ``note`` holds the standard's 别名 (aliases).
``gb18218_classes.csv``
    Tables 2 and 4: Q and β for each hazard class J1 … W11.

Rules implemented (docs/gb18218.md gives the sources):

* Q: a chemical in Table 1 takes its Table 1 value; any other chemical takes the Table 2 value
  of its hazard class, and the lowest one when it has several classes.
* S = Σ q/Q; the unit is a major hazard installation when S ≥ 1 (4.2, formula 1). For one
  substance this is q ≥ Q. q is the design maximum inventory in tonnes.
* Mixtures (4.2.3): a mixture in the same hazard class as its pure substance counts as that
  substance, with the whole mixture quantity: pass the pure substance's name and the mixture's
  q. A mixture in a different class takes the Q of its own class: pass the mixture under its
  own name with ``hazard_class``.
* β: Table 3 for the named toxic gases, otherwise Table 4 by hazard class. The standard gives
  no default β and says nothing about several classes; here β is the largest Table 4 value of
  the classes (conservative), and a chemical with no class cannot be graded.
* R = α·Σ β·q/Q (4.3, formula 2) with α from Table 5 and the level from Table 6. Only a major hazard
  installation (S ≥ 1) gets a level.

Sums are computed exactly on the decimal values given, so S = 1 or R = 100 fall on the
boundary as the standard means them.
"""

from __future__ import annotations

import csv
import numbers
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from types import MappingProxyType

from gis.errors import AnalysisError, UnknownSubstanceError

_DATA = Path(__file__).with_name("data")

# Common names that are not in the standard's 别名 column, by Table 1 row (seq).
_EXTRA_ALIASES: dict[int, tuple[str, ...]] = {
    6: ("phosgene",),
    11: ("氯化氢", "hydrogen chloride"),
    13: ("煤气", "一氧化碳", "coal gas", "carbon monoxide"),
    29: ("ethyleneimine", "aziridine"),
    # the short forms of the two 硝酸铵 rows (the table's full name for 43 is seldom written out; a short name
    # that matched no row was graded by its Table 2 class instead: Q 50 t for W9.1 where Table 1 says 5 t)
    43: ("硝酸铵(含可燃物>0.2%)", "硝酸铵(可燃物>0.2%)", "Ammonium nitrate with >0.2% combustible substances",
         "Ammonium nitrate, >0.2% combustible"),
    44: ("硝酸铵(可燃物≤0.2%)", "Ammonium nitrate, ≤0.2% combustible"),
    49: ("甲烷", "天然气", "methane", "natural gas"),
    52: ("液化石油气", "液化气", "丙烷", "丁烷", "LPG", "liquefied petroleum gas", "propane", "butane"),
    56: ("氧", "oxygen"),
    66: ("汽油", "乙醇汽油", "甲醇汽油", "gasoline", "petrol"),
}

# Table 5: (fewest exposed people, α), checked from the top.
_ALPHA = ((100, 2.0), (50, 1.5), (30, 1.2), (1, 1.0), (0, 0.5))
# Table 6: (lowest R, level); below the last bound the level is 4 (四级).
_LEVELS = ((100, 1), (50, 2), (10, 3))


@dataclass(frozen=True)
class Table1Entry:
    """One row of GB 18218-2018 Table 1 (see ``gb18218_table1.csv``)."""

    seq: int
    name_zh: str
    name_en: str
    cas: tuple[str, ...]
    un_numbers: tuple[str, ...]
    Q: float
    hazard_classes: tuple[str, ...]
    beta: float | None
    aliases: tuple[str, ...]

    @property
    def in_table3(self) -> bool:
        """True for the toxic gases named in Table 3, whose β is fixed there."""
        return self.beta is not None and not self.hazard_classes


@dataclass(frozen=True)
class HazardClass:
    """One hazard class of Tables 2 and 4."""

    code: str
    description_zh: str
    description_en: str
    Q: float
    beta: float


@dataclass(frozen=True)
class Substance:
    """A hazardous chemical present in one production or storage unit.

    ``q`` is the design maximum quantity in tonnes. ``hazard_class`` is one Table 2 code
    (``"W5.4"``), several joined by ``;`` or a sequence of codes.
    """

    name: str
    q: float
    cas: str | None = None
    un_number: str | None = None
    hazard_class: str | Sequence[str] | None = None


@dataclass(frozen=True)
class SubstanceResult:
    """Q and β used for one substance, and which table each came from (``source``)."""

    name: str
    cas: str | None
    q: float
    Q: float
    beta: float
    source: str


@dataclass(frozen=True)
class GradingResult:
    """Outcome of :func:`grade`; ``level`` is 1 (一级) … 4 (四级), or None when S < 1."""

    S: float
    R: float
    alpha: float
    level: int | None
    is_major: bool
    substances: tuple[SubstanceResult, ...]
    exposed_people: int


def _split(cell: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in cell.split(";") if part.strip())


def _norm(text: str) -> str:
    """Fold width, case and spaces so that 'ＬＰＧ', 'lpg' and 'H₂' match 'LPG' and 'H2'."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def _norm_un(un_number: str) -> str:
    text = _norm(un_number)
    return (text[2:] if text.startswith("un") else text).zfill(4)


@cache
def _table1() -> dict[int, Table1Entry]:
    with open(_DATA / "gb18218_table1.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        int(r["seq"]): Table1Entry(
            seq=int(r["seq"]),
            name_zh=r["name_zh"],
            name_en=r["name_en"],
            cas=_split(r["cas"]),
            un_numbers=_split(r["un_number"]),
            Q=float(r["q_tonnes"]),
            hazard_classes=_split(r["hazard_class"]),
            beta=float(r["beta"]) if r["beta"] else None,
            aliases=_split(r["note"]),
        )
        for r in rows
    }


@cache
def hazard_classes() -> MappingProxyType[str, HazardClass]:
    """Tables 2 and 4 keyed by class code.

    Examples
    --------
    >>> hazard_classes()["W2"].Q, hazard_classes()["W2"].beta
    (10.0, 1.5)
    """
    with open(_DATA / "gb18218_classes.csv", encoding="utf-8", newline="") as f:
        return MappingProxyType({
            r["hazard_class"]: HazardClass(
                r["hazard_class"], r["description_zh"], r["description_en"],
                float(r["q_tonnes"]), float(r["beta"]),
            )
            for r in csv.DictReader(f)
        })


@cache
def _indexes() -> tuple[dict[str, set[int]], dict[str, set[int]], dict[str, set[int]]]:
    by_name: dict[str, set[int]] = defaultdict(set)
    by_cas: dict[str, set[int]] = defaultdict(set)
    by_un: dict[str, set[int]] = defaultdict(set)
    for e in _table1().values():
        for name in (e.name_zh, e.name_en, *e.aliases, *_EXTRA_ALIASES.get(e.seq, ())):
            by_name[_norm(name)].add(e.seq)
        for cas in e.cas:
            by_cas[cas].add(e.seq)
        for un in e.un_numbers:
            by_un[un].add(e.seq)
    return dict(by_name), dict(by_cas), dict(by_un)


def _describe(name: str | None, cas: str | None, un_number: str | None) -> str:
    parts = [repr(name)] if name else []
    parts += [f"CAS {cas}"] if cas else []
    parts += [f"UN {un_number}"] if un_number else []
    return " / ".join(parts) or "a substance with no name, CAS or UN number"


def lookup(
    name: str | None = None, cas: str | None = None, un_number: str | None = None
) -> Table1Entry | None:
    """Find a chemical in Table 1 by name (Chinese, English or alias), CAS or UN number.

    Identifiers that match nothing are ignored; those that match must agree on one row.

    Parameters
    ----------
    name : str, optional
        Table 1 name, English name, one of the standard's 别名 or a common name
        (液化石油气/LPG, 天然气, 一氧化碳, 汽油 …). Width, case and spaces do not matter.
    cas : str, optional
        CAS registry number, e.g. ``"7782-50-5"``.
    un_number : str, optional
        UN number, with or without the ``UN`` prefix.

    Returns
    -------
    Table1Entry or None
        None when no identifier is in Table 1.

    Raises
    ------
    UnknownSubstanceError
        When the identifiers match several rows (e.g. the CAS shared by the two 硝酸铵 rows)
        or disagree with each other.

    Examples
    --------
    >>> lookup("液氯").name_zh, lookup(cas="75-44-5").name_zh, lookup(un_number="UN1075").seq
    ('氯', '碳酰氯', 52)
    >>> lookup("柴油") is None
    True
    """
    by_name, by_cas, by_un = _indexes()
    keys = (
        (by_name, _norm(name) if name else None),
        (by_cas, cas.strip() if cas else None),
        (by_un, _norm_un(un_number) if un_number else None),
    )
    hits = [index[key] for index, key in keys if key and key in index]
    if not hits:
        return None
    seqs = set.intersection(*hits)
    if len(seqs) != 1:
        rows = ", ".join(f"#{s} {_table1()[s].name_zh}" for s in sorted(set.union(*hits)))
        raise UnknownSubstanceError(
            f"{_describe(name, cas, un_number)} does not single out one GB 18218-2018 "
            f"Table 1 row ({rows}); give the full Table 1 name"
        )
    return _table1()[seqs.pop()]


def _classes_of(substance: Substance) -> tuple[str, ...]:
    raw = substance.hazard_class
    if raw is None:
        return ()
    items = raw.replace(",", ";").split(";") if isinstance(raw, str) else raw
    codes = tuple(dict.fromkeys(c.strip().upper() for c in items if c.strip()))
    unknown = [c for c in codes if c not in hazard_classes()]
    if unknown:
        raise AnalysisError(
            f"unknown GB 18218-2018 hazard class {', '.join(unknown)} for {substance.name!r}; "
            f"expected one of {', '.join(hazard_classes())}"
        )
    return codes


def _resolve(substance: Substance) -> tuple[Table1Entry | None, tuple[str, ...]]:
    return lookup(substance.name, substance.cas, substance.un_number), _classes_of(substance)


def _unknown(substance: Substance, what: str) -> UnknownSubstanceError:
    return UnknownSubstanceError(
        f"{_describe(substance.name, substance.cas, substance.un_number)} {what}; give its "
        f"hazard_class (Table 2 code, e.g. 'W5.3' or 'J3;W2')"
    )


def _q(
    substance: Substance, entry: Table1Entry | None, classes: tuple[str, ...]
) -> tuple[float, str]:
    if entry is not None:
        return entry.Q, f"Table 1 #{entry.seq}"
    if not classes:
        raise _unknown(substance, "is not in GB 18218-2018 Table 1")
    code = min(classes, key=lambda c: hazard_classes()[c].Q)
    return hazard_classes()[code].Q, f"Table 2 {code}"


def _beta(
    substance: Substance, entry: Table1Entry | None, classes: tuple[str, ...]
) -> tuple[float, str]:
    if entry is not None and entry.in_table3:
        return entry.beta, "Table 3"
    classes = classes or (entry.hazard_classes if entry is not None else ())
    if not classes:
        raise _unknown(substance, "is not in Table 3 and has no hazard class for Table 4 β")
    code = max(classes, key=lambda c: hazard_classes()[c].beta)
    return hazard_classes()[code].beta, f"Table 4 {code}"


def critical_quantity(substance: Substance) -> float:
    """Critical quantity Q in tonnes: Table 1, else the lowest Table 2 value of its classes.

    Parameters
    ----------
    substance : Substance
        Identified by name, CAS or UN number; ``hazard_class`` is needed only when the
        chemical is not in Table 1.

    Returns
    -------
    float
        Q in tonnes.

    Raises
    ------
    UnknownSubstanceError
        When the chemical is not in Table 1 and has no hazard class.

    Examples
    --------
    >>> critical_quantity(Substance("光气", q=0.1))
    0.3
    >>> critical_quantity(Substance("柴油", q=800, hazard_class="W5.4"))
    5000.0
    >>> critical_quantity(Substance("X", q=1, hazard_class="J3;W2"))  # lowest of 50 and 10
    10.0
    """
    entry, classes = _resolve(substance)
    return _q(substance, entry, classes)[0]


def beta_for(substance: Substance) -> float:
    """Correction factor β (4.3): Table 3 for the named toxic gases, else Table 4 by class.

    A ``hazard_class`` given by the caller overrides the class stored for a Table 1 row
    (e.g. a flammable liquid handled above its boiling point is W5.1); with several classes
    the largest β is used.

    Raises
    ------
    UnknownSubstanceError
        When β cannot be set: not in Table 3 and no hazard class known.

    Examples
    --------
    >>> beta_for(Substance("氯", q=1)), beta_for(Substance("LPG", q=1))
    (4.0, 1.5)
    >>> beta_for(Substance("苯", q=1, hazard_class="W5.1"))
    1.5
    """
    entry, classes = _resolve(substance)
    return _beta(substance, entry, classes)[0]


def assess(substance: Substance) -> SubstanceResult:
    """Q and β of one substance together with where they come from.

    Examples
    --------
    >>> r = assess(Substance("液氨", q=20))
    >>> r.name, r.cas, r.Q, r.beta, r.source
    ('氨', '7664-41-7', 10.0, 2.0, 'Q: Table 1 #1; β: Table 3')
    """
    entry, classes = _resolve(substance)
    Q, q_source = _q(substance, entry, classes)
    beta, beta_source = _beta(substance, entry, classes)
    return SubstanceResult(
        name=entry.name_zh if entry else substance.name,
        cas=substance.cas or (entry.cas[0] if entry and entry.cas else None),
        q=substance.q,
        Q=Q,
        beta=beta,
        source=f"Q: {q_source}; β: {beta_source}",
    )


def _exact(value: float) -> Fraction:
    try:
        return Fraction(str(value))
    except ValueError as exc:
        raise AnalysisError(f"not a finite number: {value!r}") from exc


def _ratio(q: float, Q: float) -> Fraction:
    exact_q = _exact(q)
    if exact_q < 0:
        raise AnalysisError(f"negative quantity q = {q!r} t")
    return exact_q / _exact(Q)


def identification_index(substances: Iterable[Substance]) -> float:
    """Identification index S = q1/Q1 + … + qn/Qn (4.2, formula 1).

    The unit is a major hazard installation when S ≥ 1; with one substance this is q ≥ Q.

    Parameters
    ----------
    substances : iterable of Substance
        Everything in one production or storage unit, q in tonnes (design maximum).

    Returns
    -------
    float
        S (dimensionless).

    Examples
    --------
    >>> identification_index([Substance("氯", q=2), Substance("氨", q=5)])  # 2/5 + 5/10
    0.9
    """
    return float(sum((_ratio(s.q, critical_quantity(s)) for s in substances), Fraction(0)))


def alpha_for_population(n_people: int) -> float:
    """Correction factor α for the people exposed outside the plant (Table 5).

    How they are counted is the caller's choice; the standard's clause counts the resident
    population within 500 m of the plant boundary.

    Parameters
    ----------
    n_people : int
        Number of people, ≥ 0.

    Returns
    -------
    float
        0.5 (nobody), 1.0 (1–29), 1.2 (30–49), 1.5 (50–99) or 2.0 (100 or more).

    Examples
    --------
    >>> [alpha_for_population(n) for n in (0, 29, 30, 50, 100)]
    [0.5, 1.0, 1.2, 1.5, 2.0]
    """
    if isinstance(n_people, bool) or not isinstance(n_people, numbers.Integral) or n_people < 0:
        raise AnalysisError(f"exposed people must be a whole number ≥ 0, got {n_people!r}")
    return next(alpha for lowest, alpha in _ALPHA if n_people >= lowest)


def level_for_r(R: float) -> int:
    """Grade (Table 6): 1 (一级) R ≥ 100; 2 (二级) 50 ≤ R < 100; 3 (三级) 10 ≤ R < 50; 4 (四级) R < 10.

    Examples
    --------
    >>> [level_for_r(r) for r in (100, 99.9, 50, 10, 9.9)]
    [1, 2, 2, 3, 4]
    """
    return next((level for lowest, level in _LEVELS if R >= lowest), 4)


def grade(substances: Iterable[Substance], exposed_people: int) -> GradingResult:
    """Identify (4.2) and grade (4.3) one production or storage unit.

    R = α·(β1·q1/Q1 + … + βn·qn/Qn) (formula 2). R is always computed; ``level`` is None
    when S < 1, since only a major hazard installation is graded.

    Parameters
    ----------
    substances : iterable of Substance
        Everything in the unit, q in tonnes (design maximum).
    exposed_people : int
        People exposed outside the plant (Table 5), e.g. within 500 m of the plant boundary.

    Returns
    -------
    GradingResult

    Raises
    ------
    UnknownSubstanceError
        When Q or β cannot be set for a substance.
    AnalysisError
        For a negative quantity, an unknown hazard class or a bad number of people.

    Examples
    --------
    >>> r = grade([Substance("液氯", q=20), Substance("液氨", q=50)], exposed_people=60)
    >>> r.S, r.R, r.alpha, r.level  # S = 20/5 + 50/10; R = 1.5 × (4×4 + 2×5)
    (9.0, 39.0, 1.5, 3)
    """
    alpha = alpha_for_population(exposed_people)
    results = tuple(assess(s) for s in substances)
    S = sum((_ratio(r.q, r.Q) for r in results), Fraction(0))
    R = _exact(alpha) * sum((_exact(r.beta) * _ratio(r.q, r.Q) for r in results), Fraction(0))
    return GradingResult(
        S=float(S),
        R=float(R),
        alpha=alpha,
        level=level_for_r(R) if S >= 1 else None,
        is_major=S >= 1,
        substances=results,
        exposed_people=exposed_people,
    )
