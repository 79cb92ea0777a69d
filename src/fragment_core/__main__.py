"""``python -m fragment_core`` runs the ``fragment`` CLI."""

from fragment_core.entry import main

if __name__ == "__main__":
    main()
