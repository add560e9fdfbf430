"""The reporting side of nightly matrices (docs/nightly.md): results.json (results), the merged
JUnit file (junit), the SQLite history and its regressions (history), report.html (htmlreport)
and `dumpbed matrix-report` (report_cmd). The matrix engine (dumpbed.matrix) produces the
results documents; everything here reads only them, never a run directory's internals."""
