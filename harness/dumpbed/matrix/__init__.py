"""`dumpbed matrix`: a matrix of scenarios (docs/nightly.md), spread over host slots by
pytest-xdist, judged on the controller."""
