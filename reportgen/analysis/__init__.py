"""The analysis stage: what a spec's analysis sections and its baseline ask of the chosen runs.

    stage.py     stats, compare and project_table, computed together (`analyse`)
    compare.py   config diffs, summary deltas with direction, metric tables side by side
    project.py   a project's runs as one table: columns, group-by, pivots, correlations, Pareto
    baseline.py  candidate runs against baseline runs, with tolerances that gate a build
    discover.py  `reportgen runs` and `reportgen keys`: what a source holds

Each module is plain functions over plain data (runs, histories, resolved metrics); nothing
here reads files or renders. Importing this package imports none of them.
"""
