"""The faster paths give exactly what the plain ones gave: CSV cells, concurrent atomic writes,
the cache's Parquet reader, and derived expressions evaluated without numpy at import."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from reportgen import atomic
from reportgen.cache import CacheDamaged, RunCache, history_bytes, history_from_bytes
from reportgen.expressions import ExpressionError, evaluate, evaluate_condition, parse_expression
from reportgen.jsonvalues import jsonable
from reportgen.render.csv import number_texts, render_step_table
from reportgen.render.json import dumps_indented, with_encoded_parts
from reportgen.render.text import exact_number
from reportgen.report import RunReport
from reportgen.runs import History

EDGES = [
    0.0, -0.0, 1.0, -3.0, 0.1, 1 / 3, 2.5e-8, 5e-324, 1e300, -1e300, 123456789.0,
    999999999999999.0, 1e15, -1e14, 1e16, 2.0**53, math.nan, math.inf, -math.inf,
]  # fmt: skip


def test_csv_cells_of_a_column_are_exact_number_of_each_value():
    values = np.array(EDGES + list(np.random.default_rng(7).normal(size=500) * 1e3))
    assert number_texts(values).to_pylist() == [exact_number(float(v)) for v in values]


def test_csv_cells_written_by_arrow_are_reprs_at_every_magnitude():
    """Arrow writes the cells between 10^-4 and 10^9 and Python the rest: the text is
    `exact_number`'s on both sides of each bound, at every magnitude, and for random bits."""
    rng = np.random.default_rng(11)
    bounds = [1e-4, 1e9, 1e15, 2.0**53]
    near = [np.nextafter(b, d) for b in bounds for d in (0.0, np.inf)] + bounds
    spread = rng.random(20_000) * 10.0 ** rng.uniform(-12, 18, 20_000)
    rounded = np.round(rng.normal(size=5_000) * 10.0 ** rng.integers(0, 9, 5_000), 3)
    bits = rng.integers(0, 2**64, 20_000, dtype=np.uint64).view(np.float64)
    values = np.concatenate([near, -np.array(near), spread, -spread, rounded, bits])
    assert number_texts(values).to_pylist() == [exact_number(float(v)) for v in values]
    steps = np.arange(0, 10**6, 997, dtype=float)  # every cell whole: one cast of integers
    assert number_texts(steps).to_pylist() == [str(int(s)) for s in steps]


def test_csv_table_leaves_unlogged_cells_empty_and_writes_nan_where_logged():
    text = render_step_table(
        np.array([0, 10, 20]),
        ["loss"],
        {"loss": np.array([1.5, math.nan, 2.0])},
        {"loss": np.array([True, True, False])},
    )
    assert text.splitlines() == ["step,loss", "0,1.5", "10,nan", "20,"]


def test_csv_rows_joined_are_those_the_csv_module_writes():
    """Rows are joined without the csv module: the same text, quoted header included."""
    import csv
    import io

    rng = np.random.default_rng(3)
    steps = np.arange(0, 5000, 7)
    columns = ["loss", 'odd, "name"', "nan-ish"]
    values = {
        "loss": rng.normal(size=len(steps)) * 10.0 ** rng.integers(-30, 30, size=len(steps)),
        'odd, "name"': np.round(rng.normal(size=len(steps)) * 100),
        "nan-ish": np.where(rng.random(len(steps)) < 0.3, math.nan, rng.random(len(steps))),
    }
    values["loss"][: len(EDGES)] = EDGES
    present = {c: rng.random(len(steps)) < 0.8 for c in columns}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", *columns])
    for i, step in enumerate(steps.tolist()):
        row = [str(step)]
        row += [exact_number(float(values[c][i])) if present[c][i] else "" for c in columns]
        writer.writerow(row)
    assert render_step_table(steps, columns, values, present) == out.getvalue()
    assert render_step_table(
        np.array([]),
        columns,
        {c: np.array([]) for c in columns},
        {c: np.array([], dtype=bool) for c in columns},
    ) == ('step,loss,"odd, ""name""",nan-ish\n')


def test_write_many_writes_every_file_and_a_repeated_path_keeps_its_last_data(tmp_path):
    pairs = [(tmp_path / f"t{i % 7}.csv", f"version {i}".encode()) for i in range(20)]
    written = atomic.write_many(pairs)
    assert written == [path for path, _ in pairs]
    for i in range(7):
        last = max(j for j in range(20) if j % 7 == i)
        assert (tmp_path / f"t{i}.csv").read_bytes() == f"version {last}".encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"t{i}.csv" for i in range(7)]


def test_cached_history_reads_back_every_point_and_value():
    history = History.from_points(
        {
            "train/loss": ([0, 1, 2, 5], [1.0, math.nan, math.inf, 0.25]),
            "a.b": ([3], [-0.0]),
        }
    )
    loaded = history_from_bytes(history_bytes(history))
    assert loaded.keys() == ["a.b", "train/loss"]
    loss = loaded.series("train/loss")
    assert loss.index.tolist() == [0, 1, 2, 5]
    assert loss.iloc[0] == 1.0 and math.isnan(loss.iloc[1]) and loss.iloc[2] == math.inf
    assert len(history_from_bytes(history_bytes(History()))) == 0


def test_a_truncated_cached_history_is_reported_as_damaged(tmp_path):
    area = RunCache(tmp_path).area("wandb-offline", {})
    area.write("run", {}, History.from_points({"x": ([0, 1], [1.0, 2.0])}))
    parquet = area.path / "entries" / "run.parquet"
    data = parquet.read_bytes()
    parquet.write_bytes(data[: len(data) // 2] + b"\0" * (len(data) - len(data) // 2))
    with pytest.raises(CacheDamaged, match="checksum"):
        area.read("run")


@pytest.mark.parametrize(
    "value",
    [
        {"runs": [{"id": "a", "x": [1, 2.5, -0.0, 1e300, 5e-324, True, False, None]}]},
        {"empty": {}, "list": [], "nested": [[[]], [{}]], "": ""},
        ['quote " backslash \\ newline \n tab \t é ✓ \u2028 \x00'],
        {"tuple": (1, (2, 3)), "numpy": np.float64(0.1), "whole": np.float64(3.0)},
        [math.nan],  # refused, as json.dumps refuses it
        {1: "a key that is not text"},  # converted, as json.dumps converts it
        [np.int64(3)],  # refused, as json.dumps refuses it
        "plain text",
        7,
    ],
)
def test_report_json_text_is_what_the_standard_library_writes(value):
    def standard(v: object) -> str:
        return json.dumps(v, indent=2, ensure_ascii=False, allow_nan=False)

    try:
        expected = standard(value)
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            dumps_indented(value)
    else:
        assert dumps_indented(value) == expected


def test_a_run_part_encoded_beforehand_is_the_text_report_json_would_have():
    """Config and summary encoded where a run was digested: at their place in report.json the
    text is used, elsewhere (or when the document falls back to json.dumps) their value."""
    config = {"lr": 1e-4, "nested": {"layers": [1, 2, (3, 4)], "nan": math.nan, "": None}}
    run = RunReport(
        id="r1", name="r1", state="finished", exit_code=0, url=None, tags=(), group=None,
        job_type=None, created_at=None, config=config, summary={"a": 1.5}, first_step=None,
        last_step=None, rows=0, metrics=(),
    )  # fmt: skip
    parts = with_encoded_parts(run).encoded
    assert set(parts) == {"config", "summary"}
    plain = {"runs": [{"id": "r1", "config": jsonable(config), "summary": {"a": 1.5}}]}
    expected = json.dumps(plain, indent=2, ensure_ascii=False, allow_nan=False)
    encoded = {"runs": [{"id": "r1", "config": parts["config"], "summary": parts["summary"]}]}
    assert dumps_indented(encoded) == expected
    assert '"nan": "NaN"' in parts["config"].text and parts["config"].text.endswith("\n      }")
    moved = {"config": parts["config"]}  # not at its place: encoded from its value
    assert dumps_indented(moved) == json.dumps({"config": jsonable(config)}, indent=2)
    fallback = {**encoded, "odd": [np.int64(3)]}  # not plain: the standard library's text
    with pytest.raises(TypeError):
        dumps_indented(fallback)
    tuples = {**encoded, 1: "a key that is not text"}
    assert dumps_indented(tuples) == json.dumps({**plain, 1: "a key that is not text"}, indent=2)


def test_expressions_and_conditions_evaluate_as_before():
    columns = {"a": np.array([1.0, 4.0, -9.0]), "b": np.array([2.0, 2.0, 0.0])}
    assert parse_expression("sqrt(a) / b") == {"a", "b"}
    result = evaluate("max(abs(a), b) ** 2 - log10(b * 50)", columns)
    with np.errstate(divide="ignore"):
        expected = np.maximum(np.abs(columns["a"]), columns["b"]) ** 2 - np.log10(columns["b"] * 50)
    np.testing.assert_array_equal(result, expected)
    keep = evaluate_condition("a > 0 and not b == 0 or a < -5", columns, 3)
    assert keep.tolist() == [True, True, True]
    with pytest.raises(ExpressionError, match="'median' is not an allowed function"):
        parse_expression("median(a)")


def _curve(rng: np.random.Generator, n: int, trial: int) -> np.ndarray:
    """A noisy curve with repeated values, gaps (NaN) and, now and then, ±inf."""
    values = rng.standard_normal(n) * 10.0 ** int(rng.integers(-3, 4))
    if trial % 3 == 0:
        values = np.round(values, 1)  # ties, and even counts with equal middles
    if trial % 2 == 0:
        values[rng.random(n) < rng.random() * 0.6] = math.nan
    if trial % 5 == 0:
        values[rng.random(n) < 0.05] = math.inf
        values[rng.random(n) < 0.05] = -math.inf
    return values


@pytest.mark.parametrize("length", [0, 1, 7, 300, 5000])
def test_trailing_window_statistics_are_pandas_rolling_medians_and_quantiles(length):
    import pandas as pd

    from reportgen.health.stats import trailing_stats

    rng = np.random.default_rng(length)
    for trial in range(60 if length < 1000 else 4):
        values = _curve(rng, length, trial)
        w = int(rng.integers(1, 60))
        least = int(rng.integers(1, w + 1))
        wanted = [(None, least), (None, 1), (0.9, least), (0.5, 1), (0.1, least)]
        series = pd.Series(values, dtype=float)
        expected = [
            (series.rolling(w, min_periods=m).median() if q is None else
             series.rolling(w, min_periods=m).quantile(q)).to_numpy()
            for q, m in wanted
        ]  # fmt: skip
        found = trailing_stats(values, w, wanted)
        for (q, m), want, got in zip(wanted, expected, found, strict=True):
            assert np.array_equal(want, got, equal_nan=True), (trial, q, w, m)


def test_spikes_are_those_of_pandas_rolling_windows():
    """The spike finder on sorted windows finds what its pandas formulation found."""
    import pandas as pd

    from reportgen.health.stats import MAD_TO_SIGMA, TINY, spikes, stretches

    def spikes_by_pandas(values, window, z, min_rel_rise, max_width, least):
        series = pd.Series(values, dtype=float)
        rolling = series.rolling(window, min_periods=least)
        baseline = rolling.median().shift(1).to_numpy()
        deviation = (series - series.rolling(window, min_periods=1).median()).abs()
        spread = deviation.rolling(window, min_periods=least).median().shift(1).to_numpy()
        sigma = np.maximum(np.maximum(MAD_TO_SIGMA * spread, 0.01 * np.abs(baseline)), TINY)
        upper = rolling.quantile(0.9).shift(1).to_numpy()
        reference = np.maximum(np.abs(baseline), np.abs(upper))
        finite = np.abs(baseline[np.isfinite(baseline)])
        idle = 1e-3 * float(np.percentile(finite, 99)) if len(finite) else 0.0
        with np.errstate(invalid="ignore", over="ignore"):
            known = np.isfinite(baseline) & (np.abs(baseline) > idle)
            high = (values - baseline > z * sigma) & (values - upper >= min_rel_rise * reference)
        found = []
        for start, end in stretches(high & known):
            if end < len(values) and end - start <= max_width:
                worst = start + int(np.argmax(values[start:end]))
                found.append((start, end, worst, float(baseline[worst])))
        return found

    rng = np.random.default_rng(3)
    checked = 0
    for trial in range(80):
        values = np.abs(rng.standard_normal(400)) + 1.0
        values[rng.integers(10, 400, size=6)] += rng.uniform(1, 20, size=6)
        if trial % 2:
            values[rng.random(400) < 0.1] = math.nan
        found = spikes(values, window=20, z=4.0, min_rel_rise=0.5, max_width=5, min_history=5)
        expected = spikes_by_pandas(values, 20, 4.0, 0.5, 5, 5)
        assert [(s.start, s.end, s.worst, s.baseline) for s in found] == expected
        checked += len(expected)
    assert checked > 50  # the comparison saw many spikes, not only quiet curves


@pytest.mark.parametrize("length", [0, 1, 2, 9, 400, 5000])
def test_trailing_and_centred_medians_are_pandas_rolling_medians(length):
    import pandas as pd

    from reportgen.health.stats import centred_median, rolling_median

    rng = np.random.default_rng(100 + length)
    for trial in range(40 if length < 1000 else 3):
        values = _curve(rng, length, trial)
        w = int(rng.integers(1, 60))
        series = pd.Series(values, dtype=float)
        full = series.rolling(w, min_periods=w).median().to_numpy()
        partial = series.rolling(w, min_periods=1).median().to_numpy()
        centred = series.rolling(w, center=True, min_periods=1).median().to_numpy()
        assert np.array_equal(rolling_median(values, w), full, equal_nan=True)
        assert np.array_equal(rolling_median(values, w, full=False), partial, equal_nan=True)
        assert np.array_equal(centred_median(values, w), centred, equal_nan=True), (trial, w)


def test_the_user_stop_line_is_the_one_a_search_of_every_line_finds():
    """The whole console is cleaned and searched for the words at once before its lines are:
    the line found is the one a plain search of every cleaned line finds, or None for both."""
    from reportgen.health.checks import lifecycle

    def plain(console: tuple[str, ...]) -> str | None:
        for raw in reversed(console):
            line = lifecycle._clean(raw)
            if lifecycle._USER_STOP.search(line):
                return line if len(line) <= 200 else line[:197] + "…"
        return None

    consoles = [
        (),
        ("epoch 1", "loss 0.3", "done"),
        ("step 5", "Keyboard\x1b[0mInterrupt"),  # a colour code inside the word
        ("[rank0]:KeyboardInterrupt", "[rank1]: other"),
        ("Ctrl + C detected, exiting", "wandb: Synced"),
        ("CTRL-C pressed", "ctrl", "nothing after"),
        ("\u0130nterrupted by user",),  # İ folds to i under re.I
        ("sig", "int", "SIGINT"),
        ("a line that says ctrl but not a stop", "and interrupted byte-wise"),
        ("x" * 300 + " KeyboardInterrupt",),
        ("(TaskRunner pid=42) KeyboardInterrupt", "\x1b[31mSIGINT\x1b[0m received"),
    ]
    found = []
    for console in consoles:
        lifecycle.user_stop_line.cache_clear()
        found.append(lifecycle.user_stop_line(console))
        assert found[-1] == plain(console), console
    assert found[:4] == [None, None, "KeyboardInterrupt", "KeyboardInterrupt"]
    assert found[8] is None and sum(line is not None for line in found) == 8


def test_metric_percentiles_in_one_call_are_those_of_one_call_each():
    """`describe` asks numpy for all its percentiles at once: the same numbers, and the same
    trend word, as one call per percentile."""
    from reportgen.metrics import PERCENTILES, describe
    from reportgen.runs import Points

    def trend_by_single_calls(values: np.ndarray) -> str:
        n = len(values)
        if n < 4:
            return "n/a"
        part = max(1, n // 5)
        head, tail = float(np.mean(values[:part])), float(np.mean(values[-part:]))
        spread = float(np.percentile(values, 95) - np.percentile(values, 5))
        change = (tail - head) / max(spread, abs(head), abs(tail), 1e-12)
        return "flat" if abs(change) < 0.05 else ("rising" if change > 0 else "falling")

    rng = np.random.default_rng(5)
    words = set()
    for trial in range(300):
        values = _curve(rng, [1, 2, 3, 4, 7, 50, 400, 3000][trial % 8], trial)
        values += np.linspace(0, float(rng.normal()) * 5, len(values))  # some rise, some fall
        stats = describe(Points("m", "_step", np.arange(len(values)) * 10, values))
        finite = values[np.isfinite(values)]
        if not len(finite):
            assert stats.percentiles == {}
            continue
        assert stats.percentiles == {f"p{p}": float(np.percentile(finite, p)) for p in PERCENTILES}
        assert stats.trend == trend_by_single_calls(finite)
        words.add(stats.trend)
    assert words == {"rising", "falling", "flat", "n/a"}


def test_row_count_is_the_number_of_distinct_rows_however_they_are_spread():
    from reportgen.runs import Column

    rng = np.random.default_rng(9)
    for trial in range(60):
        columns = {}
        for k in range(int(rng.integers(0, 6))):
            n = int(rng.integers(0, 50))
            spread = [10, 10**3, 10**12][trial % 3]  # dense, gapped, far apart
            rows = np.sort(rng.choice(spread, size=min(n, spread), replace=False))
            rows = rows - (5 if trial % 7 == 0 else 0)  # negative rows (never written by us)
            steps = rows.copy()
            columns[f"k{k}"] = Column(rows.astype(np.int64), steps.astype(np.int64), rows * 0.5)
        history = History(columns)
        every = [c.rows for c in columns.values()]
        expected = len(np.unique(np.concatenate(every))) if every else 0
        assert history.row_count() == expected


def test_overlap_note_counts_what_a_key_by_key_look_finds():
    """The note skips keys whose steps ascend on the `_step` axis: it says what asking every
    key (on its declared axis, globs included) says."""
    from reportgen.runs import STEP, Column, Run, overlap_note

    def plain(history: History, run: Run) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        hidden, unplaced = [], []
        for key in history:
            if key.startswith("_"):
                continue
            h, u = history.overlaps(key, run.x_key_for(key))
            hidden += [(key, h)] if h else []
            unplaced += [(key, u)] if u else []
        return hidden, unplaced

    rows = np.array([0, 1, 2, 3, 4, 5], dtype=np.int64)
    history = History(
        {
            STEP: Column(rows, np.array([0, 1, 2, 2, 3, 4]), rows * 1.0),
            "loss": Column(rows, np.array([0, 1, 2, 2, 3, 4]), rows * 0.1),  # step 2 twice
            "eval/acc": Column(rows[::2], np.array([0, 2, 3]), np.ones(3)),  # ascending
            "eval/step": Column(rows[:2], np.array([0, 1]), np.array([10.0, 20.0])),
            "train/lr": Column(rows, np.arange(6), np.ones(6)),  # ascending
        }
    )
    declared = [{}, {"eval/acc": "eval/step"}, {"eval/*": "eval/step"}, {"train/*": "_step"}]
    notes = []
    for step_metrics in declared:
        run = Run(id="r", name="r", state="finished", step_metrics=step_metrics)
        hidden, unplaced = plain(history, run)
        note = overlap_note(history, run)
        notes.append(note)
        for key, count in hidden:
            assert f"{key} ({count:,})" in (note or "")
        for key, count in unplaced:
            assert f"{key} (x {run.x_key_for(key)}: {count:,})" in (note or "")
        assert (note is None) == (not hidden and not unplaced)
    assert "eval/acc (x eval/step: 2)" in notes[1] and "eval/acc (x eval/step: 2)" in notes[2]
    assert "loss (1)" in notes[0] and "eval/acc" not in notes[0]


def test_sampling_grid_is_the_sorted_distinct_steps_it_always_was():
    """The grid is built without np.unique where it is ascending already: the same steps, of
    the same type, for whole and fractional axes, with and without `stop`."""
    from reportgen.metrics import sample_grid
    from reportgen.spec.model import Sampling

    def plain(xs: np.ndarray, sampling: Sampling) -> np.ndarray:
        last = xs.max()
        end = min(sampling.stop, last) if sampling.stop is not None else last
        regular = np.arange(sampling.start, end + 1, sampling.every)
        return np.unique(np.concatenate([regular, [end]]))

    rng = np.random.default_rng(4)
    for trial in range(400):
        n = int(rng.integers(1, 300))
        xs = np.cumsum(rng.integers(1, 50, n))
        if trial % 2:
            xs = xs * 0.37  # an axis of fractional x values
        every, start = int(rng.integers(1, 40)), int(rng.integers(0, 5))
        stop = None if trial % 3 else int(rng.integers(0, int(xs.max()) + 10))
        sampling = Sampling(start=start, every=every, stop=stop)
        grid, note = sample_grid(xs, sampling)
        if note is None and len(grid):
            expected = plain(xs, sampling)
            assert grid.dtype == expected.dtype
            np.testing.assert_array_equal(grid, expected)


def test_a_history_read_as_long_arrays_answers_as_one_built_of_columns():
    """A cached history keeps the long arrays it was read as and makes a key's Column when it
    is asked for: every question gets the answer the history built of Columns gives."""
    from reportgen.runs import STEP, Column

    def arrays(history: History) -> list[list[object]]:
        return [part if isinstance(part, list) else part.tolist() for part in history.to_arrays()]

    rng = np.random.default_rng(12)
    for trial in range(40):
        columns = {}
        for k in range(int(rng.integers(0, 8))):
            n = int(rng.integers(0, 40))
            rows = np.sort(rng.choice(60, size=n, replace=False)).astype(np.int64)
            steps = rows // 2 if k % 3 else rows  # some keys log a step twice
            if trial % 4 == 0:
                steps = steps[::-1].copy()  # out of order
            columns[STEP if k == 0 else f"key{k}"] = Column(rows, steps, rng.normal(size=n))
        built = History(columns)
        read = History.from_arrays(*built.to_arrays())
        assert read.keys() == built.keys() and len(read) == len(built)
        assert arrays(read) == arrays(built)
        assert read.row_count() == built.row_count() and read.next_row() == built.next_row()
        np.testing.assert_array_equal(read.steps(), built.steps())
        for key in [*built.keys(), "absent"]:
            assert (key in read) == (key in built) and read.count(key) == built.count(key)
            for x in (STEP, "key1"):
                assert read.overlaps(key, x) == built.overlaps(key, x)
                assert read.series(key, x).equals(built.series(key, x))
        assert read.subset(["key1", "absent", STEP]).keys() == built.subset(["key1", STEP]).keys()
        twice, twice_built = read.merged(read), built.merged(built)
        assert arrays(twice) == arrays(twice_built)
    with pytest.raises(ValueError):
        History.from_arrays(["a", "b"], [1], *(np.zeros(1, dtype=np.int64),) * 2, np.zeros(1))


def test_the_exception_line_is_the_one_a_regex_search_of_every_line_finds():
    """Lines are cleaned and searched only when they hold the text a pattern needs: the line
    found is the one the plain regex search of every cleaned line finds, or None for both."""
    import re

    from reportgen.health.checks import lifecycle

    def clean(raw: str) -> str:
        return lifecycle._PREFIX.sub(" ", lifecycle._ANSI.sub("", raw)).strip()

    def plain(console: tuple[str, ...]) -> str | None:
        for raw in reversed(console):
            line = clean(raw)
            found = lifecycle._EXCEPTION.search(line)
            if found is None or line.startswith("Traceback"):
                continue
            text = line[found.start() :].strip()
            return text if len(text) <= 300 else text[:297] + "…"
        return None

    consoles = [
        (),
        ("epoch 1", "loss 0.3", "done"),
        ("Traceback (most recent call last):", "  x", "ValueError: bad shape"),
        ("[rank0]: torch.OutOfMemoryError: CUDA out of memory", "[rank1]: fine"),
        ("Val\x1b[31mueErr\x1b[0mor: colour codes inside the name",),
        ("(TaskRunner pid=42) RuntimeError: ValueError: nested", "[default3]:Killed"),
        ("error: lower case is not a name", "exit 1", "Segmentation fault (core dumped)"),
        ("KeyboardInterrupt", "SystemExit", "wandb: Synced run"),
        ("UserWarning: not an exception? it is named like one" + "x" * 400,),
        ("[ra\x1b[0mnk0]:SomeFailure", "pid=3 alone", "(pid=7, ip=10.0.0.1) BrokenPipeError"),
    ]
    found = [lifecycle.last_exception_line(console) for console in consoles]
    assert found == [plain(console) for console in consoles]
    for console in consoles:
        for raw in console:
            assert lifecycle._clean(raw) == clean(raw)
    assert (
        found[2] == "ValueError: bad shape"
        and found[4] == "ValueError: colour codes inside the name"
    )
    assert found[1] is None and re.match("BrokenPipeError", found[9] or "")


def test_values_placed_on_a_declared_axis_are_those_sorting_by_x_and_row_gives():
    """A key on another key's axis: in order already (the usual step counter) it is not
    sorted, and each axis is ordered by row once; the points, the hidden and the unplaced
    counts are those of sorting every key's records by (x, row)."""
    from reportgen.runs import Column

    def plain(history: History, key: str, x: str) -> tuple[list[float], list[float], int, int]:
        column, axis = history.column(key), history.column(x)
        assert column is not None and axis is not None
        order = np.argsort(axis.rows, kind="stable")
        axis_rows, axis_values = axis.rows[order], axis.values[order]
        where = np.searchsorted(axis_rows, column.rows)
        inside = where < len(axis_rows)
        found = np.zeros(len(column.rows), dtype=bool)
        found[inside] = axis_rows[where[inside]] == column.rows[inside]
        xs, values, rows = axis_values[where[found]], column.values[found], column.rows[found]
        unplaced = len(column.rows) - len(rows)
        finite = np.isfinite(xs)
        unplaced += int(len(xs) - finite.sum())
        xs, values, rows = xs[finite], values[finite], rows[finite]
        if len(xs) and np.all(np.mod(xs, 1) == 0):
            xs = xs.astype(np.int64)
        order = np.lexsort((rows, xs))
        xs, values = xs[order], values[order]
        keep = np.ones(len(xs), dtype=bool)
        keep[:-1] = xs[1:] != xs[:-1]
        return xs[keep].tolist(), values[keep].tolist(), int(len(xs) - keep.sum()), unplaced

    rng = np.random.default_rng(21)
    shapes = set()
    for trial in range(200):
        n = int(rng.integers(1, 60))
        rows = np.sort(rng.choice(100, size=n, replace=False)).astype(np.int64)
        counter = np.cumsum(rng.integers(1, 5, n)).astype(float)  # grows with every record
        if trial % 3 == 1:
            counter = np.round(rng.random(n) * 20)  # repeats, out of order
        if trial % 5 == 0:
            counter[rng.random(n) < 0.2] = np.nan
        if trial % 4 == 0:
            counter = counter + 0.5
        axis_rows = rows if trial % 6 else rows[::-1].copy()  # the axis written out of row order
        axis_values = counter if trial % 6 else counter[::-1].copy()
        picked = np.sort(rng.choice(100, size=int(rng.integers(1, 60)), replace=False))
        if trial % 2:  # only records that logged the axis too
            picked = rows[: max(1, n // 2)]
        history = History(
            {
                "train/step": Column(axis_rows, axis_rows, axis_values),
                "loss": Column(
                    picked.astype(np.int64), picked.astype(np.int64), rng.random(len(picked))
                ),
            }
        )
        xs, values, hidden, unplaced = history._placed("loss", "train/step")
        assert (xs.tolist(), values.tolist(), hidden, unplaced) == plain(
            history, "loss", "train/step"
        )
        assert history.overlaps("loss", "train/step") == (hidden, unplaced)
        shapes.add((hidden > 0, unplaced > 0))
    assert shapes == {(False, False), (True, False), (False, True), (True, True)}


# --- without pandas: the build's own ranks, expanding medians, joins and Arrow conversions ----


@pytest.mark.parametrize("length", [0, 1, 2, 10, 400])
def test_average_ranks_are_pandas_ranks(length):
    import pandas as pd

    from reportgen.metrics import average_ranks

    rng = np.random.default_rng(length)
    for trial in range(40):
        values = _curve(rng, length, trial)
        expected = pd.Series(values, dtype=float).rank().to_numpy()
        assert np.array_equal(average_ranks(values), expected, equal_nan=True), trial
    assert average_ranks([3.0, 1.0, 3.0, math.nan, 2.0]).tolist()[:3] == [3.5, 1.0, 3.5]


@pytest.mark.parametrize("length", [1, 2, 9, 300, 3000, 5000])
def test_expanding_medians_are_pandas_expanding_medians(length):
    import pandas as pd

    from reportgen.health.stats import expanding_median

    rng = np.random.default_rng(length)
    for trial in range(30 if length < 1000 else 3):
        values = _curve(rng, length, trial)
        values = values[np.isfinite(values)]  # what the divergence check gives it
        least = int(rng.integers(1, 30))
        expected = pd.Series(values).expanding(min_periods=least).median().to_numpy()
        found = expanding_median(values, least)
        assert np.array_equal(found, expected, equal_nan=True), (trial, least)
    assert expanding_median(np.array([4.0, 1.0, 3.0, 2.0]), 2).tolist()[1:] == [2.5, 3.0, 2.5]


def test_a_derived_metric_is_computed_where_all_its_inputs_were_logged():
    from reportgen.metrics import resolve_metrics
    from reportgen.runs import Run
    from reportgen.spec import MetricAlias

    history = History.from_points(
        {"a": ([0, 2, 4, 6], [1.0, 2.0, 3.0, 4.0]), "b": ([2, 3, 6, 8], [10.0, 20.0, 30.0, 0.0])}
    )
    aliases = {
        "a": MetricAlias("a", ("a",)),
        "b": MetricAlias("b", ("b",)),
        "gap": MetricAlias("gap", (), expr="b - a"),
    }
    gap = resolve_metrics(Run("r", "r", "finished"), history, aliases)["gap"]
    assert gap.points.xs.tolist() == [2, 6]
    assert gap.points.values.tolist() == [8.0, 26.0]
    assert gap.points.to_series().to_dict() == {2: 8.0, 6: 26.0}


def test_arrow_conversions_round_trip_without_pandas():
    from reportgen.arrow import arrow_array, numpy_array, string_array, string_scalar

    for values in (np.arange(5, dtype=np.int64), np.array([0.5, math.nan, -math.inf]),
                   np.array([True, False, True, True, False, False, True, False, True]),
                   np.zeros(0), np.arange(10)[::3]):  # fmt: skip
        back = numpy_array(arrow_array(values))
        assert back.dtype == values.dtype and np.array_equal(back, values, equal_nan=True)
    sliced = arrow_array(np.array([True, False, True, True, False]))[1:4]
    assert numpy_array(sliced).tolist() == [False, True, True]
    assert string_array(["a", "é", ""]).to_pylist() == ["a", "é", ""]
    assert string_scalar(None).as_py() is None and string_scalar("x").as_py() == "x"
