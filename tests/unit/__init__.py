"""Tests of pure code: no Redis, no Django database (config parsing, rules, package layout)."""
