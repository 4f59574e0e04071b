"""End-to-end suites against the production stack (gunicorn, PostgreSQL, Redis, Celery, emulator)."""
