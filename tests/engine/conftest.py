from tests.lab.conftest import clean_lab, lab  # noqa: F401
