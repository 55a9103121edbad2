"""GB 18218-2018 identification and grading, checked against hand-worked examples."""

from __future__ import annotations

import csv
import doctest
from pathlib import Path

import pytest

from gis import gb18218
from gis.errors import AnalysisError, UnknownSubstanceError
from gis.gb18218 import (
    Substance,
    alpha_for_population,
    assess,
    beta_for,
    critical_quantity,
    grade,
    hazard_classes,
    identification_index,
    level_for_r,
    lookup,
)

DATA = Path(gb18218.__file__).with_name("data")


def read(name: str) -> list[dict[str, str]]:
    with open(DATA / name, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_docstring_examples():
    assert doctest.testmod(gb18218).failed == 0


# --- data tables -------------------------------------------------------------------------


def test_table1_has_85_rows_in_order():
    rows = read("gb18218_table1.csv")
    columns = "seq name_zh name_en cas un_number q_tonnes hazard_class beta note"
    assert list(rows[0]) == columns.split()
    assert [int(r["seq"]) for r in rows] == list(range(1, 86))


@pytest.mark.parametrize(
    "name, Q",
    [("氨", 10), ("氯", 5), ("碳酰氯", 0.3), ("异氰酸甲酯", 0.75), ("氧(压缩的或液化的)", 200),
     ("液化石油气(含丙烷、丁烷及其混合物)", 50), ("甲醇", 500), ("汽油(乙醇汽油、甲醇汽油)", 200),
     ("硝酸铵(含可燃物≤0.2%)", 50), ("硝酸钾", 1000), ("硝酸胍", 50), ("钠", 10)],
)
def test_table1_spot_values(name, Q):
    assert lookup(name).Q == Q


def test_table3_gases():
    table3 = {e.name_zh: e.beta for e in gb18218._table1().values() if e.in_table3}
    # 一氧化碳 (β 2) is covered by the 煤气 row.
    assert table3 == {
        "煤气(CO,CO和H₂、CH₄的混合物等)": 2, "二氧化硫": 2, "氨": 2, "环氧乙烷": 2,
        "氯化氢(无水)": 3, "溴甲烷": 3, "氯": 4, "硫化氢": 5, "氟化氢": 5, "二氧化氮": 10,
        "氰化氢": 10, "碳酰氯": 20, "磷化氢": 20, "异氰酸甲酯": 20,
    }


def test_table1_beta_column_matches_its_classes():
    for e in gb18218._table1().values():
        if e.hazard_classes:
            assert e.beta == max(hazard_classes()[c].beta for c in e.hazard_classes), e.name_zh


def test_tables_2_and_4():
    assert {c: (h.Q, h.beta) for c, h in hazard_classes().items()} == {
        "J1": (5, 4), "J2": (50, 1), "J3": (50, 2), "J4": (50, 2), "J5": (500, 1),
        "W1.1": (1, 2), "W1.2": (10, 2), "W1.3": (50, 2), "W2": (10, 1.5), "W3": (150, 1),
        "W4": (50, 1), "W5.1": (10, 1.5), "W5.2": (50, 1), "W5.3": (1000, 1), "W5.4": (5000, 1),
        "W6.1": (10, 1.5), "W6.2": (50, 1), "W7.1": (10, 1.5), "W7.2": (50, 1), "W8": (50, 1),
        "W9.1": (50, 1), "W9.2": (200, 1), "W10": (200, 1), "W11": (200, 1),
    }


# --- lookup ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, seq",
    [
        ({"name": "液氯"}, 12),
        ({"name": "光气"}, 6),
        ({"name": "Phosgene"}, 6),
        ({"name": "液化石油气"}, 52),
        ({"name": "LPG"}, 52),
        ({"name": "ｌｐｇ"}, 52),
        ({"name": "丙烷"}, 52),
        ({"name": "天然气"}, 49),
        ({"name": "一氧化碳"}, 13),
        ({"name": "煤气(CO,CO和H2、CH4的混合物等)"}, 13),
        ({"name": "chlorine"}, 12),
        ({"name": "电石"}, 83),
        ({"cas": "7782-50-5"}, 12),
        ({"cas": "74-98-6"}, 52),
        ({"un_number": "1005"}, 1),
        ({"un_number": "UN 1017"}, 12),
        ({"un_number": "un1978"}, 52),
        ({"un_number": "209"}, 35),
        ({"name": "硝酸铵(含可燃物≤0.2%)", "cas": "6484-52-2"}, 44),
        ({"name": "硝酸铵(含可燃物>0.2%)"}, 43),  # (QA: the short form fell through to its Table 2 class, Q ×10)
        ({"name": "硝酸铵（可燃物>0.2%）", "cas": "6484-52-2"}, 43),
        ({"name": "硝酸铵（可燃物≤0.2%）"}, 44),
        ({"name": "本厂自编名", "cas": "67-56-1"}, 65),
    ],
)
def test_lookup(kwargs, seq):
    assert lookup(**kwargs).seq == seq


def test_lookup_misses_and_conflicts():
    assert lookup("柴油") is None
    assert lookup() is None
    with pytest.raises(UnknownSubstanceError, match="硝酸铵"):
        lookup(cas="6484-52-2")  # two 硝酸铵 rows share the CAS
    with pytest.raises(UnknownSubstanceError, match="#12 氯"):
        lookup("氯", cas="7664-41-7")  # name says chlorine, CAS says ammonia


def test_qualified_names_are_not_guessed():
    # 68 % nitric acid and 37 % formalin are not the Table 1 rows (>70 %, >90 %).
    assert lookup("硝酸") is None
    assert lookup("甲醛") is None


# --- Q, β and S --------------------------------------------------------------------------


def test_single_substance_at_below_above_q():
    # 氯 Q = 5 t: a single substance is a major hazard when q ≥ Q.
    assert identification_index([Substance("氯", 5)]) == 1.0
    assert grade([Substance("氯", 5)], 0).is_major
    assert not grade([Substance("氯", 4.999)], 0).is_major
    assert grade([Substance("氯", 4.999)], 0).level is None
    assert identification_index([Substance("氯", 6)]) == 1.2


def test_several_substances_s():
    # 甲醇 300/500 + 苯 10/50 + 液化石油气 10/50 = 0.6 + 0.2 + 0.2 = 1.0 → major.
    unit = [Substance("甲醇", 300), Substance("苯", 10), Substance("液化石油气", 10)]
    assert identification_index(unit) == 1.0
    assert grade(unit, 10).is_major
    # Sums are exact: 0.1 + 0.2 + 0.7 and 1/3 + 2/3 reach 1, which binary floats may miss.
    chlorine = [Substance("氯", 0.5), Substance("氯", 1), Substance("氯", 3.5)]
    assert identification_index(chlorine) == 1.0
    assert grade([Substance("碳酰氯", 0.1), Substance("碳酰氯", 0.2)], 0).is_major


def test_table2_for_unlisted_substances():
    assert critical_quantity(Substance("柴油", 100, hazard_class="W5.4")) == 5000
    # Several classes: lowest Q (W2, 10 t), largest β (J3, 2).
    s = Substance("某未列名气体", 1, hazard_class=["J3", "W2"])
    assert (critical_quantity(s), beta_for(s)) == (10, 2)
    assert assess(s).source == "Q: Table 2 W2; β: Table 4 J3"


def test_table1_wins_over_a_given_class_for_q_not_for_beta():
    # 苯 handled above its boiling point: Q stays 50 t (Table 1), β follows W5.1.
    s = Substance("苯", 10, hazard_class="w5.1")
    assert (critical_quantity(s), beta_for(s)) == (50, 1.5)
    # Table 3 gases keep their Table 3 β whatever class is given.
    assert beta_for(Substance("氨", 1, hazard_class="W2")) == 2


def test_mixtures():
    # Same hazard class as the pure substance (95 % ethanol, flammable liquid cat. 2):
    # counted as 乙醇 with the whole mixture quantity, Q = 500 t.
    assert critical_quantity(Substance("乙醇", 600)) == 500
    # Different class (40 % ethanol in water, flammable liquid cat. 3): Q of the new class.
    base_liquor = Substance("40%乙醇水溶液", 600, hazard_class="W5.4")
    assert critical_quantity(base_liquor) == 5000
    assert identification_index([base_liquor]) == 0.12


def test_unknown_substance():
    with pytest.raises(UnknownSubstanceError, match="柴油.*hazard_class"):
        critical_quantity(Substance("柴油", 100))
    with pytest.raises(UnknownSubstanceError):
        grade([Substance("氯", 10), Substance("柴油", 100)], 10)
    assert issubclass(UnknownSubstanceError, AnalysisError)
    assert issubclass(AnalysisError, ValueError)


def test_table1_row_without_beta_needs_a_class():
    # 汽油: Q is in Table 1, β depends on whether it is flammable liquid cat. 1 or 2.
    gasoline = Substance("汽油", 100)
    assert identification_index([gasoline]) == 0.5
    with pytest.raises(UnknownSubstanceError, match="Table 4"):
        beta_for(gasoline)
    assert beta_for(Substance("汽油", 100, hazard_class="W5.1")) == 1.5


def test_bad_input():
    with pytest.raises(AnalysisError, match="W12"):
        critical_quantity(Substance("X", 1, hazard_class="W12"))
    with pytest.raises(AnalysisError, match="negative"):
        identification_index([Substance("氯", -1)])
    with pytest.raises(AnalysisError):
        identification_index([Substance("氯", float("nan"))])


# --- α, β, R and levels --------------------------------------------------------------------


@pytest.mark.parametrize(
    "people, alpha",
    [(0, 0.5), (1, 1.0), (29, 1.0), (30, 1.2), (49, 1.2), (50, 1.5), (99, 1.5), (100, 2.0),
     (5000, 2.0)],
)
def test_alpha_boundaries(people, alpha):
    assert alpha_for_population(people) == alpha


@pytest.mark.parametrize("people", [-1, 2.5, True, "10"])
def test_alpha_rejects(people):
    with pytest.raises(AnalysisError):
        alpha_for_population(people)


@pytest.mark.parametrize(
    "R, level",
    [(1000, 1), (100, 1), (99.999, 2), (50, 2), (49.999, 3), (10, 3), (9.999, 4), (0, 4)],
)
def test_level_boundaries(R, level):
    assert level_for_r(R) == level


@pytest.mark.parametrize(
    "q, R, level",
    # 氯 alone, 1–29 people (α = 1): R = 1 × 4 × q/5 = 0.8 q.
    [(125, 100, 1), (124.99, 99.992, 2), (62.5, 50, 2), (62.49, 49.992, 3),
     (12.5, 10, 3), (12.49, 9.992, 4)],
)
def test_grade_boundaries_through_r(q, R, level):
    result = grade([Substance("氯", q)], exposed_people=10)
    assert result.R == pytest.approx(R, abs=1e-12)
    assert result.level == level


def test_chlorine_and_ammonia_by_hand():
    # Storage unit with 20 t 液氯 and 50 t 液氨; 60 people within 500 m of the boundary.
    #   Q: 氯 5 t, 氨 10 t (Table 1)       S = 20/5 + 50/10 = 4 + 5 = 9 ≥ 1 → major
    #   β: 氯 4, 氨 2 (Table 3)            α = 1.5 (50–99 people, Table 5)
    #   R = 1.5 × (4 × 20/5 + 2 × 50/10) = 1.5 × (16 + 10) = 39 → 50 > R ≥ 10 → 三级
    result = grade([Substance("液氯", 20), Substance("液氨", 50)], exposed_people=60)
    assert (result.S, result.R, result.alpha) == (9, 39, 1.5)
    assert (result.is_major, result.level) == (True, 3)
    assert [(r.name, r.Q, r.beta) for r in result.substances] == [("氯", 5, 4), ("氨", 10, 2)]
    assert result.exposed_people == 60
    # The same unit with 100 people: α = 2, R = 52 → 二级.
    assert grade([Substance("液氯", 20), Substance("液氨", 50)], 100).level == 2


def test_r_with_alpha_and_beta():
    # LPG 100 t (β 1.5, Q 50) + methanol 1000 t (β 1, Q 500), nobody outside (α 0.5):
    # S = 2 + 2 = 4; R = 0.5 × (1.5 × 2 + 1 × 2) = 2.5 → 四级.
    result = grade([Substance("LPG", 100), Substance("甲醇", 1000)], exposed_people=0)
    assert (result.S, result.R, result.level) == (4, 2.5, 4)


def test_not_major_has_no_level_but_r():
    result = grade([Substance("氨", 5)], exposed_people=200)
    assert (result.S, result.R, result.is_major, result.level) == (0.5, 2.0, False, None)


def test_empty_unit():
    result = grade([], exposed_people=0)
    assert (result.S, result.R, result.is_major, result.level) == (0, 0, False, None)
    assert result.substances == ()
