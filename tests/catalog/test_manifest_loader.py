"""Every way a products file can be wrong yields FILE:LINE: path: message, and nothing else."""

import textwrap
from pathlib import Path

import pytest

from catalog.manifest.loader import ManifestError, load_manifest, parse_manifest

EXAMPLE = Path(__file__).resolve().parents[2] / "products.example.yaml"

GOOD = """\
domains:
  - name: st-marys
    kind: facility
    title: St Mary's
    owner_team: Informatics
    contact_email: it@stmarys.example.org
    products:
      - name: patients
        title: Patients
        owner_team: Registration
        owner_email: reg@stmarys.example.org
        source_resources: [Patient]
        versions:
          - version: 1.0.0
            tiers: [deidentified]
            sla: {freshness: 24h, freshness_column: birth_date, completeness: ["birth_date >= 98%"]}
            columns:
              - {name: patient_id, type: string, nullable: false, classification: direct_identifier}
              - {name: birth_date, type: date32, classification: date}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, source="estate.yaml")
    return info.value.lines()


def replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


def test_example_file_is_valid():
    manifest = load_manifest(EXAMPLE, max_bytes=1_000_000)
    domains = {d.name: d for d in manifest.domains}
    assert len([d for d in manifest.domains if d.kind == "facility"]) >= 3
    assert domains["labs"].kind == "clinical-domain"
    products = [p for d in manifest.domains for p in d.products]
    assert len(products) >= 6
    assert all(p.versions for p in products)


def test_good_file_parses():
    manifest = parse_manifest(GOOD, source="estate.yaml")
    version = manifest.domains[0].products[0].versions[0]
    assert version.version == "1.0.0"
    assert version.sla.completeness[0].min_percent == 98.0


CASES = [
    (
        "syntax",
        GOOD.replace("    kind: facility\n", "    kind: [facility\n"),
        ["estate.yaml:4: invalid YAML"],
    ),
    (
        "unknown field",
        replace("    kind: facility\n", "    kind: facility\n    colour: blue\n"),
        ["estate.yaml:4: domains[0].colour: unknown field"],
    ),
    (
        "missing field",
        replace("        title: Patients\n", ""),
        ["estate.yaml:8: domains[0].products[0].title: required field is missing"],
    ),
    (
        "version as number",
        replace("version: 1.0.0", "version: 1.0"),
        [
            "estate.yaml:14: domains[0].products[0].versions[0].version: Input should be a valid string (got the number 1.0; quote it in YAML, e.g. '1.0.0')"
        ],
    ),
    (
        "bad semver",
        replace("version: 1.0.0", "version: 1.0.x"),
        ["estate.yaml:14: domains[0].products[0].versions[0].version: invalid version '1.0.x'"],
    ),
    (
        "bad enum",
        replace("kind: facility", "kind: hospital"),
        ["estate.yaml:3: domains[0].kind: Input should be 'facility' or 'clinical-domain'"],
    ),
    (
        "bad tier",
        replace("tiers: [deidentified]", "tiers: [anonymous]"),
        [
            "estate.yaml:15: domains[0].products[0].versions[0].tiers[0]: Input should be 'deidentified', 'limited' or 'full'"
        ],
    ),
    (
        "bad arrow type",
        replace("type: date32", "type: datetime"),
        [
            "estate.yaml:19: domains[0].products[0].versions[0].columns[1].type: unknown type 'datetime'"
        ],
    ),
    (
        "bad classification",
        replace("classification: date}", "classification: secret}"),
        [
            "estate.yaml:19: domains[0].products[0].versions[0].columns[1].classification: Input should be"
        ],
    ),
    (
        "bad slug",
        replace("- name: patients", "- name: Patients_All"),
        ["estate.yaml:8: domains[0].products[0].name: String should match pattern"],
    ),
    (
        "bad email",
        replace("owner_email: reg@stmarys.example.org", "owner_email: nobody"),
        ["estate.yaml:11: domains[0].products[0].owner_email: String should match pattern"],
    ),
    (
        "bad column name",
        replace("name: birth_date, type", "name: Birth Date, type"),
        [
            "estate.yaml:19: domains[0].products[0].versions[0].columns[1].name: String should match pattern"
        ],
    ),
    (
        "bad completeness",
        replace('"birth_date >= 98%"', '"birth_date at least 98"'),
        [
            "estate.yaml:16: domains[0].products[0].versions[0].sla.completeness[0]: expected 'column >= N%'"
        ],
    ),
    (
        "completeness on unknown column",
        replace('"birth_date >= 98%"', '"weight >= 98%"'),
        [
            "estate.yaml:14: domains[0].products[0].versions[0]: completeness rules name unknown columns: weight"
        ],
    ),
    (
        "bad freshness",
        replace("freshness: 24h", "freshness: a day"),
        [
            "estate.yaml:16: domains[0].products[0].versions[0].sla.freshness: invalid duration 'a day'"
        ],
    ),
    (
        "duplicate column",
        replace("name: birth_date, type", "name: patient_id, type"),
        ["estate.yaml:14: domains[0].products[0].versions[0]: duplicate column names: patient_id"],
    ),
    (
        "duplicate key",
        replace("    kind: facility\n", "    kind: facility\n    kind: facility\n"),
        ["estate.yaml:4: domains[0].kind: duplicate key 'kind'"],
    ),
    (
        "wrong container",
        replace("source_resources: [Patient]", "source_resources: Patient"),
        ["estate.yaml:12: domains[0].products[0].source_resources: Input should be a valid list"],
    ),
    (
        "empty domains",
        "domains: []\n",
        ["estate.yaml:1: domains: List should have at least 1 item"],
    ),
    (
        "top-level list",
        "- a\n- b\n",
        ["estate.yaml:1: expected a mapping with a 'domains:' list at the top"],
    ),
    ("empty file", "", ["estate.yaml: file is empty"]),
    ("non-string key", "domains:\n  - 1: x\n", ["estate.yaml:2: domains[0]: keys must be strings"]),
    (
        "merge key",
        "base: &b {kind: facility}\ndomains:\n  - <<: *b\n",
        ["estate.yaml:3: domains[0]: merge keys (<<) are not supported"],
    ),
    (
        "python tag",
        "domains: !!python/object:os.system ls\n",
        ["estate.yaml:1: domains: invalid value"],
    ),
]


@pytest.mark.parametrize(("label", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_validation_errors_name_file_line_and_path(label, text, expected):
    lines = errors_of(text)
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)


def test_all_errors_reported_at_once():
    text = replace("kind: facility", "kind: hospital").replace("type: date32", "type: nope")
    assert len(errors_of(text)) == 2


def test_duplicate_objects():
    dup_domain = GOOD + textwrap.indent(GOOD.split("\n", 1)[1], "")
    assert any("domain 'st-marys' is declared twice" in line for line in errors_of(dup_domain))
    product_block = GOOD.split("    products:\n", 1)[1]
    dup_product = GOOD + product_block
    assert any(
        "domains[0].products[1].name: product 'patients' is declared twice" in line
        for line in errors_of(dup_product)
    )
    version_block = GOOD.split("        versions:\n", 1)[1]
    lines = errors_of(GOOD + version_block)
    assert any("versions[1].version: version '1.0.0' is declared twice" in line for line in lines)


def test_alias_bomb_is_stopped():
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        levels.append(f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} [{', '.join(['*' + prev] * 10)}]")
    lines = errors_of("\n".join(levels) + "\n")
    assert "expands to more than" in lines[0]


def test_deep_nesting_is_stopped():
    text = "domains: " + "[" * 60 + "]" * 60 + "\n"
    assert "nesting deeper than" in errors_of(text)[0]


def test_size_limit(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(GOOD + "#" * 2000)
    with pytest.raises(ManifestError, match="limit is 1000 bytes"):
        load_manifest(path, max_bytes=1000)


def test_invalid_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(GOOD.replace("St Mary's", "St Mary\xe9s").encode("latin-1"))
    with pytest.raises(ManifestError) as info:
        load_manifest(path, max_bytes=100_000)
    assert info.value.lines() == [f"{path}:4: file is not valid UTF-8"]


def test_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="cannot read file"):
        load_manifest(tmp_path / "absent.yaml", max_bytes=1000)
