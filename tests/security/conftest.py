"""Fixtures the security suite shares with the integration suite."""

from tests.fixtures.queues import make_queue  # noqa: F401 - a fixture for this folder
