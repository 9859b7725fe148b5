"""The driver: `python -m automation up | preview | destroy | outputs | schema | copy | verify | migrate | drift`."""
