"""biomedvr: adapt a frozen vision-language model to biomedical classes from a few images."""

# The newest version in CHANGELOG.md: the `Next release:` line of `## [Unreleased]`, else the newest
# released heading (docs/development.md#versions; tests/test_cli_docs.py checks).
__version__ = "0.3.0"
