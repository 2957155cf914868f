"""Fakes and contract suites shared by the tests. Imported only by tests, never by skyline itself."""
