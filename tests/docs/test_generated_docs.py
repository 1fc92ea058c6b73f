"""The generated references in docs/ are current, and name every option and metric."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from doc_blocks import ROOT
from pydantic import BaseModel, Field

from streamfer.errors import ConfigError
from streamfer.pipeline import config_docs, metrics_docs
from streamfer.pipeline.config import PipelineConfig

CONFIGURATION = ROOT / "docs" / "configuration.md"
OBSERVABILITY = ROOT / "docs" / "observability.md"


def _generated_part(text: str, begin: str, end: str) -> str:
    assert begin in text and end in text, f"the page lost its markers {begin!r} / {end!r}"
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def test_the_configuration_reference_is_current() -> None:
    committed = _generated_part(CONFIGURATION.read_text(encoding="utf-8"),
                                config_docs.BEGIN, config_docs.END)  # fmt: skip
    assert committed == config_docs.reference().strip(), (
        f"docs/configuration.md is stale: run `{config_docs.REGENERATE}`"
    )


def test_the_metrics_reference_is_current() -> None:
    committed = _generated_part(OBSERVABILITY.read_text(encoding="utf-8"),
                                metrics_docs.BEGIN, metrics_docs.END)  # fmt: skip
    assert committed == metrics_docs.reference().strip(), (
        f"docs/observability.md is stale: run `{metrics_docs.REGENERATE}`"
    )


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        inner = config_docs._model_of(field.annotation)
        if inner is None:
            keys.append(prefix + name)
        else:
            keys += _leaf_keys(inner[1], f"{prefix}{name}{inner[0]}.")
    return keys


def test_the_configuration_page_names_every_option_with_a_description() -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    keys = _leaf_keys(PipelineConfig)
    assert len(keys) >= 77
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"options docs/configuration.md does not name: {missing}"
    described = {o.key for o in config_docs.walk(PipelineConfig) if o.description}
    assert described == set(keys)


def test_the_observability_page_names_every_exported_metric() -> None:
    text = OBSERVABILITY.read_text(encoding="utf-8")
    names = [m.name for m in metrics_docs.exported()]
    assert {"streamfer_e2e_latency_seconds", "streamfer_records_dead_lettered_total",
            "streamfer_ready", "streamfer_gpu_memory_used_bytes"} <= set(names)  # fmt: skip
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, f"metrics docs/observability.md does not name: {missing}"
    row = re.search(r"^\| `streamfer_records_dropped_total` \| counter \| (.*?) \|", text, re.M)
    assert row is not None and "`reason`" in row.group(1)


def test_an_option_without_a_description_fails_the_generator() -> None:
    class Section(BaseModel):
        described: int = Field(default=1, description="has one")
        bare: int = 2

    class Root(BaseModel):
        section: Section = Field(default_factory=Section)

    with pytest.raises(ConfigError, match=r"section\.bare \| option has no description"):
        list(config_docs.walk(Root))


def test_update_rewrites_only_the_marked_part(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"intro\n\n{config_docs.BEGIN}\nSTALE-TEXT\n{config_docs.END}\n\noutro\n")
    result = CliRunner().invoke(config_docs.docs, ["--update", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert text.startswith("intro\n\n") and text.endswith("\n\noutro\n")
    assert "STALE-TEXT" not in text and "`kafka.bootstrap_servers`" in text
    assert "up to date" in CliRunner().invoke(config_docs.docs, ["--update", str(page)]).output
    page.write_text("no markers\n")
    failed = CliRunner().invoke(config_docs.docs, ["--update", str(page)])
    assert isinstance(failed.exception, ConfigError)
