"""`python -m btmanager` is the same as the `bt` command."""

from btmanager.entry import main

if __name__ == "__main__":
    main()
