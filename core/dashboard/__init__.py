"""`v7 dashboard`: a read-only web app over the store, live while `v7 run` writes.

- `store`: one reader shared under a lock, and the `summary()` cache refreshed in the background;
- `views`: what each page shows, from the reader's indexed queries (never SQL of its own);
- `security`: loopback by default, a token on any other interface, GET only, security headers;
- `sse`: new signals as Server-Sent Events; `routes`: the pages and the JSON they draw from;
- `app`: the FastAPI application; `templates/`, `static/` (vendored JS, see static/README.md).
"""
