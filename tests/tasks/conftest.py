from tests.tiny_exports import tiny_export  # noqa: F401  (shared session fixture, one cache)
