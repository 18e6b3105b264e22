"""Command-line verbs: each module here has `register(subparsers)` and is listed in `mtrlib.__main__`."""
