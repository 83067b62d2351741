"""Development tooling: the embedded Redis and the launcher behind `make run` / `make test`."""
