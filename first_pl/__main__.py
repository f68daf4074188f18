"""`python -m first_pl` is the same as the `first-pl` console script."""

from first_pl.cli import main

if __name__ == "__main__":
    main()
