"""Policy as code: schema (what a policy file may say), compile (file -> runnable rules), engine (decide),
reload (watch the file and swap atomically)."""
