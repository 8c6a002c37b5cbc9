"""``python -m tracker.collect``: run the collector with settings from the environment."""

from tracker.collect.app import serve
from tracker.settings import get_settings

if __name__ == "__main__":
    serve(get_settings())
