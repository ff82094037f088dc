"""Fake servers for the external APIs V7 talks to, on 127.0.0.1 over real HTTP and WebSocket.

Import them as `fakes.coinbase_server` / `fakes.coingecko_server` (tests/ is on sys.path via
tests/conftest.py, as for `helpers`).
"""
