"""Allow ``python -m biomedvr_cli``."""

from biomedvr_cli.app import main

if __name__ == "__main__":
    main()
