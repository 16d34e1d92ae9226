"""Run filters and selections over real runs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from reportgen.select import filter_runs
from reportgen.sources.offline import OfflineSource
from reportgen.spec import SourceSpec, parse_spec


@pytest.fixture(scope="module")
def runs(project_dir):
    return OfflineSource(SourceSpec("wandb-offline", path=str(project_dir))).list_runs()


def chosen(runs, runs_yaml: str, now: datetime | None = None) -> list[str]:
    spec = parse_spec(f"version: 1\nsource: {{type: wandb-offline, path: x}}\nruns: {runs_yaml}\n")
    return sorted(r.id for r in filter_runs(runs, spec.runs, now))


def test_state_filter(runs):
    assert chosen(runs, "{filters: {state: [failed]}}") == ["crash001"]


def test_tags_all_and_none(runs):
    assert chosen(runs, "{filters: {tags: {all: [grpo, sweep]}}}") == [
        "rllong01",
        "rlmid001",
        "rlshort1",
    ]
    assert chosen(runs, "{filters: {tags: {any: [grpo], none: [sweep]}}}") == ["grpotiny"]


def test_name_regex_is_searched(runs):
    assert chosen(runs, "{filters: {name: 'rl(short|long)'}}") == ["rllong01", "rlshort1"]


def test_config_comparisons(runs):
    assert chosen(runs, "{filters: {config: {seed: 2}}}") == ["rllong01"]
    assert chosen(runs, "{filters: {config: {seed: {in: [0, 1]}}}}") == ["rlmid001", "rlshort1"]
    assert chosen(runs, "{filters: {config: {actor.lr: {lt: 1.0e-6}}}}") == ["grpotiny"]
    # A run without the key fails every test except ne / nin.
    assert chosen(runs, "{filters: {config: {seed: {ne: 0}}}}") == [
        "crash001",
        "grpotiny",
        "resume01",
        "rllong01",
        "rlmid001",
        "sftnan01",
    ]


def test_created_after_an_age(runs):
    newest = max(r.created_at for r in runs)
    assert chosen(
        runs, "{filters: {created_after: 1h}}", now=newest + timedelta(minutes=30)
    ) == sorted(r.id for r in runs)
    assert chosen(runs, "{filters: {created_after: 1h}}", now=newest + timedelta(hours=2)) == []


def test_created_before_a_date(runs):
    assert chosen(runs, "{filters: {created_before: '2000-01-01'}}") == []
    assert len(chosen(runs, "{filters: {created_before: '2999-01-01T00:00Z'}}")) == 7


def test_ids_and_limit(runs):
    assert chosen(runs, "{ids: [rlshort1, nosuchid]}") == ["rlshort1"]
    newest_two = sorted(
        sorted(runs, key=lambda r: r.created_at, reverse=True)[:2], key=lambda r: r.id
    )
    assert chosen(runs, "{limit: 2}") == [r.id for r in newest_two]


def test_created_at_is_timezone_aware(runs):
    assert all(r.created_at.tzinfo == timezone.utc for r in runs)
