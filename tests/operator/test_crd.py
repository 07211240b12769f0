"""The CRDs are generated from the models, structural, and checked in up to date."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from chaosaa.cli.crd import all_crds, crd, rendered_files
from chaosaa.spec.crd import gameday_crd, gamedayrun_crd

CHART_CRDS = Path(__file__).resolve().parents[2] / "charts" / "chaosaa" / "crds"
FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "const", "title", "discriminator"}


def test_checked_in_crds_are_what_chaosaa_crd_render_produces() -> None:
    files = rendered_files()
    on_disk = {p.name: p.read_text() for p in CHART_CRDS.glob("*.yaml")}
    assert set(on_disk) == set(files), "run: chaosaa crd render -o charts/chaosaa/crds"
    for name, text in files.items():
        assert on_disk[name] == text, f"{name} is stale: run chaosaa crd render -o {CHART_CRDS}"


def test_crd_render_check_passes_on_the_chart_and_prints_yaml() -> None:
    result = CliRunner().invoke(crd, ["render", "--check", str(CHART_CRDS)])
    assert result.exit_code == 0, result.output
    printed = CliRunner().invoke(crd, ["render"])
    assert printed.exit_code == 0
    assert printed.output.count("kind: CustomResourceDefinition") == len(all_crds())


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, value in node.get("properties", {}).items():
            out += walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            out += walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_schemas_are_structural() -> None:
    for crd_ in (gameday_crd(), gamedayrun_crd()):
        schema = crd_["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in walk(schema):
            assert not FORBIDDEN & set(node), f"{path}: {FORBIDDEN & set(node)}"
            assert node.get("additionalProperties") is not False, path
            if path:  # every field has a type, unless it is the one polymorphic field
                assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path


def test_the_union_of_faults_is_one_object_with_a_type_enum_and_rules() -> None:
    schema = gameday_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    fault = schema["properties"]["spec"]["properties"]["faults"]["items"]
    assert fault["properties"]["type"]["enum"] == [
        "blackhole",
        "latency",
        "replicationLag",
        "regionDown",
        "bandwidth",
        "packetLoss",
    ]
    assert fault["required"][:1] == ["type"]
    rules = {r["message"]: r["rule"] for r in fault["x-kubernetes-validations"]}
    assert rules["type latency requires delay"] == "self.type != 'latency' || (has(self.delay))"
    duration = fault["properties"]["duration"]
    assert duration["type"] == "string" and "ms|s|m|h|d" in duration["pattern"]
    assert fault["properties"]["clients"] == {
        "type": "boolean",
        "nullable": True,
        "description": fault["properties"]["clients"]["description"],
    }
    slo = schema["properties"]["spec"]["properties"]["slos"]["items"]
    assert slo["properties"]["max"]["x-kubernetes-preserve-unknown-fields"] is True


def test_printer_columns() -> None:
    def names(c: dict[str, Any]) -> list[str]:
        return [col["name"] for col in c["spec"]["versions"][0]["additionalPrinterColumns"]]

    assert names(gameday_crd()) == [
        "Schedule",
        "Suspend",
        "Last Verdict",
        "Last Failover",
        "Next Run",
        "Age",
    ]
    assert names(gamedayrun_crd()) == ["GameDay", "Phase", "Verdict", "Failover", "Started", "Age"]
