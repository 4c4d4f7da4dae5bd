"""The three tiers a publish derives (catalog/publishing/tiers/): what each keeps and drops,
and surrogates stable across versions, against real Delta tables and both databases."""

import pyarrow as pa

from catalog.publishing import service
from tests.catalog.publishing.conftest import GOOD, ROWS, publish, read
from tests.factories import ACTOR


def test_deidentified_tier_holds_no_identifiers(
    session, clock, patients_version, export_dir, publish_settings
):
    version = publish(session, patients_version, export_dir, publish_settings, clock)
    table = read(version, "deidentified")
    assert table.column_names == ["patient_id", "birth_date", "gender", "state", "postal_code"]
    assert table.schema.field("birth_date").type == pa.int32()
    values = {str(v) for column in table.columns for v in column.to_pylist() if v is not None}
    for p in GOOD:
        name = p["name"][0]
        forbidden = [
            name["family"],
            name["given"][0],
            p["identifier"][0]["value"],
            p["telecom"][0]["value"],
            p["address"][0]["line"][0],
            p["id"],
            p["address"][0]["city"],
        ]
        if p.get("birthDate"):
            forbidden.append(p["birthDate"])
        assert not (set(forbidden) & values), (forbidden, values)
    rows = {r["gender"] + str(r["birth_date"]): r for r in table.to_pylist()}
    assert [r["postal_code"] for r in table.to_pylist()] == [
        "980",
        "000",
        "000",
        "980",
        "980",
        None,
        "980",
        "980",
    ]
    years = [r["birth_date"] for r in table.to_pylist()]
    # 1930 shows an age over 89; p10's partial 1950-03 still gives its year
    assert years == [1980, 1961, None, 1999, None, 1975, None, 1950]
    assert rows
    assert len({r["patient_id"] for r in table.to_pylist()}) == len(ROWS)


def test_limited_tier_keeps_dates_and_zip5_but_no_direct_identifiers(
    session, clock, patients_version, export_dir, publish_settings
):
    version = publish(session, patients_version, export_dir, publish_settings, clock)
    table = read(version, "limited")
    assert table.column_names == [
        "patient_id",
        "birth_date",
        "birth_date_precision",
        "gender",
        "city",
        "state",
        "postal_code",
    ]
    rows = table.to_pylist()
    assert [str(r["birth_date"]) for r in rows][:4] == [
        "1980-05-17",
        "1961-05-17",
        "1930-02-01",
        "1999-12-31",
    ]
    assert [r["postal_code"] for r in rows] == [
        "98052",
        "03601",
        "89301",
        "98052",
        "98052",
        None,
        "98052",
        "98052",
    ]
    assert [r["birth_date_precision"] for r in rows] == [
        *["day"] * 4,
        None,
        "day",
        None,
        "month",
    ]
    assert str(rows[-1]["birth_date"]) == "1950-03-01"  # lower bound of 1950-03
    limited_ids = {r["patient_id"] for r in rows}
    deid_ids = {r["patient_id"] for r in read(version, "deidentified").to_pylist()}
    assert not limited_ids & deid_ids  # each tier has its own surrogates
    assert not limited_ids & {p["id"] for p in GOOD}


def test_full_tier_is_the_converted_rows(
    session, clock, patients_version, export_dir, publish_settings
):
    version = publish(session, patients_version, export_dir, publish_settings, clock)
    rows = read(version, "full").to_pylist()
    assert [r["patient_id"] for r in rows] == [p["id"] for p in ROWS]
    assert rows[0]["family_name"] == "Okafor" and rows[0]["postal_code"] == "98052-1234"
    assert str(rows[1]["birth_date"]) == "1961-05-17"  # US date format read month first


def test_surrogates_are_stable_across_versions(
    session, clock, patients_version, export_dir, publish_settings
):
    first = publish(session, patients_version, export_dir, publish_settings, clock)
    session.commit()
    second = service.reconvert_version(
        session, first, view=None, settings=publish_settings, clock=clock, actor=ACTOR
    )
    session.commit()
    assert second.version == "1.0.1"
    ids_first = read(first, "deidentified").column("patient_id").to_pylist()
    ids_second = read(second, "deidentified").column("patient_id").to_pylist()
    assert ids_first == ids_second
