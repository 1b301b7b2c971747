"""Allow ``python -m biomedvr_cli``."""

from biomedvr_cli.cli.app import main

if __name__ == "__main__":
    main()
