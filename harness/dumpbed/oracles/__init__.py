"""The checks of a run, in data-flow order: validate is the hub, one module per oracle beside the models they hold the dump to."""
