"""``python -m autotimm_trainer`` is the ``autotimm`` command."""

from autotimm_trainer.cli import main

if __name__ == "__main__":
    main()
