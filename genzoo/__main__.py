"""`python -m genzoo ...` is the same as the `genzoo` console script."""

from genzoo.cli import main

if __name__ == "__main__":
    main()
